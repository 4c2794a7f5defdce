// tether::Client: drives a ClientCore over Asio/Beast (see include/tether/client.hpp).

#include <tether/client.hpp>
#include <tether/version.hpp>

#include "client/driver.hpp"
#include "client/net_monitor.hpp"
#include "client/state_file.hpp"
#include "client/ws_link.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <map>
#include <stdexcept>

namespace tether {

namespace asio = boost::asio;
using detail::Link;

struct Room::Shared {
    std::weak_ptr<Client::Impl> client;
    std::string name;
    // Touched on the client's strand only.
    RoomOptions handlers;
};

struct Client::Impl : std::enable_shared_from_this<Impl> {
    Impl(asio::any_io_executor ex, ClientOptions o)
        : opt(std::move(o)),
          strand(asio::make_strand(ex)),
          core(make_config(opt)),
          timer(strand),
          save_timer(strand) {
        auto u = detail::parse_url(opt.url);
        if (auto* e = std::get_if<std::string>(&u)) throw std::invalid_argument(*e);
        url = std::get<detail::Url>(u);
        if (url.scheme_http())
            throw std::invalid_argument("use a ws:// or wss:// URL, not " + opt.url);
        if (url.tls || (opt.probe_url && opt.probe_url->rfind("https", 0) == 0))
            tls = detail::make_client_tls(opt.ca_file, opt.tls_verify);
        if (opt.probe_url) {
            auto p = detail::parse_url(*opt.probe_url);
            if (auto* e = std::get_if<std::string>(&p))
                throw std::invalid_argument("probe_url: " + *e);
            probe = std::get<detail::Url>(p);
        }
        on_status_cb = opt.on_status;
        on_latency_cb = opt.on_latency;
        on_session_cb = opt.on_session;
        on_publish_cb = opt.on_publish;
        if (opt.state_file) {
            state_lock = std::make_unique<detail::StateLock>(*opt.state_file);
            auto snap = detail::load_state(*opt.state_file);  // throws on a corrupt file
            if (snap) {
                if (auto e = core.restore(Client::now(), *snap))
                    throw std::invalid_argument("state file " + *opt.state_file + ": " + *e);
                for (const auto& r : snap->rooms)
                    ensure_room(r.room);
            }
            saved_version = core.state_version();
        }
    }

    static ClientConfig make_config(const ClientOptions& o) {
        ClientConfig c;
        c.backoff = o.backoff;
        c.seed = detail::seed_or_random(o.seed);
        c.token = o.token;
        c.dynamic_credentials = static_cast<bool>(o.credentials);
        c.limits = o.limits;
        c.open_timeout = o.open_timeout;
        c.auth_timeout = o.auth_timeout;
        c.close_timeout = o.close_timeout;
        c.heartbeat_interval = o.ping_interval;
        c.heartbeat_ack_timeout = o.pong_timeout;
        c.fatal_codes = o.fatal_codes;
        c.fatal_reasons = o.fatal_reasons;
        c.rooms_max = o.rooms_max;
        c.outbox = o.outbox;
        if (auto e = c.validate()) throw std::invalid_argument("tether::Client: " + *e);
        return c;
    }

    // ---- runs on the strand ---------------------------------------------------------
    void start() {
        if (opt.network_monitor && !detail::is_loopback_host(url.host)) {
            monitor = detail::make_network_monitor(strand, [w = weak_from_this()](bool online) {
                if (auto self = w.lock()) {
                    self->core.set_online(Client::now(), online);
                    self->pump();
                }
            });
            if (monitor->start())
                monitor.reset();  // unavailable: stay online, pings still catch dead links
            else if (!monitor->online())
                core.set_online(Client::now(), false);
        }
        core.connect(Client::now());
        pump();
    }

    void shutdown() {
        stopped = true;
        if (monitor) monitor->stop();
        monitor.reset();
        core.close(Client::now());
        pump();
        save_now();
        mirror.set_stopped();
    }

    std::shared_ptr<Room::Shared> ensure_room(const std::string& name) {
        auto& r = rooms[name];
        if (!r) {
            r = std::make_shared<Room::Shared>();
            r->client = weak_from_this();
            r->name = name;
        }
        return r;
    }

