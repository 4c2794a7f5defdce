#include "redis/connection.hpp"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <random>

namespace tether::redis {
namespace asio = boost::asio;

namespace {

constexpr std::int64_t kBackoffFirstMs = 100;
constexpr std::int64_t kBackoffMaxMs = 5'000;

Reply copy_reply(const redisReply* r) {
    Reply out;
    if (!r) return out;
    switch (r->type) {
        case REDIS_REPLY_INTEGER:
            out.type = Reply::Type::integer;
            out.integer = r->integer;
            break;
        case REDIS_REPLY_STRING:
            out.type = Reply::Type::string;
            out.str.assign(r->str, r->len);
            break;
        case REDIS_REPLY_STATUS:
            out.type = Reply::Type::status;
            out.str.assign(r->str, r->len);
            break;
        case REDIS_REPLY_ERROR:
            out.type = Reply::Type::error;
            out.str.assign(r->str, r->len);
            break;
        case REDIS_REPLY_ARRAY:
            out.type = Reply::Type::array;
            out.elements.reserve(r->elements);
            for (std::size_t i = 0; i < r->elements; ++i)
                out.elements.push_back(copy_reply(r->element[i]));
            break;
        default:
            break;  // nil
    }
    return out;
}

std::int64_t steady_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

std::int64_t steady_us() {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

}  // namespace

std::string Endpoint::name() const {
    const bool v6 = host.find(':') != std::string::npos;
    return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::optional<Endpoint> parse_url(std::string_view url, std::string* why) {
    auto fail = [&](std::string text) -> std::optional<Endpoint> {
        if (why) *why = std::move(text);
        return std::nullopt;
    };
    constexpr std::string_view scheme = "redis://";
    if (url.substr(0, scheme.size()) != scheme)
        return fail("a Redis URL starts with redis:// (redis://HOST[:PORT][/DB])");
    std::string_view rest = url.substr(scheme.size());
    if (rest.find('@') != std::string_view::npos)
        return fail("credentials in the Redis URL are not supported");
    Endpoint e;
    std::string_view path;
    if (auto slash = rest.find('/'); slash != std::string_view::npos) {
        path = rest.substr(slash + 1);
        rest = rest.substr(0, slash);
    }
    std::string_view port;
    if (!rest.empty() && rest.front() == '[') {
        const auto close = rest.find(']');
        if (close == std::string_view::npos) return fail("unclosed [ in the Redis URL's host");
        e.host = std::string{rest.substr(1, close - 1)};
        rest = rest.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') return fail("expected :PORT after the ] of the host");
            port = rest.substr(1);
        }
    } else {
        const auto colon = rest.find(':');
        e.host = std::string{rest.substr(0, colon)};
        if (colon != std::string_view::npos) port = rest.substr(colon + 1);
    }
    if (e.host.empty()) return fail("the Redis URL has no host");
    if (!port.empty() || rest.ends_with(":")) {
        unsigned v = 0;
        auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), v);
        if (ec != std::errc{} || p != port.data() + port.size() || v == 0 || v > 65535)
            return fail("the Redis URL's port must be 1..65535, not '" + std::string{port} + "'");
        e.port = static_cast<std::uint16_t>(v);
    }
    if (!path.empty()) {
        unsigned v = 0;
        auto [p, ec] = std::from_chars(path.data(), path.data() + path.size(), v);
        if (ec != std::errc{} || p != path.data() + path.size() || v > 15)
            return fail("the Redis URL's database must be 0..15, not '" + std::string{path} + "'");
        e.db = v;
    }
    return e;
}

std::optional<std::uint64_t> Reply::as_u64() const {
    if (type == Type::integer) {
        if (integer < 0) return std::nullopt;
        return static_cast<std::uint64_t>(integer);
    }
    if (type != Type::string && type != Type::status) return std::nullopt;
    std::uint64_t v = 0;
    auto [p, ec] = std::from_chars(str.data(), str.data() + str.size(), v);
    if (ec != std::errc{} || p != str.data() + str.size() || str.empty()) return std::nullopt;
    return v;
}

std::string Reply::as_text() const {
    if (type == Type::integer) return std::to_string(integer);
    return str;
}

// ---- the socket: hiredis's event hooks on an Asio descriptor ---------------------------------

struct Connection::Pending {
    Callback cb;
    std::int64_t sent_ms = 0;
    std::int64_t sent_us = 0;
};

