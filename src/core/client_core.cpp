#include <tether/core/assert.hpp>
#include <tether/core/client_core.hpp>
#include <tether/core/close_codes.hpp>

#include <algorithm>
#include <cstdio>
#include <stdexcept>

namespace tether {
namespace {

template <class... Ts>
struct overloaded : Ts... {
    using Ts::operator()...;
};
template <class... Ts>
overloaded(Ts...) -> overloaded<Ts...>;

constexpr std::size_t kEventsMax = 1u << 20;  // events between two polls
constexpr duration kHeartbeatMin{100};
constexpr duration kHeartbeatMax{3'600'000};

std::string hex64(std::uint64_t v) {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
    return buf;
}

bool contains(const std::vector<std::uint16_t>& v, std::uint16_t x) {
    return std::find(v.begin(), v.end(), x) != v.end();
}

bool valid_room_name(std::string_view room, const proto::Limits& limits) {
    return !room.empty() && room.size() <= limits.room_bytes_max && proto::is_valid_utf8(room);
}

/// A NACK or JOIN_ERROR code as an error code.
std::error_code server_error(std::string_view code) {
    if (code == proto::codes::rate_limited) return error::rate_limited;
    if (code == proto::codes::not_permitted) return error::not_permitted;
    if (code == proto::codes::bad_room) return error::bad_room;
    if (code == proto::codes::too_large) return error::too_large;
    if (code == proto::codes::too_many_rooms) return error::too_many_rooms;
    return error::rejected;
}

ClientConfig validated(ClientConfig c) {
    if (auto r = c.validate(); !r)
        throw std::invalid_argument("tether: invalid client config: " + r.error().message);
    return c;
}

}  // namespace

// ---- names -------------------------------------------------------------------

std::string_view to_string(Phase p) noexcept {
    switch (p) {
        case Phase::none:
            return "none";
        case Phase::fetching_credentials:
            return "fetching credentials";
        case Phase::opening:
            return "opening";
        case Phase::authenticating:
            return "authenticating";
        case Phase::resuming:
            return "resuming";
        case Phase::joining:
            return "joining rooms";
        case Phase::catching_up:
            return "catching up";
        case Phase::sending:
            return "sending";
    }
    return "?";
}

std::string_view to_id(Phase p) noexcept {
    switch (p) {
        case Phase::none:
            return "none";
        case Phase::fetching_credentials:
            return "credentials";
        case Phase::opening:
            return "opening";
        case Phase::authenticating:
            return "authenticating";
        case Phase::resuming:
            return "resuming";
        case Phase::joining:
            return "joining";
        case Phase::catching_up:
            return "catching_up";
        case Phase::sending:
            return "sending";
    }
    return "unknown";
}

std::string_view to_string(RoomState s) noexcept {
    switch (s) {
        case RoomState::connecting:
            return "connecting";
        case RoomState::joined:
            return "joined";
        case RoomState::reconnecting:
            return "reconnecting";
        case RoomState::disconnected:
            return "disconnected";
        case RoomState::error:
            return "error";
    }
    return "?";
}

std::string describe(const ClientStatus& s, time_point now) {
    std::string out =
        describe(static_cast<const ConnectionStatus&>(s), now,
                 s.phase == Phase::none || s.state == ConnState::connected ? std::string_view{}
                                                                           : to_string(s.phase));
    char buf[64];
    if (s.state == ConnState::connected && s.phase == Phase::sending) {
        std::snprintf(buf, sizeof buf, " (sending %zu of %zu)", s.sending_done, s.sending_total);
        out += buf;
    }
    if (s.pending > 0 && s.state != ConnState::connected) {
        std::snprintf(buf, sizeof buf, ", %zu queued", s.pending);
        out += buf;
    }
    return out;
}

ClientConfig::ClientConfig() {
    fatal_codes = {close_code::not_authenticated, close_code::authentication_failed,
                   close_code::invalid_version, close_code::not_permitted, close_code::disallowed};
}

result<void, Error> ClientConfig::validate() const {
    auto bad = [](std::string what) { return make_error(error::invalid_config, std::move(what)); };
    if (auto r = ReconnectConfig::validate(); !r) return r;
    if (credentials_timeout.count() <= 0) return bad("credentials timeout must be > 0");
    if (auth_timeout.count() <= 0) return bad("auth timeout must be > 0");
    if (join_timeout.count() <= 0) return bad("join timeout must be > 0");
    if (sync_timeout.count() <= 0) return bad("sync timeout must be > 0");
    if (join_retry_delay.count() < 0) return bad("join retry delay must not be negative");
    if (heartbeat_interval && *heartbeat_interval < kHeartbeatMin)
        return bad("heartbeat interval must be >= 100 ms");
    if (heartbeat_ack_timeout && heartbeat_ack_timeout->count() <= 0)
        return bad("heartbeat ack timeout must be > 0");
    if (join_attempts_max == 0) return bad("join attempts must be >= 1");
    if (rooms_max == 0) return bad("rooms max must be >= 1");
    if (outbox.count_max == 0) return bad("outbox count max must be >= 1");
    if (outbox.bytes_max == 0) return bad("outbox bytes max must be >= 1");
    if (outbox.inflight_max == 0) return bad("outbox inflight max must be >= 1");
    if (token.size() > limits.token_bytes_max || !proto::is_valid_utf8(token))
        return bad("token must be UTF-8 text of at most " + std::to_string(limits.token_bytes_max) +
                   " bytes");
    if (outbox.message_ttl && outbox.message_ttl->count() <= 0)
        return bad("message ttl must be > 0");
    if (limits.frame_bytes_max < 256) return bad("frame limit must be >= 256 bytes");
    if (limits.depth_max < 3) return bad("depth limit must be >= 3");
    return {};
}

// ---- construction and commands ---------------------------------------------------

ClientCore::ClientCore(ClientConfig config)
    : config_(validated(std::move(config))), rc_(config_, *this) {
    id_prefix_ = hex64(rc_.rng().next_u64());
    arm_timers();
}

void ClientCore::connect(time_point now, bool reset_backoff) {
    TETHER_CHECKED(*this);
    if (!rc_.current() && rc_.stopped()) escalating_ = false;
    rc_.connect(now, reset_backoff);
    refresh(now);
}

void ClientCore::retry_now(time_point now) {
    TETHER_CHECKED(*this);
    if (!rc_.current()) escalating_ = false;
    rc_.retry_now(now);
    refresh(now);
}

void ClientCore::close(time_point now) {
    TETHER_CHECKED(*this);
    escalating_ = false;
    rc_.close(now, close_code::normal, "client closed");
    refresh(now);
}

void ClientCore::set_online(time_point now, bool online) {
    TETHER_CHECKED(*this);
    rc_.set_online(now, online);
    refresh(now);
}

void ClientCore::provide_credentials(time_point now, std::string token) {
    TETHER_CHECKED(*this);
    if (!conn_ || conn_->stage != Stage::credentials) return;  // late answer: ignore
    if (token.size() > config_.limits.token_bytes_max || !proto::is_valid_utf8(token)) {
        // Never put a frame on the wire that the server must refuse (found by fuzzing).
        fail_link(now, close_code::abnormal,
                  "credentials unavailable: the token is not UTF-8 text of at most " +
                      std::to_string(config_.limits.token_bytes_max) + " bytes",
                  error::credentials_failed);
        return refresh(now);
    }
    pending_token_ = std::move(token);
    need_refresh_ = false;
    conn_->stage = Stage::opening;
    rc_.open_socket(now);
    refresh(now);
}

void ClientCore::credentials_failed(time_point now, const std::string& reason) {
    TETHER_CHECKED(*this);
    if (!conn_ || conn_->stage != Stage::credentials) return;
    fail_link(now, close_code::abnormal, "credentials unavailable: " + reason,
              error::credentials_failed);
    refresh(now);
}

result<void> ClientCore::join(time_point now, std::string room) {
    TETHER_CHECKED(*this);
    if (!valid_room_name(room, config_.limits)) return error::invalid_room;
    if (find_room(room)) return {};
    if (rooms_.size() >= config_.rooms_max) return error::too_many_rooms;
    auto [it, ok] = rooms_.emplace(room, Room{});
    it->second.name = std::move(room);
    ++state_version_;
    if (authenticated()) send_join(now, it->second);
    refresh(now);
    return {};
}

bool ClientCore::leave(time_point now, std::string_view room) {
    TETHER_CHECKED(*this);
    auto it = rooms_.find(room);
    if (it == rooms_.end()) return false;
    if (authenticated()) send(proto::Leave{it->second.name});
    emit(RoomStatusChanged{it->second.name, RoomState::disconnected, {}, "left"});
    rooms_.erase(it);
    ++state_version_;
    if (conn_ && conn_->stage == Stage::syncing) maybe_finish_sync(now);
    refresh(now);
    return true;
}

result<std::string> ClientCore::publish(time_point now, std::string room, std::string data) {
    TETHER_CHECKED(*this);
    if (!valid_room_name(room, config_.limits)) return error::invalid_room;
    if (!proto::validate_data(data, config_.limits)) return error::invalid_data;
    // Envelope, room, id and escaping overhead must fit the frame limit too.
    constexpr std::size_t kEnvelopeBytes = 128;
    if (data.size() + 2 * room.size() + config_.limits.id_bytes_max + kEnvelopeBytes >
            config_.limits.frame_bytes_max ||
        data.size() > config_.outbox.bytes_max) {
        ++metrics_.dropped;
        return error::too_large;
    }
    while (outbox_.size() + 1 > config_.outbox.count_max ||
           outbox_bytes_ + data.size() > config_.outbox.bytes_max) {
        if (config_.outbox.overflow == OverflowPolicy::reject_new || outbox_.empty()) {
            ++metrics_.dropped;
            return error::outbox_full;
        }
        fail_entry(0, error::dropped, {}, "outbox full: oldest message dropped");
    }
    OutboxEntry e;
    e.id = id_prefix_ + "-" + std::to_string(next_publish_++);
    e.room = std::move(room);
    e.data = std::move(data);
    if (config_.outbox.message_ttl) e.expires_at = now + *config_.outbox.message_ttl;
    outbox_bytes_ += e.data.size();
    std::string id = e.id;
    if (outbox_.empty()) sending_done_ = sending_total_ = 0;
    e.seq = ++outbox_seq_;
    outbox_.push_back(std::move(e));
    ++state_version_;
    ++sending_total_;
    ++metrics_.queued;
    flush_outbox(now);
    refresh(now);
    return id;
}

// ---- connection lifecycle ------------------------------------------------------------

void ClientCore::begin_attempt(time_point now, std::uint64_t conn) {
    TETHER_ASSERT(!conn_);
    ++metrics_.attempts;
    conn_ = Conn{conn, Stage::credentials, false, duration{0}, 0};
    if (config_.dynamic_credentials) {
        pending_token_.reset();
        rc_.set_deadline(now + config_.credentials_timeout, error::credentials_timeout,
                         "credentials timeout");
        emit(CredentialsNeeded{need_refresh_});
    } else {
        pending_token_ = config_.token;
        conn_->stage = Stage::opening;
        rc_.open_socket(now);
    }
}

void ClientCore::fail_link(time_point now, std::uint16_t code, std::string reason, error why) {
    TETHER_ASSERT(conn_);
    rc_.fail(now, code, std::move(reason), why);
}

void ClientCore::link_lost(time_point now, const LinkClose& why, bool from_peer,
                           bool was_established) {
    conn_.reset();
    rc_.timers().clear(Timer::liveness);
    rc_.timers().clear(Timer::heartbeat);
    if (was_established) {
        ++metrics_.link_losses;
        lost_at_ = now;
    }
    // Messages in flight go back to the queue; joins must be re-sent.
    for (auto& e : outbox_)
        e.sent_on = 0;
    for (auto& [name, r] : rooms_) {
        r.join = JoinState::idle;
        r.join_attempts = 0;
    }
    if (!rc_.active()) return;

    switch (rc_.classify(why, from_peer)) {
        case LossKind::fatal_close:
            session_.reset();
            if (escalating_) return rc_.enter_error(StopReason::auth_failed);
            if (contains(config_.reauth_codes, why.frame->code))
                return escalate(now, StopReason::auth_failed);
            return rc_.stop(StopReason::fatal);
        case LossKind::certificate:
            escalating_ = false;
            return rc_.stop(StopReason::certificate);
        case LossKind::transient:
            break;
    }
    if (from_peer && why.frame && !close_code::info(why.frame->code).resume) session_.reset();
    if (escalating_) return rc_.enter_error(escalation_cause_);
    if (!rc_.schedule_retry(now)) {
        if (rc_.backoff().policy().strategy == BackoffStrategy::never)
            return rc_.stop(StopReason::manual);
        escalate(now, StopReason::max_attempts);
    }
}

void ClientCore::escalate(time_point now, StopReason cause) {
    escalating_ = true;
    escalation_cause_ = cause;
    need_refresh_ = true;
    session_.reset();
    rc_.start_attempt(now);
}

void ClientCore::send(const proto::Message& m) {
    rc_.send(proto::encode(m));
}

void ClientCore::emit(ClientEvent e) {
    TETHER_ASSERT(events_.size() < kEventsMax);
    events_.push_back(std::move(e));
}

bool ClientCore::authenticated() const noexcept {
    return conn_ && (conn_->stage == Stage::syncing || conn_->stage == Stage::established);
}

bool ClientCore::established() const noexcept {
    return conn_ && conn_->stage == Stage::established;
}

ClientCore::Room* ClientCore::find_room(std::string_view name) {
    auto it = rooms_.find(name);
    return it == rooms_.end() ? nullptr : &it->second;
}

std::optional<std::uint64_t> ClientCore::connection() const noexcept {
    if (!conn_ || conn_->stage == Stage::credentials) return std::nullopt;
    return conn_->id;
}

// ---- driver inputs -----------------------------------------------------------------

void ClientCore::handle_open(time_point now, std::uint64_t conn) {
    TETHER_CHECKED(*this);
    if (!rc_.handle_open(conn)) return;
    TETHER_ASSERT(conn_ && conn_->id == conn && conn_->stage == Stage::opening);
    conn_->stage = Stage::hello;
    rc_.set_deadline(now + config_.auth_timeout, error::auth_timeout, "hello timeout");
    refresh(now);
}

void ClientCore::handle_message(time_point now, std::uint64_t conn, std::string_view text) {
    TETHER_CHECKED(*this);
    // A stale socket or a driver bug: nothing from it may reach the session.
    if (!rc_.accepts(conn) || !conn_ || conn_->stage == Stage::opening) return;
    auto res = proto::decode(text, config_.limits);
    if (!res) {
        fail_link(now, res.error().close_code(), "decode error: " + res.error().message(),
                  error::decode_error);
    } else {
        on_message(now, *res);
    }
    refresh(now);
}

void ClientCore::handle_close(time_point now, std::uint64_t conn, const LinkClose& why) {
    TETHER_CHECKED(*this);
    rc_.handle_close(now, conn, why);
    refresh(now);
}

void ClientCore::handle_timeout(time_point now) {
    TETHER_CHECKED(*this);
    // A handler can make another deadline due now (a link lost with a
    // message whose TTL ran out while it was in flight): serve until none is.
    constexpr int kRoundsMax = 4;
    for (int round = 0; round < kRoundsMax; ++round) {
        rc_.timers().for_each_expired(now, [&](Timer t) { on_timer(now, t); });
        refresh(now);
        const auto next = rc_.poll_timeout();
        if (!next || *next > now) return;
    }
    TETHER_ASSERT(false && "handle_timeout left a deadline due");
}

void ClientCore::on_timer(time_point now, Timer t) {
    if (rc_.handle_timer(now, t)) return;
    switch (t) {
        case Timer::status:
            status_.handle_timeout(now);
            break;
        case Timer::liveness:
            if (!conn_) break;
            ++metrics_.heartbeat_timeouts;
            fail_link(now, close_code::unknown_error, "heartbeat timeout", error::liveness_timeout);
            break;
        case Timer::heartbeat:
            if (!conn_ || conn_->stage < Stage::authenticating) break;
            if (!rc_.timers().armed(Timer::liveness)) {
                conn_->heartbeat_ts = to_ms(now);
                rc_.timers().set(Timer::liveness, now + config_.heartbeat_ack_timeout.value_or(
                                                            conn_->heartbeat_interval));
                send(proto::Heartbeat{conn_->heartbeat_ts});
            }
            rc_.timers().set(Timer::heartbeat, now + conn_->heartbeat_interval);
            break;
        case Timer::join:
            if (authenticated()) serve_joins(now);
            break;
        case Timer::outbox:
            // Expire before flushing: dropping an expired head of line may
            // release the messages queued behind it.
            expire_outbox(now);
            if (established()) flush_outbox(now);
            break;
        default:
            break;  // the lifecycle's timers, served above
    }
}

void ClientCore::serve_joins(time_point now) {
    for (auto& [name, r] : rooms_) {
        if (r.join == JoinState::retry_wait && r.join_deadline <= now) {
            r.join_attempts = 0;
            send_join(now, r);
        } else if (r.join == JoinState::sent && r.join_deadline <= now) {
            if (r.join_attempts >= config_.join_attempts_max) {
                // A server that never answers a join is a broken link, not a
                // reason to abandon the room: reconnect and rejoin.
                fail_link(now, close_code::unknown_error, "join timeout in " + name,
                          error::join_timeout);
                return;
            }
            send_join(now, r);
        }
    }
    if (conn_ && conn_->stage == Stage::syncing) maybe_finish_sync(now);
}

std::optional<Transmit> ClientCore::poll_transmit() {
    return rc_.poll_transmit();
}

std::optional<ClientEvent> ClientCore::poll_event() {
    if (events_.empty()) return std::nullopt;
    ClientEvent e = std::move(events_.front());
    events_.pop_front();
    return e;
}

std::optional<time_point> ClientCore::poll_timeout() const {
    return rc_.poll_timeout();
}

/// The per-room and per-message deadlines, folded into their two slots of
/// the timer table (the lifecycle's own slots are set by the Reconnector).
void ClientCore::arm_timers() {
    auto& timers = rc_.timers();
    timers.set(Timer::status, status_.poll_timeout());
    std::optional<time_point> join;
    if (authenticated()) {
        for (const auto& [name, r] : rooms_)
            if ((r.join == JoinState::sent || r.join == JoinState::retry_wait) &&
                (!join || r.join_deadline < *join))
                join = r.join_deadline;
    }
    timers.set(Timer::join, join);
    std::optional<time_point> outbox;
    const std::uint64_t live = established() ? conn_->id : 0;
    auto consider = [&](std::optional<time_point> t) {
        if (t && (!outbox || *t < *outbox)) outbox = t;
    };
    for (const auto& e : outbox_) {
        if (e.sent_on == 0 && live != 0 && e.not_before) {
            consider(e.not_before);
            break;  // only the head of the line can be released
        }
    }
    for (const auto& e : outbox_)
        if (e.expires_at && (e.sent_on == 0 || e.sent_on != live)) consider(e.expires_at);
    timers.set(Timer::outbox, outbox);
}

std::vector<RoomInfo> ClientCore::rooms() const {
    std::vector<RoomInfo> out;
    out.reserve(rooms_.size());
    for (const auto& [name, r] : rooms_)
        out.push_back(RoomInfo{name, derive_room_state(r), r.position});
    return out;
}

// ---- messages ------------------------------------------------------------------------

void ClientCore::on_message(time_point now, proto::Message& msg) {
    const Stage stage = conn_->stage;
    auto violation = [&](const std::string& what) {
        fail_link(now, close_code::decode_error,
                  "unexpected " + std::string{proto::to_string(proto::op_of(msg))} + " " + what,
                  error::protocol_violation);
    };
    const bool in_session = stage == Stage::syncing || stage == Stage::established;
    std::visit(overloaded{
                   [&](proto::Hello& m) {
                       if (stage != Stage::hello) return violation("after HELLO");
                       on_hello(now, m);
                   },
                   [&](proto::Ready& m) {
                       if (stage != Stage::authenticating || conn_->resuming)
                           return violation("without IDENTIFY");
                       session_ = Session{m.session_id, m.resume_token, m.user};
                       on_session(now, false, m.user);
                   },
                   [&](proto::Resumed& m) {
                       if (stage != Stage::authenticating || !conn_->resuming || !session_)
                           return violation("without RESUME");
                       if (!m.resume_token.empty())
                           session_->resume_token = std::move(m.resume_token);
                       ++metrics_.resumes_ok;
                       on_session(now, true, session_->user);
                   },
                   [&](proto::InvalidSession& m) {
                       if (stage != Stage::authenticating || !conn_->resuming)
                           return violation("without RESUME");
                       ++metrics_.resumes_failed;
                       if (m.resumable)
                           return fail_link(now, close_code::unknown_error,
                                            "session not resumable now", error::rejected);
                       session_.reset();
                       for (auto& [name, r] : rooms_)
                           r.join = JoinState::idle;
                       conn_->resuming = false;
                       send_identify();
                   },
                   [&](proto::HeartbeatAck& m) {
                       if (stage == Stage::hello) return violation("before HELLO");
                       if (rc_.timers().armed(Timer::liveness) && m.ts == conn_->heartbeat_ts) {
                           rc_.timers().clear(Timer::liveness);
                           const duration rtt = now - from_ms(m.ts);
                           metrics_.last_rtt = rtt;
                           emit(LatencySample{rtt});
                       }
                   },
                   [&](proto::Joined& m) {
                       if (!in_session) return violation("before READY");
                       on_joined(now, m);
                   },
                   [&](proto::JoinError& m) {
                       if (!in_session) return violation("before READY");
                       on_join_error(now, m);
                   },
                   [&](proto::Event& m) {
                       if (!in_session) return violation("before READY");
                       on_event(now, m);
                   },
                   [&](proto::Ack& m) {
                       if (!in_session) return violation("before READY");
                       on_ack(now, m);
                   },
                   [&](proto::Nack& m) {
                       if (!in_session) return violation("before READY");
                       on_nack(now, m);
                   },
                   [&](proto::Reconnect& m) {
                       if (m.retry_after_ms) rc_.set_retry_after(duration{*m.retry_after_ms});
                       fail_link(now, close_code::normal, "server requested reconnect: " + m.reason,
                                 {});
                   },
                   [&](auto&) { violation("(client-to-server op)"); },
               },
               msg);
}

void ClientCore::on_hello(time_point now, const proto::Hello& m) {
    const duration interval =
        std::clamp(config_.heartbeat_interval.value_or(duration{m.heartbeat_ms}), kHeartbeatMin,
                   kHeartbeatMax);
    conn_->heartbeat_interval = interval;
    // First beat jittered so that clients reconnecting together do not beat together.
    rc_.timers().set(Timer::heartbeat, now + duration{static_cast<duration::rep>(rc_.rng().uniform(
                                                 static_cast<std::uint64_t>(interval.count())))});
    conn_->stage = Stage::authenticating;
    // Same deadline as the HELLO's (open -> READY), now named for this stage.
    rc_.set_deadline(rc_.timers().get(Timer::attempt).value_or(now + config_.auth_timeout),
                     error::auth_timeout, "authentication timeout");
    if (session_ && !escalating_) {
        proto::Resume r{session_->id, session_->resume_token, {}};
        for (auto& [name, room] : rooms_) {
            if (room.position) {
                r.rooms.push_back(proto::RoomPosition{name, *room.position});
                room.join = JoinState::sent;  // the RESUME re-joins it
                room.join_attempts = 1;
                room.join_deadline = now + config_.join_timeout;
            }
        }
        conn_->resuming = true;
        send(r);
    } else {
        send_identify();
    }
}

void ClientCore::send_identify() {
    send(proto::Identify{pending_token_.value_or(std::string{}), config_.client_info});
}

void ClientCore::on_session(time_point now, bool resumed, std::string_view user) {
    conn_->stage = Stage::syncing;
    rc_.set_deadline(now + config_.sync_timeout, error::sync_timeout, "sync timeout");
    if (escalating_) rc_.backoff().reset();  // a new episode after a successful re-identify
    escalating_ = false;
    need_refresh_ = false;
    emit(SessionStarted{session_->id, std::string{user}, resumed});
    for (auto& [name, r] : rooms_) {
        if (resumed && r.join == JoinState::sent) continue;
        r.join_attempts = 0;
        send_join(now, r);
    }
    maybe_finish_sync(now);
}

void ClientCore::send_join(time_point now, Room& r) {
    send(proto::Join{r.name, r.position});
    r.join = JoinState::sent;
    ++r.join_attempts;
    r.join_deadline = now + config_.join_timeout;
}

void ClientCore::on_joined(time_point now, const proto::Joined& m) {
    Room* r = find_room(m.room);
    if (!r || r->join != JoinState::sent) return;  // left meanwhile, or a duplicate answer
    r->join = JoinState::joined;
    r->join_errors = 0;
    r->ever_joined = true;
    if (r->position) {
        const auto last = *r->position;
        const bool same_stream = m.position.epoch == last.epoch && m.position.offset >= last.offset;
        if (!(m.recovered && same_stream)) {
            // Never a silent gap: the application must refetch.
            ++metrics_.history_lost;
            emit(HistoryLost{r->name, last, m.position});
            r->position = m.position;
        }
    } else {
        r->position = m.position;
    }
    ++state_version_;
    r->catch_up_target = m.position.offset;
    maybe_finish_sync(now);
}

void ClientCore::on_join_error(time_point now, const proto::JoinError& m) {
    Room* r = find_room(m.room);
    if (!r || r->join != JoinState::sent) return;
    if (m.fatal || !proto::codes::retryable(m.code)) {
        // A fatal (re)join moves the room to error and stops tracking it
        // (docs/PROTOCOL.md, "Client states").
        std::string reason = m.code + (m.reason.empty() ? "" : ": " + m.reason);
        emit(RoomStatusChanged{r->name, RoomState::error, server_error(m.code), std::move(reason)});
        rooms_.erase(m.room);
        ++state_version_;
    } else {
        // Retryable: try again later, each time waiting twice as long (capped).
        const auto shift = std::min<std::uint32_t>(r->join_errors++, 16);
        const duration wait = std::min<duration>(
            config_.join_retry_delay * (std::int64_t{1} << shift), config_.backoff.max);
        r->join = JoinState::retry_wait;
        r->join_deadline = now + wait;
    }
    maybe_finish_sync(now);
}

void ClientCore::on_event(time_point now, proto::Event& m) {
    Room* r = find_room(m.room);
    if (!r || r->join != JoinState::joined) return;  // not (yet) joined on this connection
    auto& pos = *r->position;
    if (m.position.epoch != pos.epoch) {
        return fail_link(now, close_code::unknown_error, "event from another epoch in " + m.room,
                         error::gap);
    }
    if (m.position.offset <= pos.offset) {
        ++metrics_.duplicates;
        return;
    }
    if (m.position.offset != pos.offset + 1) {
        // Never skip: reconnect and let the server replay from our position.
        return fail_link(now, close_code::unknown_error,
                         "gap in " + m.room + ": expected offset " +
                             std::to_string(pos.offset + 1) + ", got " +
                             std::to_string(m.position.offset),
                         error::gap);
    }
    pos.offset = m.position.offset;
    ++state_version_;
    const bool replayed = m.position.offset <= r->catch_up_target;
    ++metrics_.delivered;
    if (replayed) ++metrics_.replayed;
    emit(MessageReceived{r->name, pos, std::move(m.data), replayed});
    if (conn_->stage == Stage::syncing) maybe_finish_sync(now);
}

void ClientCore::on_ack(time_point now, const proto::Ack& m) {
    auto it = std::find_if(outbox_.begin(), outbox_.end(),
                           [&](const OutboxEntry& e) { return e.id == m.id; });
    if (it == outbox_.end()) return;  // duplicate ack, or already expired/dropped
    PublishAcked ev{it->id, it->room, {m.epoch, m.offset}};
    outbox_bytes_ -= it->data.size();
    outbox_.erase(it);
    ++state_version_;
    ++metrics_.acked;
    ++sending_done_;
    emit(std::move(ev));
    if (established()) flush_outbox(now);
}

void ClientCore::on_nack(time_point now, const proto::Nack& m) {
    auto it = std::find_if(outbox_.begin(), outbox_.end(),
                           [&](const OutboxEntry& e) { return e.id == m.id; });
    if (it == outbox_.end()) return;
    if (proto::codes::retryable(m.code)) {
        const duration wait =
            std::min(duration{m.retry_after_ms.value_or(config_.join_retry_delay.count())},
                     config_.backoff.retry_after_max);
        it->sent_on = 0;
        it->not_before = now + wait;
        return;
    }
    fail_entry(static_cast<std::size_t>(it - outbox_.begin()), server_error(m.code), m.code,
               m.reason);
}

void ClientCore::maybe_finish_sync(time_point now) {
    if (!conn_ || conn_->stage != Stage::syncing) return;
    for (const auto& [name, r] : rooms_) {
        if (r.join != JoinState::joined) return;
        if (r.position->offset < r.catch_up_target) return;
    }
    conn_->stage = Stage::established;
    ++metrics_.connects;
    if (rc_.connected_once()) ++metrics_.reconnects;
    if (lost_at_) {
        metrics_.last_time_to_reconnect = now - *lost_at_;
        metrics_.downtime += now - *lost_at_;
        lost_at_.reset();
    }
    rc_.established(now);
    flush_outbox(now);
}

void ClientCore::flush_outbox(time_point now) {
    if (!established()) return;
    std::size_t inflight = 0;
    for (const auto& e : outbox_)
        if (e.sent_on == conn_->id) ++inflight;
    for (auto& e : outbox_) {
        if (e.sent_on == conn_->id) continue;
        if (inflight >= config_.outbox.inflight_max) break;
        ++inflight;
        if (e.not_before && *e.not_before > now) break;  // keep order behind a held message
        e.not_before.reset();
        e.sent_on = conn_->id;
        e.ever_sent = true;
        ++metrics_.sent;
        send(proto::Publish{e.room, e.id, e.data});
    }
}

void ClientCore::expire_outbox(time_point now) {
    const std::uint64_t live = established() ? conn_->id : 0;
    for (std::size_t i = 0; i < outbox_.size();) {
        const auto& e = outbox_[i];
        if (e.expires_at && *e.expires_at <= now && (e.sent_on == 0 || e.sent_on != live))
            fail_entry(i, error::expired, {}, "message expired before it was acknowledged");
        else
            ++i;
    }
}

void ClientCore::fail_entry(std::size_t index, std::error_code why, std::string server_code,
                            std::string reason) {
    TETHER_ASSERT(index < outbox_.size());
    auto& e = outbox_[index];
    PublishFailed ev{e.id, e.room, why, std::move(server_code), std::move(reason), e.ever_sent};
    outbox_bytes_ -= e.data.size();
    outbox_.erase(outbox_.begin() + static_cast<std::ptrdiff_t>(index));
    ++state_version_;
    ++metrics_.dropped;
    ++sending_done_;
    emit(std::move(ev));
}

// ---- persistence ----------------------------------------------------------------------

ClientSnapshot ClientCore::snapshot() const {
    ClientSnapshot s;
    s.id_prefix = id_prefix_;
    s.next_publish = next_publish_;
    s.outbox.reserve(outbox_.size());
    for (const auto& e : outbox_)
        s.outbox.push_back({e.id, e.room, e.data});
    s.rooms.reserve(rooms_.size());
    for (const auto& [name, r] : rooms_)
        s.rooms.push_back({name, r.position});
    return s;
}

result<void, Error> ClientCore::restore(time_point now, const ClientSnapshot& snap) {
    TETHER_CHECKED(*this);
    auto bad = [](std::string what) { return make_error(error::invalid_state, std::move(what)); };
    if (rc_.started() || rc_.wants_connection())
        return make_error(error::bad_call, "restore() must come before connect()");
    if (!rooms_.empty() || !outbox_.empty())
        return make_error(error::bad_call, "restore() needs an empty client");
    if (snap.id_prefix.empty() || snap.id_prefix.size() > 32) return bad("invalid id prefix");
    if (snap.next_publish == 0) return bad("invalid publish counter");
    if (snap.rooms.size() > config_.rooms_max) return bad("more rooms than rooms_max");
    if (snap.outbox.size() > config_.outbox.count_max)
        return bad("more messages than outbox.count_max");
    std::size_t bytes = 0;
    for (const auto& p : snap.outbox) {
        if (p.id.empty() || p.id.size() > config_.limits.id_bytes_max)
            return bad("invalid message id");
        if (!valid_room_name(p.room, config_.limits)) return bad("invalid room in outbox");
        if (!proto::validate_data(p.data, config_.limits)) return bad("invalid data in outbox");
        bytes += p.data.size();
    }
    if (bytes > config_.outbox.bytes_max) return bad("outbox larger than outbox.bytes_max");
    for (const auto& r : snap.rooms)
        if (!valid_room_name(r.room, config_.limits)) return bad("invalid room name");

    id_prefix_ = snap.id_prefix;
    next_publish_ = snap.next_publish;
    for (const auto& r : snap.rooms) {
        auto [it, fresh] = rooms_.emplace(r.room, Room{});
        if (!fresh) continue;
        it->second.name = r.room;
        it->second.position = r.position;
    }
    for (const auto& p : snap.outbox) {
        OutboxEntry e;
        e.id = p.id;
        e.room = p.room;
        e.data = p.data;
        e.ever_sent = true;  // it may have reached the server before the restart
        if (config_.outbox.message_ttl) e.expires_at = now + *config_.outbox.message_ttl;
        outbox_bytes_ += e.data.size();
        e.seq = ++outbox_seq_;
        outbox_.push_back(std::move(e));
        ++sending_total_;
    }
    ++state_version_;
    arm_timers();
    return {};
}

// ---- derived status ------------------------------------------------------------------

ClientStatus ClientCore::derive_status() const {
    ClientStatus s;
    static_cast<ConnectionStatus&>(s) = rc_.status();
    s.pending = outbox_.size();
    if (!outbox_.empty()) {
        s.sending_done = sending_done_;
        s.sending_total = sending_total_;
    }
    if (s.state == ConnState::connected) {
        s.phase = outbox_.empty() ? Phase::none : Phase::sending;
    } else if ((s.state == ConnState::connecting || s.state == ConnState::reconnecting) && conn_) {
        switch (conn_->stage) {
            case Stage::credentials:
                s.phase = Phase::fetching_credentials;
                break;
            case Stage::opening:
                s.phase = Phase::opening;
                break;
            case Stage::hello:
                s.phase = Phase::authenticating;
                break;
            case Stage::authenticating:
                s.phase = conn_->resuming ? Phase::resuming : Phase::authenticating;
                break;
            case Stage::syncing: {
                const bool joining = std::any_of(rooms_.begin(), rooms_.end(), [](const auto& kv) {
                    return kv.second.join != JoinState::joined;
                });
                s.phase = joining ? Phase::joining : Phase::catching_up;
                break;
            }
            case Stage::established:
                break;
        }
    }
    return s;
}

RoomState ClientCore::derive_room_state(const Room& r) const {
    if (!rc_.started()) return RoomState::connecting;  // queued until connect()
    if (!rc_.active()) return RoomState::disconnected;
    if (conn_ && r.join == JoinState::joined) return RoomState::joined;
    return r.ever_joined ? RoomState::reconnecting : RoomState::connecting;
}

void ClientCore::refresh(time_point) {
    ClientStatus s = derive_status();
    if (!(s == status_.get())) {
        emit(StatusChanged{s});
        status_.set(std::move(s));
    }
    for (auto& [name, r] : rooms_) {
        const RoomState st = derive_room_state(r);
        if (!r.reported_once || st != r.reported) {
            r.reported = st;
            r.reported_once = true;
            emit(RoomStatusChanged{name, st, {}, {}});
        }
    }
    arm_timers();
}

// ---- invariants ----------------------------------------------------------------------

void ClientCore::check_invariants() const {
    // The attempt the core tracks is the lifecycle's current attempt.
    TETHER_ASSERT(conn_.has_value() == rc_.current().has_value());
    if (conn_) TETHER_ASSERT(conn_->id == *rc_.current());
    // `connected` exactly when the stage says so.
    TETHER_ASSERT(established() == rc_.is_established());
    if (conn_ && conn_->stage >= Stage::opening) TETHER_ASSERT(rc_.socket_requested());
    // Liveness timers only on an authenticated-or-later link.
    if (!conn_) TETHER_ASSERT(!rc_.timers().armed(Timer::liveness));
    // The outbox: bounded, its byte count exact, in flight only on the live link.
    TETHER_ASSERT(outbox_.size() <= config_.outbox.count_max);
    std::size_t bytes = 0;
    std::size_t inflight = 0;
    std::uint64_t seq = 0;
    for (const auto& e : outbox_) {
        // Pending publishes stay in the order they were queued.
        TETHER_ASSERT(e.seq > seq && e.seq <= outbox_seq_);
        seq = e.seq;
        bytes += e.data.size();
        if (e.sent_on != 0) {
            TETHER_ASSERT(established() && e.sent_on == conn_->id);
            ++inflight;
        }
    }
    TETHER_ASSERT(bytes == outbox_bytes_ && bytes <= config_.outbox.bytes_max);
    TETHER_ASSERT(inflight <= config_.outbox.inflight_max);
    TETHER_ASSERT(sending_done_ <= sending_total_ || outbox_.empty());
    // Rooms: bounded; joins in flight only while authenticated.
    TETHER_ASSERT(rooms_.size() <= config_.rooms_max);
    for (const auto& [name, r] : rooms_) {
        TETHER_ASSERT(name == r.name);
        if (!conn_) TETHER_ASSERT(r.join == JoinState::idle);
        if (r.join == JoinState::joined) TETHER_ASSERT(r.position.has_value());
    }
    TETHER_ASSERT(events_.size() < kEventsMax);
}

}  // namespace tether