    void open_link(std::uint64_t id) {
        detail::LinkOptions lo;
        lo.headers = opt.headers;
        lo.subprotocol = "tether.v1";
        lo.user_agent = "tether-cpp/" TETHER_VERSION_STRING;
        lo.message_bytes_max = opt.limits.frame_bytes_max;
        lo.write_queue_bytes_max = opt.outbox.bytes_max * 2 + (1u << 20);
        lo.probe = probe;
        lo.tls = tls;
        lo.verify_host = opt.tls_verify;
        auto w = weak_from_this();
        detail::LinkHandlers h;
        h.on_open = [w, id] {
            if (auto s = w.lock()) {
                s->core.handle_open(Client::now(), id);
                s->pump();
            }
        };
        h.on_message = [w, id](std::string data, bool binary) {
            auto s = w.lock();
            if (!s) return;
            if (binary) {
                s->core.handle_message(Client::now(), id, "\x01binary frame");  // decode error
            } else {
                s->core.handle_message(Client::now(), id, data);
            }
            s->pump();
        };
        h.on_close = [w, id](std::uint16_t code, std::string reason) {
            auto s = w.lock();
            if (!s) return;
            s->links.erase(id);
            s->core.handle_close(Client::now(), id, code, reason);
            s->pump();
        };
        auto link = detail::make_link(strand, url, std::move(lo), std::move(h));
        links[id] = link;
        link->start();
    }

    void pump() {
        while (auto t = core.poll_transmit()) {
            switch (t->kind) {
                case Transmit::Kind::open:
                    open_link(t->conn);
                    break;
                case Transmit::Kind::send:
                    if (auto it = links.find(t->conn); it != links.end())
                        it->second->send(std::move(t->text), false);
                    break;
                case Transmit::Kind::close:
                    if (auto it = links.find(t->conn); it != links.end())
                        it->second->close(t->code, std::move(t->reason));
                    break;
                case Transmit::Kind::abort:
                    if (auto it = links.find(t->conn); it != links.end()) {
                        it->second->abort();
                        links.erase(it);
                    }
                    break;
            }
        }
        // Other threads see the new state before any callback runs.
        mirror.update(core.status().get(), core.metrics(), core.pending(), links.empty());
        while (auto e = core.poll_event())
            std::visit([this](auto& ev) { on_event(ev); }, *e);
        mirror.settled(core.pending());
        timer.arm(core.poll_timeout(), [w = weak_from_this()](time_point at) {
            auto self = w.lock();
            if (!self || !self->timer.take(at)) return;
            self->core.handle_timeout(Client::now());
            self->pump();
        });
        maybe_save();
    }

    // -- persistence: outbox changes are saved at once, positions after a short delay.
    std::uint64_t outbox_signature() const {
        const auto& m = core.metrics();
        return m.queued + m.acked + m.dropped;
    }
    void maybe_save() {
        if (!opt.state_file || core.state_version() == saved_version) return;
        if (outbox_signature() != saved_outbox) return save_now();
        if (save_armed) return;
        save_armed = true;
        save_timer.expires_after(opt.state_save_delay);
        save_timer.async_wait([w = weak_from_this()](boost::system::error_code ec) {
            if (auto s = w.lock(); s && !ec) {
                s->save_armed = false;
                s->save_now();
            }
        });
    }
    void save_now() {
        if (!opt.state_file || core.state_version() == saved_version) return;
        if (auto err = detail::save_state(*opt.state_file, core.snapshot())) {
            ++save_failures;  // keep running: the state is still in memory
            last_save_error = *err;
            return;
        }
        saved_version = core.state_version();
        saved_outbox = outbox_signature();
    }

    // -- events -> application callbacks (never after shutdown)
    template <class F, class... A>
    void call(const F& f, A&&... a) {
        gate.call(f, std::forward<A>(a)...);
    }
    void on_event(StatusChanged& e) { call(on_status_cb, e.status); }
    void on_event(RoomStatusChanged& e) {
        if (auto it = rooms.find(e.room); it != rooms.end()) {
            auto r = it->second;
            if (e.state == RoomState::error ||
                (e.state == RoomState::disconnected && e.reason == "left"))
                rooms.erase(it);
            call(r->handlers.on_status, e);
        }
    }
    void on_event(MessageReceived& e) {
        if (auto it = rooms.find(e.room); it != rooms.end())
            call(it->second->handlers.on_message, e);
    }
    void on_event(HistoryLost& e) {
        if (auto it = rooms.find(e.room); it != rooms.end())
            call(it->second->handlers.on_history_lost, e);
    }
    void finish_publish(PublishOutcome out) {
        auto node = publish_cbs.extract(out.id);
        if (node) call(node.mapped(), out);
        call(on_publish_cb, out);
    }
    void on_event(PublishAcked& e) {
        PublishOutcome o;
        o.ok = true;
        o.id = e.id;
        o.room = e.room;
        o.position = e.position;
        o.possibly_delivered = true;
        finish_publish(std::move(o));
    }
    void on_event(PublishFailed& e) {
        PublishOutcome o;
        o.id = e.id;
        o.room = e.room;
        o.error = e.code;
        o.reason = e.reason;
        o.possibly_delivered = e.possibly_delivered;
        finish_publish(std::move(o));
    }
    void on_event(LatencySample& e) { call(on_latency_cb, e.rtt); }
    void on_event(SessionStarted& e) { call(on_session_cb, e); }
    void on_event(CredentialsNeeded& e) {
        if (!opt.credentials) return;
        auto w = weak_from_this();
        CredentialsReply reply{[w, ex = strand](bool ok, std::string value) {
            asio::post(ex, [w, ok, value = std::move(value)]() mutable {
                auto s = w.lock();
                if (!s) return;
                if (ok)
                    s->core.provide_credentials(Client::now(), std::move(value));
                else
                    s->core.credentials_failed(Client::now(), std::move(value));
                s->pump();
            });
        }};
        call(opt.credentials, e.refresh, reply);
    }