struct Connection::Io : std::enable_shared_from_this<Connection::Io> {
    explicit Io(asio::io_context& io, int fd) : sd(io, fd) {}
    asio::posix::stream_descriptor sd;
    redisAsyncContext* ac = nullptr;  // null once hiredis cleaned up
    bool want_read = false, want_write = false, reading = false, writing = false;

    void arm_read() {
        if (reading || !ac || !want_read) return;
        reading = true;
        sd.async_wait(asio::posix::stream_descriptor::wait_read,
                      [self = shared_from_this()](boost::system::error_code ec) {
                          self->reading = false;
                          if (ec || !self->ac || !self->want_read) return;
                          redisAsyncHandleRead(self->ac);
                          self->arm_read();
                      });
    }
    void arm_write() {
        if (writing || !ac || !want_write) return;
        writing = true;
        sd.async_wait(asio::posix::stream_descriptor::wait_write,
                      [self = shared_from_this()](boost::system::error_code ec) {
                          self->writing = false;
                          if (ec || !self->ac || !self->want_write) return;
                          redisAsyncHandleWrite(self->ac);
                          self->arm_write();
                      });
    }
    static void add_read(void* p) {
        auto* io = static_cast<Io*>(p);
        io->want_read = true;
        io->arm_read();
    }
    static void del_read(void* p) { static_cast<Io*>(p)->want_read = false; }
    static void add_write(void* p) {
        auto* io = static_cast<Io*>(p);
        io->want_write = true;
        io->arm_write();
    }
    static void del_write(void* p) { static_cast<Io*>(p)->want_write = false; }
    static void cleanup(void* p) {
        // hiredis frees the context and closes the socket: let go of both.
        auto* io = static_cast<Io*>(p);
        io->ac = nullptr;
        io->want_read = io->want_write = false;
        boost::system::error_code ec;
        io->sd.cancel(ec);
        (void)io->sd.release();
    }
};

Connection::Connection(asio::io_context& io, Options options, Log log)
    : io_(io), opt_(std::move(options)), log_(std::move(log)), deadline_(io), retry_(io) {}

Connection::~Connection() {
    stop();
}

void Connection::start() {
    if (state_ != State::idle) return;
    connect();
}

void Connection::stop() {
    if (state_ == State::stopped) return;
    state_ = State::stopped;
    deadline_.cancel();
    retry_.cancel();
    if (auto* ac = std::exchange(ac_, nullptr)) redisAsyncFree(ac);
    fail_all("stopped");
    sock_.reset();
}

void Connection::connect() {
    if (!resolve_) return connect_now();
    state_ = State::connecting;
    const auto gen = ++generation_;
    resolve_([this, gen, alive = std::weak_ptr<bool>(alive_)](std::optional<Endpoint> e,
                                                              std::string why) {
        if (alive.expired() || gen != generation_ || state_ != State::connecting) return;
        if (!e) return on_connected(false, why);
        if (log_ && !(*e == opt_.endpoint))
            log_(0, "redis " + opt_.name + ": the primary is " + e->name());
        opt_.endpoint = *e;
        connect_now();
    });
}

void Connection::connect_now() {
    state_ = State::connecting;
    ++generation_;
    redisAsyncContext* ac = redisAsyncConnect(opt_.endpoint.host.c_str(), opt_.endpoint.port);
    if (!ac || ac->err) {
        const std::string why = ac ? ac->errstr : "out of memory";
        if (ac) redisAsyncFree(ac);
        on_connected(false, why);
        return;
    }
    ac_ = ac;
    ac->data = this;
    sock_ = std::make_shared<Io>(io_, ac->c.fd);
    sock_->ac = ac;
    ac->ev.data = sock_.get();
    ac->ev.addRead = &Io::add_read;
    ac->ev.delRead = &Io::del_read;
    ac->ev.addWrite = &Io::add_write;
    ac->ev.delWrite = &Io::del_write;
    ac->ev.cleanup = &Io::cleanup;
    // After the hooks: this arms the first write wait, which reports the connect.
    redisAsyncSetConnectCallback(ac, [](const redisAsyncContext* c, int status) {
        auto* self = static_cast<Connection*>(c->data);
        if (self->ac_ != c) return;
        if (status != REDIS_OK) {
            self->ac_ = nullptr;  // hiredis frees it after this callback
            self->on_connected(false, c->errstr);
        } else {
            self->on_connected(true, {});
        }
    });
    redisAsyncSetDisconnectCallback(ac, [](const redisAsyncContext* c, int) {
        auto* self = static_cast<Connection*>(c->data);
        if (self->ac_ != c) return;  // a drop of ours
        self->ac_ = nullptr;         // hiredis frees it after this callback
        self->on_disconnected(c->err ? c->errstr : "closed by the server");
    });
    // The connect and the start-up (SELECT, the owner's hook) have a deadline.
    deadline_.cancel();
    deadline_armed_ = true;
    deadline_.expires_after(std::chrono::milliseconds(opt_.connect_timeout.count()));
    deadline_.async_wait([this, alive = std::weak_ptr<bool>(alive_),
                          gen = generation_](boost::system::error_code ec) {
        if (alive.expired() || gen != generation_) return;
        deadline_armed_ = false;
        if (ec) return;
        if (state_ == State::connecting || state_ == State::starting) {
            ++stats_.timeouts;
            reset("no connection within the connect timeout");
        } else {
            check_deadline();
        }
    });
}

