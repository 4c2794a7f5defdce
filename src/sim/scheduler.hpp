#pragma once
// The simulator's virtual clock, its queue of scheduled actions, its one
// random source and its trace: shared by the network, the faults, the
// workload, the store and the checker. Everything that happens in a world
// goes through here, in one deterministic order.

#include "sim/simulator.hpp"

#include <tether/core/random.hpp>
#include <tether/core/time.hpp>

#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace tether::sim {

/// Thrown by the checker (and any part that sees the world break a rule).
struct Failure {
    Violation kind = Violation::other;
    std::string what;
};

class Scheduler {
  public:
    explicit Scheduler(std::uint64_t seed, bool keep_trace)
        : rng_(seed ^ 0x7E7E7E7E5EEDull), keep_trace_(keep_trace) {}

    time_point now() const noexcept { return now_; }
    Rng& rng() noexcept { return rng_; }

    /// Runs `fn` at `t` (actions at the same time run in the order scheduled).
    void at(time_point t, std::function<void()> fn) {
        queue_.emplace(std::make_pair(t, seq_++), std::move(fn));
    }
    std::optional<time_point> next() const {
        if (queue_.empty()) return std::nullopt;
        return queue_.begin()->first.first;
    }
    /// Runs the earliest action; the clock moves to its time.
    void run_next() {
        auto it = queue_.begin();
        if (it->first.first < now_) throw Failure{Violation::other, "time went backwards"};
        now_ = it->first.first;
        auto fn = std::move(it->second);
        queue_.erase(it);
        fn();
    }
    /// A moment within `max` from now, drawn from the seed (now when max is 0).
    time_point within(duration max) {
        const auto ms = max.count() > 0 ? static_cast<duration::rep>(rng_.uniform(
                                              static_cast<std::uint64_t>(max.count()) + 1))
                                        : 0;
        return now_ + duration{ms};
    }
    /// Moves the clock forward (to a core's deadline, or the end of a phase).
    void advance_to(time_point t) { now_ = std::max(now_, t); }

    /// One readable trace line; every line feeds the trace hash (two runs of
    /// a seed must hash the same).
    void trace(const char* fmt, ...) __attribute__((format(printf, 2, 3))) {
        char body[512];
        va_list ap;
        va_start(ap, fmt);
        std::vsnprintf(body, sizeof body, fmt, ap);
        va_end(ap);
        char line[600];
        const auto ms = to_ms(now_);
        const int n =
            std::snprintf(line, sizeof line, "[%4lld.%03lld] %s", static_cast<long long>(ms / 1000),
                          static_cast<long long>(ms % 1000), body);
        for (int i = 0; i < n && i < static_cast<int>(sizeof line); ++i) {
            hash_ ^= static_cast<unsigned char>(line[i]);
            hash_ *= 0x100000001b3ull;
        }
        hash_ ^= '\n';
        hash_ *= 0x100000001b3ull;
        if (keep_trace_) lines_.emplace_back(line);
    }
    std::uint64_t trace_hash() const noexcept { return hash_; }
    std::vector<std::string> take_lines() { return std::move(lines_); }

  private:
    time_point now_{};
    std::uint64_t seq_ = 0;
    std::map<std::pair<time_point, std::uint64_t>, std::function<void()>> queue_;
    Rng rng_;
    bool keep_trace_;
    std::uint64_t hash_ = 0xcbf29ce484222325ull;
    std::vector<std::string> lines_;
};

}  // namespace tether::sim