    ClientOptions opt;
    asio::strand<asio::any_io_executor> strand;
    ClientCore core;
    detail::CoreTimer timer;
    asio::steady_timer save_timer;
    detail::Url url;
    std::optional<detail::Url> probe;
    std::shared_ptr<asio::ssl::context> tls;
    std::shared_ptr<detail::NetworkMonitor> monitor;
    std::unique_ptr<detail::StateLock> state_lock;
    std::map<std::uint64_t, std::shared_ptr<Link>> links;
    std::map<std::string, std::shared_ptr<Room::Shared>, std::less<>> rooms;
    std::map<std::string, std::function<void(const PublishOutcome&)>, std::less<>> publish_cbs;
    bool stopped = false;
    bool save_armed = false;
    std::uint64_t saved_version = 0;
    std::uint64_t saved_outbox = 0;
    std::uint64_t save_failures = 0;
    std::string last_save_error;

    // Application callbacks: set on the strand, called under cb_mu.
    std::function<void(const ClientStatus&)> on_status_cb;
    std::function<void(std::chrono::milliseconds)> on_latency_cb;
    std::function<void(const SessionStarted&)> on_session_cb;
    std::function<void(const PublishOutcome&)> on_publish_cb;
    detail::CallbackGate gate;
    detail::Mirror<ClientStatus, ClientMetrics> mirror;  ///< for other threads
};

// ---- Room ---------------------------------------------------------------------------

namespace {
template <class F>
void on_strand(const std::shared_ptr<Room::Shared>& s, F f) {
    if (!s) throw std::logic_error("tether::Room: empty handle");
    if (auto c = s->client.lock())
        asio::post(c->strand, [c, f = std::move(f)]() mutable { f(*c); });
}
}  // namespace

void Room::on_message(std::function<void(const MessageReceived&)> f) const {
    on_strand(s_, [s = s_, f = std::move(f)](Client::Impl&) mutable {
        s->handlers.on_message = std::move(f);
    });
}
void Room::on_status(std::function<void(const RoomStatusChanged&)> f) const {
    on_strand(s_, [s = s_, f = std::move(f)](Client::Impl&) mutable {
        s->handlers.on_status = std::move(f);
    });
}
void Room::on_history_lost(std::function<void(const HistoryLost&)> f) const {
    on_strand(s_, [s = s_, f = std::move(f)](Client::Impl&) mutable {
        s->handlers.on_history_lost = std::move(f);
    });
}
void Room::publish(std::string data, std::function<void(const PublishOutcome&)> done) const {
    if (!s_) throw std::logic_error("tether::Room: empty handle");
    auto client = s_->client.lock();
    if (!client) return;
    const auto ticket = client->mirror.take_ticket();  // flush() called after this sees it
    on_strand(s_, [ticket, name = name_, data = std::move(data),
                   done = std::move(done)](Client::Impl& c) mutable {
        auto res = c.core.publish(Client::now(), name, std::move(data));
        if (!res.accepted) {
            PublishOutcome o;
            o.room = name;
            o.error = res.error;
            o.reason = "publish refused: " + res.error;
            c.call(done, o);
        } else if (done) {
            c.publish_cbs[res.id] = std::move(done);
        }
        c.pump();
        c.mirror.applied(ticket);
    });
}
void Room::leave() const {
    on_strand(s_, [name = name_](Client::Impl& c) {
        c.core.leave(Client::now(), name);
        c.pump();
    });
}

// ---- Client -------------------------------------------------------------------------

struct Client::Own : detail::OwnThread {};

Client::Client(ClientOptions options) : own_(std::make_unique<Own>()) {
    impl_ = std::make_shared<Impl>(own_->io.get_executor(), std::move(options));
    asio::post(impl_->strand, [s = impl_] { s->start(); });
    own_->start();
}

Client::Client(asio::any_io_executor executor, ClientOptions options)
    : impl_(std::make_shared<Impl>(std::move(executor), std::move(options))) {
    asio::post(impl_->strand, [s = impl_] { s->start(); });
}

Client::~Client() {
    // From here on no application callback runs (one running now on another
    // thread is waited for).
    impl_->gate.close_gate();
    asio::post(impl_->strand, [s = impl_] { s->shutdown(); });
    if (own_) {
        // Bounded: the close handshake, then a hard stop.
        impl_->mirror.wait_idle(impl_->opt.close_timeout + std::chrono::milliseconds(500));
        own_->stop();
        impl_.reset();
        own_.reset();  // destroys pending handlers (and with them the last references)
    }
}

Room Client::join(std::string room) {
    return join(std::move(room), RoomOptions{});
}

Room Client::join(std::string room, RoomOptions handlers) {
    if (room.empty() || room.size() > impl_->opt.limits.room_bytes_max ||
        !proto::is_valid_utf8(room))
        throw std::invalid_argument("tether::Client::join: invalid room name");
    auto shared = std::make_shared<Room::Shared>();
    shared->client = impl_;
    shared->name = room;
    shared->handlers = std::move(handlers);
    asio::post(impl_->strand, [s = impl_, shared] {
        auto& slot = s->rooms[shared->name];
        if (slot) {
            // Already tracked (restored from the state file, or joined twice):
            // the newest handlers win; keep one shared state.
            slot->handlers = shared->handlers;
        } else {
            slot = shared;
        }
        if (auto err = s->core.join(Client::now(), shared->name); !err.empty()) {
            RoomStatusChanged ev{shared->name, RoomState::error, err};
            s->rooms.erase(shared->name);
            s->call(shared->handlers.on_status, ev);
        }
        s->pump();
    });
    return Room{shared, std::move(room)};
}

bool Client::wait_connected(std::chrono::milliseconds timeout) {
    if (impl_->strand.running_in_this_thread())  // never block the strand
        return impl_->mirror.status().state == ConnState::connected;
    const auto s = impl_->mirror.wait(timeout, detail::connected_or_stopped<ClientStatus>);
    return s.state == ConnState::connected;
}

ClientStatus Client::status() const {
    return impl_->mirror.status();
}
std::string Client::status_line() const {
    return describe(status(), now());
}
ClientMetrics Client::metrics() const {
    return impl_->mirror.metrics();
}
std::size_t Client::pending() const {
    return impl_->mirror.pending();
}
bool Client::flush(std::chrono::milliseconds timeout) {
    if (impl_->strand.running_in_this_thread()) return impl_->core.pending() == 0;
    return impl_->mirror.wait_pending_zero(timeout);
}

void Client::on_status(std::function<void(const ClientStatus&)> f) {
    asio::post(impl_->strand, [s = impl_, f = std::move(f)]() mutable {
        s->on_status_cb = std::move(f);
        s->call(s->on_status_cb, s->core.status().get());  // the current value first
    });
}
void Client::on_latency(std::function<void(std::chrono::milliseconds)> f) {
    asio::post(impl_->strand,
               [s = impl_, f = std::move(f)]() mutable { s->on_latency_cb = std::move(f); });
}
void Client::on_session(std::function<void(const SessionStarted&)> f) {
    asio::post(impl_->strand,
               [s = impl_, f = std::move(f)]() mutable { s->on_session_cb = std::move(f); });
}
void Client::on_publish(std::function<void(const PublishOutcome&)> f) {
    asio::post(impl_->strand,
               [s = impl_, f = std::move(f)]() mutable { s->on_publish_cb = std::move(f); });
}

namespace {
/// Posts a command; wait_connected() calls made after it see its effect.
template <class F>
void command(const std::shared_ptr<Client::Impl>& impl, F f) {
    const auto ticket = impl->mirror.take_ticket();
    asio::post(impl->strand, [impl, ticket, f = std::move(f)] {
        f(impl->core, Client::now());
        impl->pump();
        impl->mirror.applied(ticket);
    });
}
}  // namespace

void Client::retry_now() {
    command(impl_, [](ClientCore& c, time_point now) { c.retry_now(now); });
}
void Client::connect(bool reset_backoff) {
    command(impl_,
            [reset_backoff](ClientCore& c, time_point now) { c.connect(now, reset_backoff); });
}
void Client::close() {
    command(impl_, [](ClientCore& c, time_point now) { c.close(now); });
}
void Client::set_online(bool online) {
    command(impl_, [online](ClientCore& c, time_point now) { c.set_online(now, online); });
}

time_point Client::now() {
    return detail::steady_now();
}

}  // namespace tether