void Connection::on_connected(bool ok, std::string_view why) {
    if (!ok) {
        if (log_ && (!connected_once_ || backoff_ms_ == 0))
            log_(1, "redis " + opt_.name + " " + opt_.endpoint.name() +
                        ": cannot connect: " + std::string{why});
        sock_.reset();
        schedule_reconnect();
        return;
    }
    state_ = State::starting;
    const auto gen = generation_;
    auto finish = [this, gen, alive = std::weak_ptr<bool>(alive_)](bool up) {
        if (alive.expired() || gen != generation_ || state_ != State::starting) return;
        if (!up) {
            reset("start-up failed");
            return;
        }
        state_ = State::ready;
        if (connected_once_) ++stats_.reconnects;
        connected_once_ = true;
        backoff_ms_ = 0;
        if (log_) log_(0, "redis " + opt_.name + " " + opt_.endpoint.name() + ": connected");
        arm_deadline();
    };
    auto hook = [this, finish](bool selected) {
        if (!selected) return finish(false);
        if (on_up_)
            on_up_(finish);
        else
            finish(true);
    };
    if (opt_.endpoint.db != 0) {
        command(
            {"SELECT", std::to_string(opt_.endpoint.db)},
            [hook](std::error_code ec, Reply&& r) { hook(!ec && !r.is_error()); }, true);
    } else {
        hook(true);
    }
}

void Connection::on_disconnected(std::string_view why) {
    if (state_ == State::stopped) return;
    const bool was_ready = state_ == State::ready;
    state_ = State::idle;
    sock_.reset();
    fail_all(why);
    if (log_ && was_ready)
        log_(1, "redis " + opt_.name + " " + opt_.endpoint.name() +
                    ": connection lost: " + std::string{why});
    if (on_down_) on_down_(why);
    schedule_reconnect();
}

void Connection::reset(std::string_view why) {
    if (state_ == State::stopped) return;
    if (auto* ac = std::exchange(ac_, nullptr)) redisAsyncFree(ac);  // its callbacks fail
    on_disconnected(why);
}

void Connection::schedule_reconnect() {
    if (state_ == State::stopped) return;
    state_ = State::idle;
    backoff_ms_ = backoff_ms_ == 0 ? kBackoffFirstMs : std::min(backoff_ms_ * 2, kBackoffMaxMs);
    static thread_local std::minstd_rand rng{std::random_device{}()};
    const auto jitter =
        std::uniform_int_distribution<std::int64_t>{-backoff_ms_ / 4, backoff_ms_ / 4}(rng);
    retry_.expires_after(std::chrono::milliseconds(backoff_ms_ + jitter));
    retry_.async_wait([this, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec) {
        if (ec || alive.expired() || state_ != State::idle) return;
        connect();
    });
}

void Connection::command(std::vector<std::string> argv, Callback cb, bool during_startup) {
    const bool usable = state_ == State::ready || (during_startup && state_ == State::starting);
    if (!usable || !ac_ || pending_.size() >= opt_.pending_max) {
        ++stats_.errors;
        cb(make_error_code(error::store_unavailable), {});
        return;
    }
    std::vector<const char*> args;
    std::vector<std::size_t> lens;
    args.reserve(argv.size());
    lens.reserve(argv.size());
    for (const auto& a : argv) {
        args.push_back(a.data());
        lens.push_back(a.size());
    }
    auto p = std::make_shared<Pending>();
    p->cb = std::move(cb);
    p->sent_ms = steady_ms();
    p->sent_us = steady_us();
    if (redisAsyncCommandArgv(ac_, &Connection::reply_cb, p.get(), static_cast<int>(args.size()),
                              args.data(), lens.data()) != REDIS_OK) {
        ++stats_.errors;
        p->cb(make_error_code(error::store_unavailable), {});
        return;
    }
    ++stats_.commands;
    pending_.push_back(std::move(p));
    if (state_ == State::ready) arm_deadline();
}

