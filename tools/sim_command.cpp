// `tether sim`: runs the deterministic simulator.
//
//   tether sim --seed N            one seed, readable trace, trace hash last
//   tether sim --seeds C [--from S] [--jobs J] [--once]
//                                  many seeds, each twice (determinism);
//                                  exits 1 at the first failure with the
//                                  command that replays it

#include "tools/commands.hpp"

#include "sim/simulator.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace tether::tools {
namespace {

struct SimArgs {
    std::optional<std::uint64_t> seed;
    std::optional<std::uint64_t> seeds;
    std::uint64_t from = 1;
    unsigned jobs = 0;
    bool quiet = false;
    bool once = false;
    std::string sabotage = "none";
};

std::optional<sim::Sabotage> parse_sabotage(const std::string& s) {
    if (s == "none") return sim::Sabotage::none;
    if (s == "drop-delivery") return sim::Sabotage::drop_delivery;
    if (s == "duplicate-delivery") return sim::Sabotage::duplicate_delivery;
    return std::nullopt;
}

void print_stats(const sim::Stats& st) {
    std::printf(
        "steps %llu, virtual %.1f s, faults %llu, attempts %llu, delivered %llu (replayed %llu), "
        "history lost %llu, published %llu, acked %llu, failed %llu, converged after %.1f s\n",
        static_cast<unsigned long long>(st.steps), static_cast<double>(st.virtual_ms) / 1000.0,
        static_cast<unsigned long long>(st.faults), static_cast<unsigned long long>(st.attempts),
        static_cast<unsigned long long>(st.delivered), static_cast<unsigned long long>(st.replayed),
        static_cast<unsigned long long>(st.history_lost),
        static_cast<unsigned long long>(st.published), static_cast<unsigned long long>(st.acked),
        static_cast<unsigned long long>(st.publish_failed),
        static_cast<double>(st.converged_after_ms) / 1000.0);
}

int run_one(const SimArgs& a, sim::Sabotage sabotage) {
    sim::Options o;
    o.seed = *a.seed;
    o.keep_trace = !a.quiet;
    o.sabotage = sabotage;
    const auto r = sim::run(o);
    for (const auto& line : r.trace)
        std::puts(line.c_str());
    print_stats(r.stats);
    if (!r.ok)
        std::printf("seed %llu FAILED at %.3f s: %s\n", static_cast<unsigned long long>(o.seed),
                    static_cast<double>(r.failed_at_ms) / 1000.0, r.failure.c_str());
    std::printf("trace hash %016llx\n", static_cast<unsigned long long>(r.trace_hash));
    return r.ok ? exit_ok : exit_failure;
}

int run_many(const SimArgs& a, sim::Sabotage sabotage) {
    const std::uint64_t count = *a.seeds;
    const unsigned jobs = a.jobs ? a.jobs : std::max(1u, std::thread::hardware_concurrency());
    std::atomic<std::uint64_t> next{0};
    std::atomic<bool> stop{false};
    std::mutex mu;
    std::optional<std::uint64_t> failed_seed;
    std::string failure;
    sim::Stats total;
    const auto t0 = std::chrono::steady_clock::now();
    auto worker = [&] {
        for (;;) {
            const std::uint64_t i = next.fetch_add(1);
            if (i >= count || stop.load()) return;
            sim::Options o;
            o.seed = a.from + i;
            o.sabotage = sabotage;
            const auto r1 = sim::run(o);
            std::string why;
            if (!r1.ok) {
                why = r1.failure;
            } else if (!a.once) {
                const auto r2 = sim::run(o);
                if (r2.trace_hash != r1.trace_hash)
                    why = "non-deterministic: two runs of the seed differ";
            }
            std::lock_guard lock{mu};
            total.steps += r1.stats.steps;
            total.faults += r1.stats.faults;
            total.attempts += r1.stats.attempts;
            total.delivered += r1.stats.delivered;
            total.replayed += r1.stats.replayed;
            total.history_lost += r1.stats.history_lost;
            total.published += r1.stats.published;
            total.acked += r1.stats.acked;
            total.publish_failed += r1.stats.publish_failed;
            total.converged_after_ms =
                std::max(total.converged_after_ms, r1.stats.converged_after_ms);
            if (!why.empty() && (!failed_seed || o.seed < *failed_seed)) {
                failed_seed = o.seed;
                failure = why;
                stop = true;
            }
        }
    };
    std::vector<std::thread> threads;
    for (unsigned j = 0; j < jobs; ++j)
        threads.emplace_back(worker);
    for (auto& t : threads)
        t.join();
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (failed_seed) {
        std::printf("seed %llu FAILED: %s\nreplay: %s\n",
                    static_cast<unsigned long long>(*failed_seed), failure.c_str(),
                    sim::replay_command(*failed_seed).c_str());
        return exit_failure;
    }
    std::printf(
        "totals: faults %llu, attempts %llu, delivered %llu (replayed %llu), history lost %llu, "
        "published %llu, acked %llu, failed %llu, slowest convergence %.1f s\n",
        static_cast<unsigned long long>(total.faults),
        static_cast<unsigned long long>(total.attempts),
        static_cast<unsigned long long>(total.delivered),
        static_cast<unsigned long long>(total.replayed),
        static_cast<unsigned long long>(total.history_lost),
        static_cast<unsigned long long>(total.published),
        static_cast<unsigned long long>(total.acked),
        static_cast<unsigned long long>(total.publish_failed),
        static_cast<double>(total.converged_after_ms) / 1000.0);
    std::printf("%llu seeds passed, %s (%u jobs, %.1f s)\n", static_cast<unsigned long long>(count),
                a.once ? "each run once" : "each run twice with identical traces", jobs, secs);
    return exit_ok;
}

}  // namespace

Action add_sim_command(CLI::App& app) {
    auto args = std::make_shared<SimArgs>();
    auto* cmd = app.add_subcommand("sim", "Simulate a client under seeded faults in virtual time");
    auto* seed = cmd->add_option("--seed", args->seed, "Run one seed and print its trace");
    auto* seeds = cmd->add_option("--seeds", args->seeds, "Run COUNT seeds, each twice")
                      ->check(CLI::PositiveNumber);
    seed->excludes(seeds);
    cmd->add_option("--from", args->from, "First seed of --seeds (default 1)")->needs(seeds);
    cmd->add_flag("--once", args->once,
                  "With --seeds: run each seed once, without the determinism check (the "
                  "sanitizer builds: a second run takes the same path and finds nothing new)")
        ->needs(seeds);
    cmd->add_option("--jobs", args->jobs, "Worker threads for --seeds (default: all cores)");
    cmd->add_flag("--quiet", args->quiet, "With --seed: only the summary and the hash");
    cmd->add_option("--sabotage", args->sabotage,
                    "Inject a harness bug to prove the checker catches it: none, drop-delivery, "
                    "duplicate-delivery");
    return [cmd, args]() -> int {
        if (!cmd->parsed()) return exit_usage;
        const auto sabotage = parse_sabotage(args->sabotage);
        if (!sabotage) {
            std::fprintf(stderr, "tether sim: unknown --sabotage '%s'\n", args->sabotage.c_str());
            return exit_usage;
        }
        if (args->seed) return run_one(*args, *sabotage);
        if (args->seeds) return run_many(*args, *sabotage);
        std::fprintf(stderr, "tether sim: give --seed N or --seeds COUNT\n");
        return exit_usage;
    };
}

}  // namespace tether::tools
