#pragma once
// Pieces shared by the two client drivers (tether::Client and
// tether::ReconnectingWebSocket): the optional own thread, the steady clock,
// the single timer re-armed from the core's poll_timeout(), the callback gate
// that guarantees no application callback after destruction, and the status
// mirror other threads read and wait on. Internal to src/net.

#include <tether/core/client_core.hpp>
#include <tether/core/time.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

namespace tether::detail {

/// The core's clock: steady, in whole milliseconds.
inline time_point steady_now() {
    return time_point{
        std::chrono::duration_cast<duration>(std::chrono::steady_clock::now().time_since_epoch())};
}

/// An io_context with one thread, for drivers that run on their own.
struct OwnThread {
    boost::asio::io_context io{1};
    std::thread thread;
    void start() {
        thread = std::thread([this] {
            auto guard = boost::asio::make_work_guard(io);
            io.run();
        });
    }
    void stop() {
        io.stop();
        if (thread.joinable()) thread.join();
    }
};

/// One timer following a core's poll_timeout(). On expiry it calls
/// `fire(at)`; `fire` locks its owner (weakly held) and then asks take(at)
/// whether this expiry is still the current one.
class CoreTimer {
  public:
    template <class Executor>
    explicit CoreTimer(const Executor& ex) : timer_(ex) {}

    void arm(std::optional<time_point> at, std::function<void(time_point)> fire) {
        if (at == armed_at_) return;
        armed_at_ = at;
        if (!at) {
            timer_.cancel();
            return;
        }
        timer_.expires_at(std::chrono::steady_clock::time_point{at->time_since_epoch()});
        timer_.async_wait([at = *at, fire = std::move(fire)](boost::system::error_code ec) {
            if (!ec) fire(at);  // never touches the timer itself: it may be gone
        });
    }
    /// True when `at` is the armed expiry (then disarms).
    bool take(time_point at) {
        if (armed_at_ != at) return false;
        armed_at_.reset();
        return true;
    }
    void cancel() {
        armed_at_.reset();
        timer_.cancel();
    }

  private:
    boost::asio::steady_timer timer_;
    std::optional<time_point> armed_at_;
};

/// Application callbacks pass through here: after close_gate() none runs, and
/// close_gate() waits for one in progress (on another thread) to return.
class CallbackGate {
  public:
    template <class F, class... A>
    void call(const F& f, A&&... a) {
        std::lock_guard lk(mu_);
        if (open_ && f) f(std::forward<A>(a)...);
    }
    void close_gate() {
        std::lock_guard lk(mu_);
        open_ = false;
    }

  private:
    std::recursive_mutex mu_;  // a callback may destroy the client it belongs to
    bool open_ = true;
};

/// The driver's state as other threads see it.
template <class Status, class Metrics>
class Mirror {
  public:
    void update(const Status& s, const Metrics& m, std::size_t pending, bool idle) {
        {
            std::lock_guard lk(mu_);
            status_ = s;
            metrics_ = m;
            pending_ = pending;
            idle_ = idle;
        }
        cv_.notify_all();
    }
    void set_stopped() {
        {
            std::lock_guard lk(mu_);
            stopped_ = true;
        }
        cv_.notify_all();
    }
    Status status() const {
        std::lock_guard lk(mu_);
        return status_;
    }
    Metrics metrics() const {
        std::lock_guard lk(mu_);
        return metrics_;
    }
    std::size_t pending() const {
        std::lock_guard lk(mu_);
        return pending_;
    }
    /// A command (connect, retry_now, close, ...) is about to be posted: its
    /// ticket. Waits started after the post see the command's effect.
    std::uint64_t take_ticket() { return ++posted_; }
    /// The strand applied the command with `ticket` and pumped its effects
    /// (call after the pump, so waiters never see a stale state).
    void applied(std::uint64_t ticket) {
        {
            std::lock_guard lk(mu_);
            if (ticket > applied_) applied_ = ticket;
        }
        cv_.notify_all();
    }
    /// Waits until every command posted before this call was applied and
    /// `done(status)` holds, or the timeout passes; returns the status then.
    template <class Pred>
    Status wait(std::chrono::milliseconds timeout, Pred done) const {
        const std::uint64_t need = posted_.load();
        std::unique_lock lk(mu_);
        cv_.wait_for(lk, timeout, [&] { return applied_ >= need && done(status_); });
        return status_;
    }
    /// The pending count once the callbacks of a pump ran (flush() waits on it,
    /// so that the acknowledgement callbacks have run when it returns).
    void settled(std::size_t pending) {
        {
            std::lock_guard lk(mu_);
            settled_pending_ = pending;
        }
        cv_.notify_all();
    }
    /// Like wait(), on the settled pending count.
    bool wait_pending_zero(std::chrono::milliseconds timeout) const {
        const std::uint64_t need = posted_.load();
        std::unique_lock lk(mu_);
        return cv_.wait_for(lk, timeout, [&] { return applied_ >= need && settled_pending_ == 0; });
    }
    /// Waits (bounded) until the driver stopped and has no socket left.
    void wait_idle(std::chrono::milliseconds timeout) const {
        std::unique_lock lk(mu_);
        cv_.wait_for(lk, timeout, [&] { return stopped_ && idle_; });
    }

  private:
    mutable std::mutex mu_;
    mutable std::condition_variable cv_;
    Status status_{};
    Metrics metrics_{};
    std::size_t pending_ = 0;
    std::size_t settled_pending_ = 0;
    bool idle_ = true;
    bool stopped_ = false;
    std::atomic<std::uint64_t> posted_{0};
    std::uint64_t applied_ = 0;  // guarded by mu_
};

/// wait_connected()'s end condition: connected, or stopped for good (not
/// merely offline or not started yet).
template <class Status>
bool connected_or_stopped(const Status& s) {
    if (s.state == ConnState::connected || s.state == ConnState::error) return true;
    return s.state == ConnState::disconnected && s.reason != StopReason::offline &&
           s.reason != StopReason::not_started;
}

/// A jitter seed: the given one, or one from the OS.
std::uint64_t seed_or_random(std::uint64_t seed);

}  // namespace tether::detail
