// tether::ReconnectingWebSocket: the shared driver over a SocketCore
// (see include/tether/reconnecting_websocket.hpp).

#include <tether/reconnecting_websocket.hpp>
#include <tether/version.hpp>

#include "client/driver.hpp"

#include <stdexcept>

namespace tether {

namespace asio = boost::asio;
using detail::steady_now;

namespace {

SocketConfig core_config(const ReconnectingWebSocketOptions& o) {
    SocketConfig c{static_cast<const SocketConfig&>(o)};  // every option of the core, as given
    c.seed = detail::seed_or_random(o.seed);
    c.await_auth_reply = static_cast<bool>(o.auth_validator);
    if (auto r = c.validate(); !r)
        throw std::invalid_argument("tether::ReconnectingWebSocket: " + r.error().message);
    return c;
}

detail::LinkOptions link_options(const ReconnectingWebSocketOptions& o) {
    detail::LinkOptions lo;
    lo.subprotocol = o.subprotocol;
    lo.user_agent = "tether-cpp/" TETHER_VERSION_STRING;
    lo.message_bytes_max = o.message_bytes_max;
    lo.write_queue_bytes_max = o.queue_bytes_max * 2 + (1u << 20);
    return lo;
}

}  // namespace

struct ReconnectingWebSocket::Impl
    : detail::Driver<ReconnectingWebSocket::Impl, SocketCore, SocketStatus, SocketMetrics> {
    Impl(const asio::any_io_executor& ex, ReconnectingWebSocketOptions o)
        : Driver(ex, detail::endpoint_or_throw(o, "tether::ReconnectingWebSocket"), core_config(o),
                 link_options(o), o.network_monitor),
          opt(std::move(o)),
          on_message_cb(opt.on_message),
          on_status_cb(opt.on_status),
          on_latency_cb(opt.on_latency),
          on_dropped_cb(opt.on_dropped) {
        if (!opt.pong_matcher)
            opt.pong_matcher = [](const SocketMessage& m) { return !m.binary && m.data == "pong"; };
    }

    // ---- what the shared driver asks of a client ----------------------------------------
    void before_open(std::uint64_t) {
        if (opt.auth) core.set_auth_message(opt.auth());
    }
    void on_link_message(std::uint64_t id, std::string data, bool binary) {
        const auto now = steady_now();
        SocketMessage m{std::move(data), binary};
        if (core.awaiting_auth(id)) {
            const auto verdict = opt.auth_validator ? opt.auth_validator(m) : std::optional<bool>{};
            if (verdict) return core.handle_auth_reply(now, id, *verdict);
        }
        if (opt.liveness == LivenessMode::app_message && opt.pong_matcher(m))
            return core.handle_pong(now, id);
        if (opt.ping_responder) {
            if (auto reply = opt.ping_responder(m)) return core.reply(now, *reply);
        }
        core.handle_message(now, id, std::move(m));
    }
    void on_link_pong(std::uint64_t id) {
        if (opt.liveness == LivenessMode::ws_ping) core.handle_pong(steady_now(), id);
    }
    std::size_t queued() const { return core.status().get().queued; }
    void after_pump() {}
    void on_shutdown() {}
    void before_close_gate() {}

    void dispatch(SocketStatusChanged& e) { gate.call(on_status_cb, e.status); }
    void dispatch(SocketReceived& e) { gate.call(on_message_cb, e.message); }
    void dispatch(SocketDropped& e) { gate.call(on_dropped_cb, e.message, e.error); }
    void dispatch(SocketLatency& e) { gate.call(on_latency_cb, e.rtt); }

    void send(const SocketMessage& m, std::uint64_t ticket) {
        if (auto r = core.send(steady_now(), m); !r) gate.call(on_dropped_cb, m, r.error());
        pump();
        mirror.applied(ticket);
    }

    ReconnectingWebSocketOptions opt;
    std::function<void(const SocketMessage&)> on_message_cb;
    std::function<void(const SocketStatus&)> on_status_cb;
    std::function<void(std::chrono::milliseconds)> on_latency_cb;
    std::function<void(const SocketMessage&, std::error_code)> on_dropped_cb;
};

struct ReconnectingWebSocket::Own : detail::OwnThread {};

ReconnectingWebSocket::ReconnectingWebSocket(ReconnectingWebSocketOptions options)
    : own_(std::make_unique<Own>()) {
    impl_ = std::make_shared<Impl>(own_->io.get_executor(), std::move(options));
    detail::start_driver(impl_, own_.get());
}

ReconnectingWebSocket::ReconnectingWebSocket(const asio::any_io_executor& executor,
                                             ReconnectingWebSocketOptions options)
    : impl_(std::make_shared<Impl>(executor, std::move(options))) {
    detail::start_driver(impl_, nullptr);
}

ReconnectingWebSocket::~ReconnectingWebSocket() {
    const auto close_timeout = impl_->opt.close_timeout;
    detail::stop_driver(impl_, own_, close_timeout);
}

namespace {
void post_send(const std::shared_ptr<ReconnectingWebSocket::Impl>& impl, SocketMessage m) {
    const auto ticket = impl->mirror.take_ticket();  // flush() called after this sees it
    impl->post([ticket, m = std::move(m)](ReconnectingWebSocket::Impl& s) { s.send(m, ticket); });
}
}  // namespace

void ReconnectingWebSocket::send(std::string text) {
    post_send(impl_, {std::move(text), false});
}
void ReconnectingWebSocket::send_binary(std::string data) {
    post_send(impl_, {std::move(data), true});
}
bool ReconnectingWebSocket::flush(std::chrono::milliseconds timeout) {
    return impl_->flush(timeout);
}
void ReconnectingWebSocket::on_message(std::function<void(const SocketMessage&)> f) {
    impl_->post([f = std::move(f)](Impl& s) mutable { s.on_message_cb = std::move(f); });
}
void ReconnectingWebSocket::on_status(std::function<void(const SocketStatus&)> f) {
    impl_->post([f = std::move(f)](Impl& s) mutable {
        s.on_status_cb = std::move(f);
        s.gate.call(s.on_status_cb, s.core.status().get());  // the current value first
    });
}
void ReconnectingWebSocket::on_latency(std::function<void(std::chrono::milliseconds)> f) {
    impl_->post([f = std::move(f)](Impl& s) mutable { s.on_latency_cb = std::move(f); });
}
void ReconnectingWebSocket::on_dropped(
    std::function<void(const SocketMessage&, std::error_code)> f) {
    impl_->post([f = std::move(f)](Impl& s) mutable { s.on_dropped_cb = std::move(f); });
}

bool ReconnectingWebSocket::wait_connected(std::chrono::milliseconds timeout) {
    return impl_->wait_connected(timeout);
}

SocketStatus ReconnectingWebSocket::status() const {
    return impl_->mirror.status();
}
time_point ReconnectingWebSocket::now() {
    return steady_now();
}
std::string ReconnectingWebSocket::status_line() const {
    return describe(status(), steady_now());
}
SocketMetrics ReconnectingWebSocket::metrics() const {
    return impl_->mirror.metrics();
}

void ReconnectingWebSocket::retry_now() {
    impl_->command([](SocketCore& c, time_point now) { c.retry_now(now); });
}
void ReconnectingWebSocket::connect(bool reset_backoff) {
    impl_->command(
        [reset_backoff](SocketCore& c, time_point now) { c.connect(now, reset_backoff); });
}
void ReconnectingWebSocket::close() {
    impl_->command([](SocketCore& c, time_point now) { c.close(now); });
}
void ReconnectingWebSocket::set_online(bool online) {
    impl_->command([online](SocketCore& c, time_point now) { c.set_online(now, online); });
}

}  // namespace tether
