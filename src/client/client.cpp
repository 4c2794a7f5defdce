// tether::Client: the shared driver over a ClientCore (see include/tether/client.hpp).

#include <tether/client.hpp>
#include <tether/version.hpp>

#include "client/driver.hpp"
#include "client/state_file.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <map>
#include <mutex>
#include <stdexcept>

namespace tether {

namespace asio = boost::asio;

struct Room::Shared {
    std::weak_ptr<Client::Impl> client;
    std::string name;
    // Touched on the client's strand only.
    RoomOptions handlers;
};

namespace {

ClientConfig core_config(const ClientOptions& o) {
    ClientConfig c{static_cast<const ClientConfig&>(o)};  // every option of the core, as given
    c.seed = detail::seed_or_random(o.seed);
    c.dynamic_credentials = static_cast<bool>(o.credentials);
    if (auto r = c.validate(); !r)
        throw std::invalid_argument("tether::Client: " + r.error().message);
    return c;
}

detail::LinkOptions link_options(const ClientOptions& o) {
    detail::LinkOptions lo;
    lo.subprotocol = std::string{proto::subprotocol};
    lo.user_agent = "tether-cpp/" TETHER_VERSION_STRING;
    lo.message_bytes_max = o.limits.frame_bytes_max;
    lo.write_queue_bytes_max = o.outbox.bytes_max * 2 + (1u << 20);
    return lo;
}

}  // namespace

struct Client::Impl : detail::Driver<Client::Impl, ClientCore, ClientStatus, ClientMetrics> {
    Impl(const asio::any_io_executor& ex, ClientOptions o)
        : Driver(ex, detail::endpoint_or_throw(o, "tether::Client"), core_config(o),
                 link_options(o), o.network_monitor),
          opt(std::move(o)),
          save_timer(strand),
          on_status_cb(opt.on_status),
          on_latency_cb(opt.on_latency),
          on_session_cb(opt.on_session),
          on_publish_cb(opt.on_publish) {
        if (opt.state_file) {
            state_lock = std::make_unique<detail::StateLock>(*opt.state_file);
            auto snap = detail::load_state(*opt.state_file);
            if (!snap) throw std::invalid_argument(snap.error().message);
            if (*snap) {
                if (auto r = core.restore(Client::now(), **snap); !r)
                    throw std::invalid_argument("state file " + *opt.state_file + ": " +
                                                r.error().message);
                for (const auto& r : (*snap)->rooms)
                    ensure_room(r.room);
            }
            saved_version = core.state_version();
        }
    }

    // ---- what the shared driver asks of a client ----------------------------------------
    void before_open(std::uint64_t) {}
    void on_link_message(std::uint64_t id, const std::string& data, bool binary) {
        // Binary frames are not part of tether.v1: the core closes with 4002.
        core.handle_message(Client::now(), id, binary ? std::string_view{"\x01"} : data);
    }
    void on_link_pong(std::uint64_t) {}  // liveness is the protocol's HEARTBEAT
    std::size_t queued() const { return core.pending(); }
    void after_pump() { maybe_save(); }
    void on_shutdown() { save_now(); }

    /// The destructor's thread: every publish still waiting gets its answer
    /// (client_closed), through the gate, before the gate closes.
    void before_close_gate() {
        std::map<std::string, std::function<void(const PublishOutcome&)>, std::less<>> left;
        {
            std::lock_guard lk(publish_mu);
            left.swap(publish_cbs);
        }
        for (auto& [id, cb] : left) {
            PublishOutcome o;
            o.error = error::client_closed;
            o.id = id;
            o.reason = "the client was destroyed before the server acknowledged it";
            o.possibly_delivered = true;
            gate.call(cb, o);
        }
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
        if (auto r = detail::save_state(*opt.state_file, core.snapshot()); !r) {
            ++save_failures;  // keep running: the state is still in memory
            last_save_error = r.error().message;
            return;
        }
        saved_version = core.state_version();
        saved_outbox = outbox_signature();
    }

