// tether::ReconnectingWebSocket: drives a SocketCore over Asio/Beast
// (see include/tether/reconnecting_websocket.hpp).

#include <tether/reconnecting_websocket.hpp>
#include <tether/version.hpp>

#include "client/driver.hpp"
#include "client/net_monitor.hpp"
#include "client/ws_link.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>

#include <map>
#include <stdexcept>

namespace tether {

namespace asio = boost::asio;
using detail::steady_now;

struct ReconnectingWebSocket::Impl : std::enable_shared_from_this<Impl> {
    Impl(asio::any_io_executor ex, ReconnectingWebSocketOptions o)
        : opt(std::move(o)), strand(asio::make_strand(ex)), core(make_config(opt)), timer(strand) {
        auto u = detail::parse_url(opt.url);
        if (auto* e = std::get_if<std::string>(&u)) throw std::invalid_argument(*e);
        url = std::get<detail::Url>(u);
        if (url.scheme_http())
            throw std::invalid_argument("use a ws:// or wss:// URL, not " + opt.url);
        if (opt.probe_url) {
            auto p = detail::parse_url(*opt.probe_url);
            if (auto* e = std::get_if<std::string>(&p))
                throw std::invalid_argument("probe_url: " + *e);
            probe = std::get<detail::Url>(p);
        }
        if (url.tls || (probe && probe->tls))
            tls = detail::make_client_tls(opt.ca_file, opt.tls_verify);
        on_message_cb = opt.on_message;
        on_status_cb = opt.on_status;
        on_latency_cb = opt.on_latency;
        on_dropped_cb = opt.on_dropped;
        if (!opt.pong_matcher)
            opt.pong_matcher = [](const SocketMessage& m) { return !m.binary && m.data == "pong"; };
    }

    static SocketConfig make_config(const ReconnectingWebSocketOptions& o) {
        SocketConfig c;
        c.backoff = o.backoff;
        c.seed = detail::seed_or_random(o.seed);
        c.open_timeout = o.open_timeout;
        c.close_timeout = o.close_timeout;
        c.fatal_codes = o.fatal_codes;
        c.fatal_reasons = o.fatal_reasons;
        c.await_auth_reply = static_cast<bool>(o.auth_validator);
        c.auth_timeout = o.auth_timeout;
        c.subscriptions = o.subscriptions;
        c.liveness = o.liveness;
        c.ping_interval = o.ping_interval;
        c.pong_timeout = o.pong_timeout;
        c.ping_payload = o.ping_payload;
        c.queue_count_max = o.queue_count_max;
        c.queue_bytes_max = o.queue_bytes_max;
        c.overflow = o.overflow;
        c.message_bytes_max = o.message_bytes_max;
        if (auto e = c.validate())
            throw std::invalid_argument("tether::ReconnectingWebSocket: " + *e);
        return c;
    }

    void start() {
        if (opt.network_monitor && !detail::is_loopback_host(url.host)) {
            monitor = detail::make_network_monitor(strand, [w = weak_from_this()](bool on) {
                if (auto s = w.lock()) {
                    s->core.set_online(steady_now(), on);
                    s->pump();
                }
            });
            if (monitor->start())
                monitor.reset();
            else if (!monitor->online())
                core.set_online(steady_now(), false);
        }
        core.connect(steady_now());
        pump();
    }

    void shutdown() {
        if (monitor) monitor->stop();
        monitor.reset();
        core.close(steady_now());
        pump();
        mirror.set_stopped();
    }

    void open_link(std::uint64_t id) {
        if (opt.auth) core.set_auth_message(opt.auth());
        detail::LinkOptions lo;
        lo.headers = opt.headers;
        lo.subprotocol = opt.subprotocol;
        lo.user_agent = "tether-cpp/" TETHER_VERSION_STRING;
        lo.message_bytes_max = opt.message_bytes_max;
        lo.write_queue_bytes_max = opt.queue_bytes_max * 2 + (1u << 20);
        lo.probe = probe;
        lo.tls = tls;
        lo.verify_host = opt.tls_verify;
        auto w = weak_from_this();
        detail::LinkHandlers h;
        h.on_open = [w, id] {
            if (auto s = w.lock()) {
                s->core.handle_open(steady_now(), id);
                s->pump();
            }
        };
        h.on_message = [w, id](std::string data, bool binary) {
            if (auto s = w.lock()) {
                s->on_incoming(id, SocketMessage{std::move(data), binary});
                s->pump();
            }
        };
        h.on_pong = [w, id](std::string_view) {
            auto s = w.lock();
            if (s && s->opt.liveness == LivenessMode::ws_ping) {
                s->core.handle_pong(steady_now(), id);
                s->pump();
            }
        };
        h.on_close = [w, id](std::uint16_t code, std::string reason) {
            if (auto s = w.lock()) {
                s->links.erase(id);
                s->core.handle_close(steady_now(), id, code, reason);
                s->pump();
            }
        };
        auto link = detail::make_link(strand, url, std::move(lo), std::move(h));
        links[id] = link;
        link->start();
    }