void Connection::subscribe(const std::string& channel, MessageHandler on_message,
                           std::function<void(bool)> cb) {
    if (!ac_ || (state_ != State::starting && state_ != State::ready)) {
        cb(false);
        return;
    }
    on_message_ = std::make_unique<MessageHandler>(std::move(on_message));
    auto p = std::make_shared<Pending>();
    p->cb = [cb = std::move(cb)](std::error_code ec, Reply&&) { cb(!ec); };
    p->sent_ms = steady_ms();
    p->sent_us = steady_us();
    const char* args[] = {"SUBSCRIBE", channel.data()};
    const std::size_t lens[] = {9, channel.size()};
    if (redisAsyncCommandArgv(ac_, &Connection::message_cb, nullptr, 2, args, lens) != REDIS_OK) {
        p->cb(make_error_code(error::store_unavailable), {});
        return;
    }
    ++stats_.commands;
    pending_.push_back(std::move(p));
}

void Connection::reply_cb(redisAsyncContext* ac, void* reply, void* priv) {
    auto* self = static_cast<Connection*>(ac->data);
    auto* p = static_cast<Pending*>(priv);
    auto it = std::find_if(self->pending_.begin(), self->pending_.end(),
                           [p](const auto& q) { return q.get() == p; });
    if (it == self->pending_.end()) return;  // failed already (fail_all)
    auto mine = std::move(*it);
    self->pending_.erase(it);
    if (!reply) {
        ++self->stats_.errors;
        mine->cb(make_error_code(error::store_unavailable), {});
        return;
    }
    auto r = copy_reply(static_cast<redisReply*>(reply));
    if (r.is_error()) ++self->stats_.errors;
    self->stats_.latency_us_sum += static_cast<std::uint64_t>(steady_us() - mine->sent_us);
    ++self->stats_.latency_samples;
    mine->cb({}, std::move(r));
}

void Connection::message_cb(redisAsyncContext* ac, void* reply, void*) {
    auto* self = static_cast<Connection*>(ac->data);
    if (!reply || self->ac_ != ac) return;  // the connection is going: its drop handles it
    const auto* r = static_cast<redisReply*>(reply);
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
        r->element[0]->type != REDIS_REPLY_STRING)
        return;
    const std::string_view kind{r->element[0]->str, r->element[0]->len};
    if (kind == "subscribe") {
        // The oldest pending entry is the SUBSCRIBE (nothing else is sent here).
        if (!self->pending_.empty()) {
            auto mine = std::move(self->pending_.front());
            self->pending_.pop_front();
            mine->cb({}, {});
        }
        return;
    }
    if (kind == "message" && self->on_message_ && r->element[1]->type == REDIS_REPLY_STRING &&
        r->element[2]->type == REDIS_REPLY_STRING)
        (*self->on_message_)(std::string_view{r->element[1]->str, r->element[1]->len},
                             std::string_view{r->element[2]->str, r->element[2]->len});
}

void Connection::arm_deadline() {
    if (deadline_armed_ || pending_.empty() || state_ != State::ready) return;
    deadline_armed_ = true;
    const auto due = pending_.front()->sent_ms + opt_.command_timeout.count();
    deadline_.expires_after(
        std::chrono::milliseconds(std::max<std::int64_t>(0, due - steady_ms())));
    deadline_.async_wait([this, alive = std::weak_ptr<bool>(alive_),
                          gen = generation_](boost::system::error_code ec) {
        if (alive.expired()) return;
        if (gen == generation_) deadline_armed_ = false;
        if (ec || gen != generation_) return;
        check_deadline();
    });
}

void Connection::check_deadline() {
    if (pending_.empty() || state_ != State::ready) return;
    if (steady_ms() - pending_.front()->sent_ms >= opt_.command_timeout.count()) {
        ++stats_.timeouts;
        reset("a command got no reply within " + std::to_string(opt_.command_timeout.count()) +
              " ms");
        return;
    }
    arm_deadline();
}

void Connection::fail_all(std::string_view) {
    auto failed = std::exchange(pending_, {});
    for (auto& p : failed) {
        ++stats_.errors;
        p->cb(make_error_code(error::store_unavailable), {});
    }
}

}  // namespace tether::redis