    // -- events -> application callbacks (never after the gate closed)
    template <class F, class... A>
    void call(const F& f, A&&... a) {
        gate.call(f, std::forward<A>(a)...);
    }
    void dispatch(StatusChanged& e) { call(on_status_cb, e.status); }
    void dispatch(RoomStatusChanged& e) {
        if (auto it = rooms.find(e.room); it != rooms.end()) {
            auto r = it->second;
            if (e.state == RoomState::error ||
                (e.state == RoomState::disconnected && e.reason == "left"))
                rooms.erase(it);
            call(r->handlers.on_status, e);
        }
    }
    void dispatch(MessageReceived& e) {
        if (auto it = rooms.find(e.room); it != rooms.end())
            call(it->second->handlers.on_message, e);
    }
    void dispatch(HistoryLost& e) {
        if (auto it = rooms.find(e.room); it != rooms.end())
            call(it->second->handlers.on_history_lost, e);
    }
    void finish_publish(const PublishOutcome& out) {
        std::function<void(const PublishOutcome&)> cb;
        {
            std::lock_guard lk(publish_mu);
            if (auto node = publish_cbs.extract(out.id)) cb = std::move(node.mapped());
        }
        call(cb, out);
        call(on_publish_cb, out);
    }
    void dispatch(PublishAcked& e) {
        PublishOutcome o;
        o.id = e.id;
        o.room = e.room;
        o.position = e.position;
        o.possibly_delivered = true;
        finish_publish(o);
    }
    void dispatch(PublishFailed& e) {
        PublishOutcome o;
        o.error = e.error;
        o.id = e.id;
        o.room = e.room;
        o.server_code = e.server_code;
        o.reason = e.reason;
        o.possibly_delivered = e.possibly_delivered;
        finish_publish(o);
    }
    void dispatch(LatencySample& e) { call(on_latency_cb, e.rtt); }
    void dispatch(SessionStarted& e) { call(on_session_cb, e); }
    void dispatch(CredentialsNeeded& e) {
        if (!opt.credentials) return;
        CredentialsReply reply{[w = weak_from_this()](bool ok, std::string value) {
            auto s = w.lock();
            if (!s) return;
            s->post([ok, value = std::move(value)](Impl& d) mutable {
                if (ok)
                    d.core.provide_credentials(Client::now(), std::move(value));
                else
                    d.core.credentials_failed(Client::now(), value);
                d.pump();
            });
        }};
        call(opt.credentials, e.refresh, reply);
    }

    ClientOptions opt;
    asio::steady_timer save_timer;
    std::unique_ptr<detail::StateLock> state_lock;
    std::map<std::string, std::shared_ptr<Room::Shared>, std::less<>> rooms;  // strand only
    // Taken on the strand (acks) and by the destructor (client_closed).
    std::mutex publish_mu;
    std::map<std::string, std::function<void(const PublishOutcome&)>, std::less<>> publish_cbs;
    bool save_armed = false;
    std::uint64_t saved_version = 0;
    std::uint64_t saved_outbox = 0;
    std::uint64_t save_failures = 0;
    std::string last_save_error;