    void on_incoming(std::uint64_t id, SocketMessage m) {
        const auto now = steady_now();
        if (core.awaiting_auth(id)) {
            const auto verdict = opt.auth_validator ? opt.auth_validator(m) : std::optional<bool>{};
            if (verdict) {
                core.handle_auth_reply(now, id, *verdict);
                return;
            }
        }
        if (opt.liveness == LivenessMode::app_message && opt.pong_matcher(m)) {
            core.handle_pong(now, id);
            return;
        }
        if (opt.ping_responder) {
            if (auto reply = opt.ping_responder(m)) {
                core.reply(now, std::move(*reply));
                return;
            }
        }
        core.handle_message(now, id, std::move(m));
    }

    void pump() {
        while (auto t = core.poll_transmit()) {
            auto it = links.find(t->conn);
            switch (t->kind) {
                case SocketTransmit::Kind::open:
                    open_link(t->conn);
                    break;
                case SocketTransmit::Kind::send:
                    if (it != links.end())
                        it->second->send(std::move(t->message.data), t->message.binary);
                    break;
                case SocketTransmit::Kind::ping:
                    if (it != links.end()) it->second->ping(std::move(t->message.data));
                    break;
                case SocketTransmit::Kind::close:
                    if (it != links.end()) it->second->close(t->code, std::move(t->reason));
                    break;
                case SocketTransmit::Kind::abort:
                    if (it != links.end()) {
                        it->second->abort();
                        links.erase(it);
                    }
                    break;
            }
        }
        // Other threads see the new state before any callback runs.
        mirror.update(core.status().get(), core.metrics(), core.status().get().queued,
                      links.empty());
        while (auto e = core.poll_event()) {
            if (auto* st = std::get_if<SocketStatusChanged>(&*e)) {
                gate.call(on_status_cb, st->status);
            } else if (auto* r = std::get_if<SocketReceived>(&*e)) {
                gate.call(on_message_cb, r->message);
            } else if (auto* d = std::get_if<SocketDropped>(&*e)) {
                gate.call(on_dropped_cb, d->message, d->code);
            } else if (auto* l = std::get_if<SocketLatency>(&*e)) {
                gate.call(on_latency_cb, l->rtt);
            }
        }
        mirror.settled(core.status().get().queued);
        timer.arm(core.poll_timeout(), [w = weak_from_this()](time_point at) {
            auto s = w.lock();
            if (!s || !s->timer.take(at)) return;
            s->core.handle_timeout(steady_now());
            s->pump();
        });
    }

    void send(SocketMessage m, std::uint64_t ticket) {
        const auto err = core.send(steady_now(), m);
        if (!err.empty()) gate.call(on_dropped_cb, m, err);
        pump();
        mirror.applied(ticket);
    }

    ReconnectingWebSocketOptions opt;
    asio::strand<asio::any_io_executor> strand;
    SocketCore core;
    detail::CoreTimer timer;
    detail::Url url;
    std::optional<detail::Url> probe;
    std::shared_ptr<asio::ssl::context> tls;
    std::shared_ptr<detail::NetworkMonitor> monitor;
    std::map<std::uint64_t, std::shared_ptr<detail::Link>> links;

