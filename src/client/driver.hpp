#pragma once
// The one driver of both network clients (tether::Client over ClientCore,
// tether::ReconnectingWebSocket over SocketCore): the strand, the optional
// own thread, the single timer re-armed from the core's poll_timeout(), the
// links the core's transmits open and write, the network monitor, the
// callback gate (no application callback after destruction), the mirror
// other threads read and wait on, and command tickets (a wait started after
// a command sees the command's effect). docs/DESIGN.md, "One driver".
//
// A client's Impl derives from Driver<Impl, Core, Status, Metrics> and
// provides what differs (CRTP):
//   void dispatch(Event&)                        core events -> callbacks
//   void on_link_message(id, std::string, bool)  an incoming frame
//   void on_link_pong(id)                        an RFC 6455 pong
//   void before_open(id)                         just before a link opens
//   void after_pump()                            after every input
//   void on_shutdown()                           last work on the strand
//   std::size_t queued() const                   what flush() waits on
//   void before_close_gate()                     destructor thread, gate still open

#include "client/net_monitor.hpp"
#include "client/ws_link.hpp"

#include <tether/core/reconnector.hpp>
#include <tether/core/time.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <variant>

namespace tether::detail {

/// The cores' clock: steady, in whole milliseconds.
inline time_point steady_now() {
    return time_point{
        std::chrono::duration_cast<duration>(std::chrono::steady_clock::now().time_since_epoch())};
}

/// A jitter seed: the given one, or one from the OS for 0.
std::uint64_t seed_or_random(std::uint64_t seed);

/// An io_context with one thread, for clients that run on their own.
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
    [[nodiscard]] bool take(time_point at) {
        if (armed_at_ != at) return false;
        armed_at_.reset();
        return true;
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
    void update(const Status& s, const Metrics& m, std::size_t queued, bool idle) {
        {
            std::lock_guard lk(mu_);
            status_ = s;
            metrics_ = m;
            queued_ = queued;
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
    std::size_t queued() const {
        std::lock_guard lk(mu_);
        return queued_;
    }
    /// A command (connect, retry_now, close, publish, ...) is about to be
    /// posted: its ticket. Waits started after the post see its effect.
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
    /// The queued count once the callbacks of a pump ran (flush() waits on
    /// it, so that the acknowledgement callbacks have run when it returns).
    void settled(std::size_t queued) {
        {
            std::lock_guard lk(mu_);
            settled_queued_ = queued;
        }
        cv_.notify_all();
    }
    /// Like wait(), on the settled queued count.
    [[nodiscard]] bool wait_queue_empty(std::chrono::milliseconds timeout) const {
        const std::uint64_t need = posted_.load();
        std::unique_lock lk(mu_);
        return cv_.wait_for(lk, timeout, [&] { return applied_ >= need && settled_queued_ == 0; });
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
    std::size_t queued_ = 0;
    std::size_t settled_queued_ = 0;
    bool idle_ = true;
    bool stopped_ = false;
    std::atomic<std::uint64_t> posted_{0};
    std::uint64_t applied_ = 0;  // guarded by mu_
};

/// wait_connected()'s end condition: connected, or stopped for good (not
/// merely offline or not started yet).
inline bool connected_or_stopped(const ConnectionStatus& s) {
    if (s.state == ConnState::connected || s.state == ConnState::error) return true;
    return s.state == ConnState::disconnected && s.reason != StopReason::offline &&
           s.reason != StopReason::not_started;
}

/// The endpoint of `t`, or std::invalid_argument naming `who` and the problem.
std::shared_ptr<const Endpoint> endpoint_or_throw(const TransportOptions& t, std::string_view who);

template <class Derived, class Core, class Status, class Metrics>
class Driver : public std::enable_shared_from_this<Derived> {
  public:
    template <class Config>
    Driver(const boost::asio::any_io_executor& ex, std::shared_ptr<const Endpoint> endpoint,
           Config config, LinkOptions link_options, bool network_monitor)
        : strand(boost::asio::make_strand(ex)),
          core(std::move(config)),
          timer_(strand),
          endpoint_(std::move(endpoint)),
          link_options_(std::move(link_options)),
          network_monitor_(network_monitor) {}

    // ---- runs on the strand -------------------------------------------------------------
    void start() {
        if (network_monitor_ && !is_loopback_host(endpoint_->url.host)) {
            monitor_ = make_network_monitor(strand, [w = this->weak_from_this()](bool online) {
                if (auto self = w.lock()) {
                    self->core.set_online(steady_now(), online);
                    self->pump();
                }
            });
            if (!monitor_->start())
                monitor_.reset();  // unavailable: stay online, pings still catch dead links
            else if (!monitor_->online())
                core.set_online(steady_now(), false);
        }
        core.connect(steady_now());
        pump();
    }

    void shutdown() {
        if (monitor_) monitor_->stop();
        monitor_.reset();
        core.close(steady_now());
        pump();
        self().on_shutdown();
        mirror.set_stopped();
    }

    /// Carries out what the core asks, publishes the new state to other
    /// threads, then runs the callbacks, then re-arms the timer.
    void pump() {
        while (auto t = core.poll_transmit()) {
            auto it = links_.find(t->conn);
            switch (t->kind) {
                case Transmit::Kind::open:
                    open_link(t->conn);
                    break;
                case Transmit::Kind::send:
                    if (it != links_.end()) it->second->send(std::move(t->data), t->binary);
                    break;
                case Transmit::Kind::ping:
                    if (it != links_.end()) it->second->ping(std::move(t->data));
                    break;
                case Transmit::Kind::close:
                    if (it != links_.end()) it->second->close(t->code, std::move(t->reason));
                    break;
                case Transmit::Kind::abort:
                    if (it != links_.end()) {
                        it->second->abort();
                        links_.erase(it);
                    }
                    break;
            }
        }
        // Other threads see the new state before any callback runs.
        mirror.update(core.status().get(), core.metrics(), self().queued(), links_.empty());
        while (auto e = core.poll_event())
            std::visit([this](auto& ev) { self().dispatch(ev); }, *e);
        mirror.settled(self().queued());
        timer_.arm(core.poll_timeout(), [w = this->weak_from_this()](time_point at) {
            auto s = w.lock();
            if (!s || !s->timer_.take(at)) return;
            s->core.handle_timeout(steady_now());
            s->pump();
        });
        self().after_pump();
    }

    // ---- any thread ---------------------------------------------------------------------
    /// Posts `f(Derived&)` to the strand.
    template <class F>
    void post(F f) {
        boost::asio::post(strand, [s = this->shared_from_this(), f = std::move(f)]() mutable {
            f(static_cast<Derived&>(*s));
        });
    }
    /// Posts `f(core, now)` with a ticket: waits started after this call see its effect.
    template <class F>
    void command(F f) {
        const auto ticket = mirror.take_ticket();
        post([ticket, f = std::move(f)](Derived& d) mutable {
            f(d.core, steady_now());
            d.pump();
            d.mirror.applied(ticket);
        });
    }
    [[nodiscard]] bool wait_connected(std::chrono::milliseconds timeout) {
        if (strand.running_in_this_thread())  // never block the strand
            return mirror.status().state == ConnState::connected;
        return mirror.wait(timeout, connected_or_stopped).state == ConnState::connected;
    }
    [[nodiscard]] bool flush(std::chrono::milliseconds timeout) {
        if (strand.running_in_this_thread()) return self().queued() == 0;
        return mirror.wait_queue_empty(timeout);
    }

    boost::asio::strand<boost::asio::any_io_executor> strand;
    Core core;  ///< strand only
    CallbackGate gate;
    Mirror<Status, Metrics> mirror;  ///< for other threads

  private:
    Derived& self() { return static_cast<Derived&>(*this); }

    void open_link(std::uint64_t id) {
        self().before_open(id);
        auto w = this->weak_from_this();
        LinkHandlers h;
        h.on_open = [w, id] {
            if (auto s = w.lock()) {
                s->core.handle_open(steady_now(), id);
                s->pump();
            }
        };
        h.on_message = [w, id](std::string data, bool binary) {
            if (auto s = w.lock()) {
                s->on_link_message(id, std::move(data), binary);
                s->pump();
            }
        };
        h.on_pong = [w, id](std::string_view) {
            if (auto s = w.lock()) {
                s->on_link_pong(id);
                s->pump();
            }
        };
        h.on_close = [w, id](LinkClose why) {
            if (auto s = w.lock()) {
                s->links_.erase(id);
                s->core.handle_close(steady_now(), id, why);
                s->pump();
            }
        };
        auto link = make_link(strand, endpoint_, link_options_, std::move(h));
        links_[id] = link;
        link->start();
    }

    CoreTimer timer_;
    std::shared_ptr<const Endpoint> endpoint_;
    LinkOptions link_options_;
    bool network_monitor_;
    std::shared_ptr<NetworkMonitor> monitor_;
    std::map<std::uint64_t, std::shared_ptr<Link>> links_;
};

/// Starts a driver: on `own`'s thread when given, else on the application's
/// executor (the constructors of both clients).
template <class Impl>
void start_driver(const std::shared_ptr<Impl>& impl, OwnThread* own) {
    impl->post([](Impl& d) { d.start(); });
    if (own) own->start();
}

/// Stops a driver (the destructors of both clients): the last callbacks
/// that must run (pending publishes) run now, then the gate closes -- no
/// callback after this returns -- and the close handshake goes out. With its
/// own thread it waits for the handshake, bounded by `close_timeout`.
template <class Impl, class Own>
void stop_driver(std::shared_ptr<Impl>& impl, std::unique_ptr<Own>& own, duration close_timeout) {
    impl->before_close_gate();
    impl->gate.close_gate();
    impl->post([](Impl& d) { d.shutdown(); });
    if (own) {
        impl->mirror.wait_idle(close_timeout + std::chrono::milliseconds(500));
        own->stop();
        impl.reset();
        own.reset();  // destroys pending handlers (and with them the last references)
    }
}

}  // namespace tether::detail