    // Application callbacks: set on the strand, called through the gate.
    std::function<void(const ClientStatus&)> on_status_cb;
    std::function<void(std::chrono::milliseconds)> on_latency_cb;
    std::function<void(const SessionStarted&)> on_session_cb;
    std::function<void(const PublishOutcome&)> on_publish_cb;
};

// ---- Room ---------------------------------------------------------------------------

namespace {
/// Runs `f(Client::Impl&)` on the client's strand; false when the client is gone.
template <class F>
bool on_strand(const std::shared_ptr<Room::Shared>& s, F f) {
    if (!s) throw std::logic_error("tether::Room: empty handle");
    auto c = s->client.lock();
    if (!c) return false;
    c->post(std::move(f));
    return true;
}
}  // namespace

bool Room::on_message(std::function<void(const MessageReceived&)> f) const {
    return on_strand(s_, [s = s_, f = std::move(f)](Client::Impl&) mutable {
        s->handlers.on_message = std::move(f);
    });
}
bool Room::on_status(std::function<void(const RoomStatusChanged&)> f) const {
    return on_strand(s_, [s = s_, f = std::move(f)](Client::Impl&) mutable {
        s->handlers.on_status = std::move(f);
    });
}
bool Room::on_history_lost(std::function<void(const HistoryLost&)> f) const {
    return on_strand(s_, [s = s_, f = std::move(f)](Client::Impl&) mutable {
        s->handlers.on_history_lost = std::move(f);
    });
}
void Room::publish(std::string data, std::function<void(const PublishOutcome&)> done) const {
    if (!s_) throw std::logic_error("tether::Room: empty handle");
    auto client = s_->client.lock();
    if (!client) {
        // Nothing can send it any more: say so instead of dropping the callback.
        PublishOutcome o;
        o.error = error::client_closed;
        o.room = name_;
        o.reason = "the client no longer exists";
        if (done) done(o);
        return;
    }
    const auto ticket = client->mirror.take_ticket();  // flush() called after this sees it
    client->post([ticket, name = name_, data = std::move(data),
                  done = std::move(done)](Client::Impl& c) mutable {
        auto res = c.core.publish(Client::now(), name, std::move(data));
        if (!res) {
            PublishOutcome o;
            o.error = res.error();
            o.room = name;
            o.reason = "publish refused: " + res.error().message();
            c.call(done, o);
        } else if (done) {
            std::lock_guard lk(c.publish_mu);
            c.publish_cbs[*res] = std::move(done);
        }
        c.pump();
        c.mirror.applied(ticket);
    });
}
bool Room::leave() const {
    return on_strand(s_, [name = name_](Client::Impl& c) {
        (void)c.core.leave(Client::now(), name);
        c.pump();
    });
}

// ---- Client -------------------------------------------------------------------------

struct Client::Own : detail::OwnThread {};

Client::Client(ClientOptions options) : own_(std::make_unique<Own>()) {
    impl_ = std::make_shared<Impl>(own_->io.get_executor(), std::move(options));
    detail::start_driver(impl_, own_.get());
}

Client::Client(const asio::any_io_executor& executor, ClientOptions options)
    : impl_(std::make_shared<Impl>(executor, std::move(options))) {
    detail::start_driver(impl_, nullptr);
}

Client::~Client() {
    const auto close_timeout = impl_->opt.close_timeout;
    detail::stop_driver(impl_, own_, close_timeout);
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
    impl_->post([shared](Impl& s) {
        auto& slot = s.rooms[shared->name];
        if (slot) {
            // Already tracked (restored from the state file, or joined twice):
            // the newest handlers win; keep one shared state.
            slot->handlers = shared->handlers;
        } else {
            slot = shared;
        }
        if (auto r = s.core.join(Client::now(), shared->name); !r) {
            RoomStatusChanged ev{shared->name, RoomState::error, r.error(), r.error().message()};
            s.rooms.erase(shared->name);
            s.call(shared->handlers.on_status, ev);
        }
        s.pump();
    });
    return Room{shared, std::move(room)};
}

bool Client::wait_connected(std::chrono::milliseconds timeout) {
    return impl_->wait_connected(timeout);
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
    return impl_->mirror.queued();
}
bool Client::flush(std::chrono::milliseconds timeout) {
    return impl_->flush(timeout);
}

void Client::on_status(std::function<void(const ClientStatus&)> f) {
    impl_->post([f = std::move(f)](Impl& s) mutable {
        s.on_status_cb = std::move(f);
        s.call(s.on_status_cb, s.core.status().get());  // the current value first
    });
}
void Client::on_latency(std::function<void(std::chrono::milliseconds)> f) {
    impl_->post([f = std::move(f)](Impl& s) mutable { s.on_latency_cb = std::move(f); });
}
void Client::on_session(std::function<void(const SessionStarted&)> f) {
    impl_->post([f = std::move(f)](Impl& s) mutable { s.on_session_cb = std::move(f); });
}
void Client::on_publish(std::function<void(const PublishOutcome&)> f) {
    impl_->post([f = std::move(f)](Impl& s) mutable { s.on_publish_cb = std::move(f); });
}

void Client::retry_now() {
    impl_->command([](ClientCore& c, time_point now) { c.retry_now(now); });
}
void Client::connect(bool reset_backoff) {
    impl_->command(
        [reset_backoff](ClientCore& c, time_point now) { c.connect(now, reset_backoff); });
}
void Client::close() {
    impl_->command([](ClientCore& c, time_point now) { c.close(now); });
}
void Client::set_online(bool online) {
    impl_->command([online](ClientCore& c, time_point now) { c.set_online(now, online); });
}

time_point Client::now() {
    return detail::steady_now();
}

}  // namespace tether