    std::function<void(const SocketMessage&)> on_message_cb;
    std::function<void(const SocketStatus&)> on_status_cb;
    std::function<void(std::chrono::milliseconds)> on_latency_cb;
    std::function<void(const SocketMessage&, const std::string&)> on_dropped_cb;
    detail::CallbackGate gate;
    detail::Mirror<SocketStatus, SocketMetrics> mirror;
};

struct ReconnectingWebSocket::Own : detail::OwnThread {};

ReconnectingWebSocket::ReconnectingWebSocket(ReconnectingWebSocketOptions options)
    : own_(std::make_unique<Own>()) {
    impl_ = std::make_shared<Impl>(own_->io.get_executor(), std::move(options));
    asio::post(impl_->strand, [s = impl_] { s->start(); });
    own_->start();
}

ReconnectingWebSocket::ReconnectingWebSocket(asio::any_io_executor executor,
                                             ReconnectingWebSocketOptions options)
    : impl_(std::make_shared<Impl>(std::move(executor), std::move(options))) {
    asio::post(impl_->strand, [s = impl_] { s->start(); });
}

ReconnectingWebSocket::~ReconnectingWebSocket() {
    impl_->gate.close_gate();
    asio::post(impl_->strand, [s = impl_] { s->shutdown(); });
    if (own_) {
        impl_->mirror.wait_idle(impl_->opt.close_timeout + std::chrono::milliseconds(500));
        own_->stop();
        impl_.reset();
        own_.reset();
    }
}

namespace {
template <class Impl, class F>
void post_to(const std::shared_ptr<Impl>& impl, F f) {
    asio::post(impl->strand, [impl, f = std::move(f)]() mutable { f(*impl); });
}
}  // namespace

namespace {
void post_send(const std::shared_ptr<ReconnectingWebSocket::Impl>& impl, SocketMessage m) {
    const auto ticket = impl->mirror.take_ticket();  // flush() called after this sees it
    post_to(impl, [ticket, m = std::move(m)](ReconnectingWebSocket::Impl& s) mutable {
        s.send(std::move(m), ticket);
    });
}
}  // namespace

void ReconnectingWebSocket::send(std::string text) {
    post_send(impl_, {std::move(text), false});
}
void ReconnectingWebSocket::send_binary(std::string data) {
    post_send(impl_, {std::move(data), true});
}
bool ReconnectingWebSocket::flush(std::chrono::milliseconds timeout) {
    if (impl_->strand.running_in_this_thread()) return impl_->core.status().get().queued == 0;
    return impl_->mirror.wait_pending_zero(timeout);
}
void ReconnectingWebSocket::on_message(std::function<void(const SocketMessage&)> f) {
    post_to(impl_, [f = std::move(f)](Impl& s) mutable { s.on_message_cb = std::move(f); });
}
void ReconnectingWebSocket::on_status(std::function<void(const SocketStatus&)> f) {
    post_to(impl_, [f = std::move(f)](Impl& s) mutable {
        s.on_status_cb = std::move(f);
        s.gate.call(s.on_status_cb, s.core.status().get());  // the current value first
    });
}
void ReconnectingWebSocket::on_latency(std::function<void(std::chrono::milliseconds)> f) {
    post_to(impl_, [f = std::move(f)](Impl& s) mutable { s.on_latency_cb = std::move(f); });
}
void ReconnectingWebSocket::on_dropped(
    std::function<void(const SocketMessage&, const std::string&)> f) {
    post_to(impl_, [f = std::move(f)](Impl& s) mutable { s.on_dropped_cb = std::move(f); });
}

bool ReconnectingWebSocket::wait_connected(std::chrono::milliseconds timeout) {
    if (impl_->strand.running_in_this_thread())
        return impl_->mirror.status().state == ConnState::connected;
    const auto s = impl_->mirror.wait(timeout, detail::connected_or_stopped<SocketStatus>);
    return s.state == ConnState::connected;
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

namespace {
template <class F>
void command(const std::shared_ptr<ReconnectingWebSocket::Impl>& impl, F f) {
    const auto ticket = impl->mirror.take_ticket();
    asio::post(impl->strand, [impl, ticket, f = std::move(f)] {
        f(impl->core, steady_now());
        impl->pump();
        impl->mirror.applied(ticket);
    });
}
}  // namespace

void ReconnectingWebSocket::retry_now() {
    command(impl_, [](SocketCore& c, time_point now) { c.retry_now(now); });
}
void ReconnectingWebSocket::connect(bool reset_backoff) {
    command(impl_,
            [reset_backoff](SocketCore& c, time_point now) { c.connect(now, reset_backoff); });
}
void ReconnectingWebSocket::close() {
    command(impl_, [](SocketCore& c, time_point now) { c.close(now); });
}
void ReconnectingWebSocket::set_online(bool online) {
    command(impl_, [online](SocketCore& c, time_point now) { c.set_online(now, online); });
}

}  // namespace tether
