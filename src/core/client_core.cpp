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

constexpr std::size_t kQueueMax = 1u << 20;  // transmits/events between two polls
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

}  // namespace

// ---- names -------------------------------------------------------------------

std::string_view to_string(ConnState s) noexcept {
    switch (s) {
        case ConnState::connecting:
            return "connecting";
        case ConnState::connected:
            return "connected";
        case ConnState::reconnecting:
            return "reconnecting";
        case ConnState::disconnected:
            return "disconnected";
        case ConnState::error:
            return "error";
    }
    return "?";
}

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

std::string_view to_string(StopReason r) noexcept {
    switch (r) {
        case StopReason::none:
            return "none";
        case StopReason::not_started:
            return "not started";
        case StopReason::manual:
            return "closed by the application";
        case StopReason::offline:
            return "offline";
        case StopReason::fatal:
            return "fatal close";
        case StopReason::max_attempts:
            return "max attempts reached";
        case StopReason::auth_failed:
            return "re-authentication failed";
    }
    return "?";
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
    std::string out{to_string(s.state)};
    char buf[96];
    switch (s.state) {
        case ConnState::connected:
            if (s.phase == Phase::sending) {
                std::snprintf(buf, sizeof buf, " (sending %zu of %zu)", s.sending_done,
                              s.sending_total);
                out += buf;
            }
            break;
        case ConnState::connecting:
        case ConnState::reconnecting:
            if (s.next_retry_at) {
                const auto in = std::max<std::int64_t>(0, (*s.next_retry_at - now).count());
                std::snprintf(buf, sizeof buf, " (attempt %u, next in %.1f s)", s.attempt,
                              static_cast<double>(in) / 1000.0);
                out += buf;
            } else if (s.phase != Phase::none) {
                out += " (";
                out += to_string(s.phase);
                out += ")";
            }
            break;
        case ConnState::disconnected:
        case ConnState::error:
            out += ": ";
            out += to_string(s.reason);
            if (s.close_code != 0 && s.reason != StopReason::manual &&
                s.reason != StopReason::offline) {
                std::snprintf(buf, sizeof buf, " (close %u", s.close_code);
                out += buf;
                if (!s.close_reason.empty()) out += " " + s.close_reason;
                out += ")";
            }
            break;
    }
    if (s.pending > 0 && s.state != ConnState::connected) {
        std::snprintf(buf, sizeof buf, ", %zu queued", s.pending);
        out += buf;
    }
    return out;
}

std::optional<std::string> ClientConfig::validate() const {
    if (auto e = backoff.validate()) return e;
    if (credentials_timeout.count() <= 0) return "credentials timeout must be > 0";
    if (open_timeout.count() <= 0) return "open timeout must be > 0";
    if (auth_timeout.count() <= 0) return "auth timeout must be > 0";
    if (join_timeout.count() <= 0) return "join timeout must be > 0";
    if (sync_timeout.count() <= 0) return "sync timeout must be > 0";
    if (close_timeout.count() <= 0) return "close timeout must be > 0";
    if (join_retry_delay.count() < 0) return "join retry delay must not be negative";
    if (heartbeat_interval && *heartbeat_interval < kHeartbeatMin)
        return "heartbeat interval must be >= 100 ms";
    if (heartbeat_ack_timeout && heartbeat_ack_timeout->count() <= 0)
        return "heartbeat ack timeout must be > 0";
    if (join_attempts_max == 0) return "join attempts must be >= 1";
    if (rooms_max == 0) return "rooms max must be >= 1";
    if (outbox.count_max == 0) return "outbox count max must be >= 1";
    if (outbox.bytes_max == 0) return "outbox bytes max must be >= 1";
    if (outbox.inflight_max == 0) return "outbox inflight max must be >= 1";
    if (token.size() > limits.token_bytes_max || !proto::is_valid_utf8(token))
        return "token must be UTF-8 text of at most " + std::to_string(limits.token_bytes_max) +
               " bytes";
    if (outbox.message_ttl && outbox.message_ttl->count() <= 0) return "message ttl must be > 0";
    if (limits.frame_bytes_max < 256) return "frame limit must be >= 256 bytes";
    if (limits.depth_max < 3) return "depth limit must be >= 3";
    return std::nullopt;
}

// ---- construction and commands ---------------------------------------------------

ClientCore::ClientCore(ClientConfig config)
    : config_(std::move(config)), rng_(config_.seed), backoff_(BackoffPolicy{}) {
    if (auto e = config_.validate())
        throw std::invalid_argument("tether: invalid client config: " + *e);
    backoff_ = Backoff{config_.backoff};
    id_prefix_ = hex64(rng_.next_u64());
}

void ClientCore::connect(time_point now, bool reset_backoff) {
    if (conn_) return refresh(now);  // never two attempts at once
    const bool was_stopped = !want_connected_;
    want_connected_ = true;
    error_ = false;
    stop_reason_ = StopReason::none;
    if (was_stopped) {
        escalating_ = false;
        connected_once_ = false;
        attempts_since_connect_ = 0;
    }
    if (reset_backoff) backoff_.reset();
    retry_at_.reset();
    if (online_) start_attempt(now);
    refresh(now);
}

void ClientCore::retry_now(time_point now) {
    if (conn_) return refresh(now);
    want_connected_ = true;
    error_ = false;
    stop_reason_ = StopReason::none;
    escalating_ = false;
    retry_at_.reset();
    if (online_) start_attempt(now);
    refresh(now);
}

void ClientCore::close(time_point now) {
    want_connected_ = false;
    error_ = false;
    escalating_ = false;
    stop_reason_ = StopReason::manual;
    retry_at_.reset();
    if (conn_) fail_link(now, close_code::normal, "client closed");
    refresh(now);
}

void ClientCore::set_online(time_point now, bool online) {
    if (online == online_) return;
    online_ = online;
    if (!online) {
        retry_at_.reset();
        if (conn_) fail_link(now, close_code::going_away, "offline");
    } else if (want_connected_ && !conn_) {
        if (config_.reset_backoff_on_online) backoff_.reset();
        start_attempt(now);
    }
    refresh(now);
}

void ClientCore::provide_credentials(time_point now, std::string token) {
    if (!conn_ || conn_->stage != Stage::credentials) return;  // late answer: ignore
    if (token.size() > config_.limits.token_bytes_max || !proto::is_valid_utf8(token)) {
        // Never put a frame on the wire that the server must refuse (found by fuzzing).
        fail_link(now, close_code::abnormal,
                  "credentials unavailable: the token is not UTF-8 text of at most " +
                      std::to_string(config_.limits.token_bytes_max) + " bytes");
        return refresh(now);
    }
    pending_token_ = std::move(token);
    need_refresh_ = false;
    conn_->stage = Stage::opening;
    conn_->deadline = now + config_.open_timeout;
    transmits_.push_back(Transmit{Transmit::Kind::open, conn_->id, {}, 0, {}});
    refresh(now);
}

void ClientCore::credentials_failed(time_point now, std::string reason) {
    if (!conn_ || conn_->stage != Stage::credentials) return;
    fail_link(now, close_code::abnormal, "credentials unavailable: " + reason);
    refresh(now);
}

std::string ClientCore::join(time_point now, std::string room) {
    if (!valid_room_name(room, config_.limits)) return "invalid_room";
    if (find_room(room)) return {};
    if (rooms_.size() >= config_.rooms_max) return "too_many_rooms";
    auto [it, ok] = rooms_.emplace(room, Room{});
    it->second.name = std::move(room);
    ++state_version_;
    if (authenticated()) send_join(now, it->second);
    refresh(now);
    return {};
}

void ClientCore::leave(time_point now, std::string_view room) {
    auto it = rooms_.find(room);
    if (it == rooms_.end()) return;
    if (authenticated()) send(proto::Leave{it->second.name});
    emit(RoomStatusChanged{it->second.name, RoomState::disconnected, "left"});
    rooms_.erase(it);
    ++state_version_;
    if (conn_ && conn_->stage == Stage::syncing) maybe_finish_sync(now);
    refresh(now);
}

PublishResult ClientCore::publish(time_point now, std::string room, std::string data) {
    PublishResult res;
    if (!valid_room_name(room, config_.limits)) {
        res.error = "invalid_room";
        return res;
    }
    if (proto::validate_data(data, config_.limits)) {
        res.error = "invalid_data";
        return res;
    }
    // Envelope, room, id and escaping overhead must fit the frame limit too.
    constexpr std::size_t kEnvelopeBytes = 128;
    if (data.size() + 2 * room.size() + config_.limits.id_bytes_max + kEnvelopeBytes >
            config_.limits.frame_bytes_max ||
        data.size() > config_.outbox.bytes_max) {
        res.error = "too_large";
        ++metrics_.dropped;
        return res;
    }
    while (outbox_.size() + 1 > config_.outbox.count_max ||
           outbox_bytes_ + data.size() > config_.outbox.bytes_max) {
        if (config_.outbox.overflow == OverflowPolicy::reject_new || outbox_.empty()) {
            res.error = "outbox_full";
            ++metrics_.dropped;
            return res;
        }
        fail_entry(0, "dropped", "outbox full: oldest message dropped");
    }
    OutboxEntry e;
    e.id = id_prefix_ + "-" + std::to_string(next_publish_++);
    e.room = std::move(room);
    e.data = std::move(data);
    if (config_.outbox.message_ttl) e.expires_at = now + *config_.outbox.message_ttl;
    outbox_bytes_ += e.data.size();
    res.accepted = true;
    res.id = e.id;
    if (outbox_.empty()) sending_done_ = sending_total_ = 0;
    outbox_.push_back(std::move(e));
    ++state_version_;
    ++sending_total_;
    ++metrics_.queued;
    flush_outbox(now);
    refresh(now);
    return res;
}

// ---- connection lifecycle ------------------------------------------------------------

void ClientCore::start_attempt(time_point now) {
    TETHER_ASSERT(!conn_ && want_connected_ && online_ && !error_);
    abort_closing();
    retry_at_.reset();
    ++attempts_since_connect_;
    ++outage_attempts_;
    ++metrics_.attempts;
    Conn c;
    c.id = next_conn_++;
    if (config_.dynamic_credentials) {
        c.stage = Stage::credentials;
        c.deadline = now + config_.credentials_timeout;
        pending_token_.reset();
        conn_ = c;
        emit(CredentialsNeeded{need_refresh_});
    } else {
        pending_token_ = config_.token;
        c.stage = Stage::opening;
        c.deadline = now + config_.open_timeout;
        conn_ = c;
        transmits_.push_back(Transmit{Transmit::Kind::open, c.id, {}, 0, {}});
    }
}

void ClientCore::abort_closing() {
    if (!closing_) return;
    transmits_.push_back(Transmit{Transmit::Kind::abort, closing_->id, {}, 0, {}});
    closing_.reset();
}

void ClientCore::fail_link(time_point now, std::uint16_t code, std::string reason) {
    TETHER_ASSERT(conn_);
    const Conn lost = *conn_;
    conn_.reset();
    switch (lost.stage) {
        case Stage::credentials:
            break;  // no socket yet
        case Stage::opening:
            transmits_.push_back(Transmit{Transmit::Kind::abort, lost.id, {}, 0, {}});
            break;
        default:
            abort_closing();
            transmits_.push_back(Transmit{Transmit::Kind::close, lost.id, {}, code, reason});
            closing_ = Closing{lost.id, now + config_.close_timeout};
    }
    if (lost.stage == Stage::established) note_established_lost(now);
    on_link_lost(now, code, reason, false);
}

void ClientCore::on_link_lost(time_point now, std::uint16_t code, std::string_view reason,
                              bool from_peer) {
    last_close_code_ = code;
    last_close_reason_ = std::string{reason};
    // Messages in flight go back to the queue; joins must be re-sent.
    for (auto& e : outbox_)
        e.sent_on = 0;
    for (auto& [name, r] : rooms_) {
        r.join = JoinState::idle;
        r.join_attempts = 0;
    }
    if (!want_connected_ || !online_) return;

    if (from_peer) {
        const bool fatal_code = contains(config_.fatal_codes, code);
        const bool fatal_reason = std::any_of(
            config_.fatal_reasons.begin(), config_.fatal_reasons.end(), [&](const std::string& s) {
                return !s.empty() && reason.find(s) != std::string_view::npos;
            });
        if (fatal_code || fatal_reason) {
            session_.reset();
            if (escalating_) return enter_error(StopReason::auth_failed);
            if (contains(config_.reauth_codes, code)) {
                escalation_cause_ = StopReason::auth_failed;
                return escalate(now);
            }
            want_connected_ = false;
            stop_reason_ = StopReason::fatal;
            return;
        }
        if (!close_code::info(code).resume) session_.reset();
    }
    if (escalating_) return enter_error(escalation_cause_);
    schedule_retry(now);
}

void ClientCore::escalate(time_point now) {
    escalating_ = true;
    need_refresh_ = true;
    session_.reset();
    if (online_) start_attempt(now);
}

void ClientCore::schedule_retry(time_point now) {
    if (pending_retry_after_) {
        backoff_.set_retry_after(*pending_retry_after_);
        pending_retry_after_.reset();
    }
    auto d = backoff_.next_delay(rng_);
    if (!d) {
        if (backoff_.policy().strategy == BackoffStrategy::never) {
            want_connected_ = false;
            stop_reason_ = StopReason::manual;
            return;
        }
        escalation_cause_ = StopReason::max_attempts;
        return escalate(now);
    }
    retry_at_ = now + *d;
}

void ClientCore::enter_error(StopReason r) {
    error_ = true;
    want_connected_ = false;
    escalating_ = false;
    stop_reason_ = r;
    retry_at_.reset();
}

void ClientCore::send(proto::Message m) {
    TETHER_ASSERT(conn_);
    TETHER_ASSERT(transmits_.size() < kQueueMax);
    transmits_.push_back(Transmit{Transmit::Kind::send, conn_->id, proto::encode(m), 0, {}});
}

void ClientCore::emit(ClientEvent e) {
    TETHER_ASSERT(events_.size() < kQueueMax);
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
    if (!conn_ || conn_->id != conn) {
        // A socket we no longer want (closed, aborted, superseded): tear it down.
        if (!closing_ || closing_->id != conn)
            transmits_.push_back(Transmit{Transmit::Kind::abort, conn, {}, 0, {}});
        return;
    }
    if (conn_->stage != Stage::opening) return;
    conn_->stage = Stage::hello;
    conn_->deadline = now + config_.auth_timeout;
    refresh(now);
}

void ClientCore::handle_message(time_point now, std::uint64_t conn, std::string_view text) {
    if (!conn_ || conn_->id != conn || conn_->stage == Stage::credentials ||
        conn_->stage == Stage::opening)
        return;  // stale socket or driver bug: nothing from it may reach the session
    auto res = proto::decode(text, config_.limits);
    if (!res) {
        fail_link(now, res.error().close_code(), "decode error: " + res.error().message());
    } else {
        on_message(now, res.message());
    }
    refresh(now);
}

void ClientCore::handle_close(time_point now, std::uint64_t conn, std::uint16_t code,
                              std::string_view reason) {
    if (closing_ && closing_->id == conn) {
        closing_.reset();
    } else if (conn_ && conn_->id == conn && conn_->stage != Stage::credentials) {
        const bool was_established = conn_->stage == Stage::established;
        conn_.reset();
        if (was_established) note_established_lost(now);
        on_link_lost(now, code, reason, true);
    }
    refresh(now);
}

void ClientCore::handle_timeout(time_point now) {
    status_.handle_timeout(now);
    if (closing_ && closing_->deadline <= now) abort_closing();
    if (retry_at_ && *retry_at_ <= now) {
        retry_at_.reset();
        if (want_connected_ && online_ && !conn_ && !error_) start_attempt(now);
    }
    if (conn_ && conn_->stage != Stage::established && conn_->deadline <= now) {
        static constexpr std::string_view kWhat[] = {
            "credentials timeout",    "open timeout", "hello timeout",
            "authentication timeout", "sync timeout", ""};
        fail_link(now, close_code::unknown_error,
                  std::string{kWhat[static_cast<int>(conn_->stage)]});
    }
    if (conn_ && conn_->ack_deadline && *conn_->ack_deadline <= now) {
        ++metrics_.heartbeat_timeouts;
        fail_link(now, close_code::unknown_error, "heartbeat timeout");
    }
    if (conn_ && conn_->next_heartbeat && *conn_->next_heartbeat <= now) {
        if (!conn_->ack_deadline) {
            conn_->heartbeat_ts = to_ms(now);
            conn_->ack_deadline =
                now + config_.heartbeat_ack_timeout.value_or(conn_->heartbeat_interval);
            send(proto::Heartbeat{conn_->heartbeat_ts});
        }
        conn_->next_heartbeat = now + conn_->heartbeat_interval;
    }
    if (authenticated()) {
        for (auto& [name, r] : rooms_) {
            if (r.join == JoinState::retry_wait && r.join_deadline <= now) {
                r.join_attempts = 0;
                send_join(now, r);
            } else if (r.join == JoinState::sent && r.join_deadline <= now) {
                if (r.join_attempts >= config_.join_attempts_max) {
                    // A server that never answers a join is a broken link, not a
                    // reason to abandon the room: reconnect and rejoin.
                    fail_link(now, close_code::unknown_error, "join timeout in " + name);
                    break;
                }
                send_join(now, r);
            }
        }
        if (conn_ && conn_->stage == Stage::syncing) maybe_finish_sync(now);
    }
    // Expire before flushing: dropping an expired head of line may release the
    // messages queued behind it.
    expire_outbox(now);
    if (established()) flush_outbox(now);
    refresh(now);
}

std::optional<Transmit> ClientCore::poll_transmit() {
    if (transmits_.empty()) return std::nullopt;
    Transmit t = std::move(transmits_.front());
    transmits_.pop_front();
    return t;
}

std::optional<ClientEvent> ClientCore::poll_event() {
    if (events_.empty()) return std::nullopt;
    ClientEvent e = std::move(events_.front());
    events_.pop_front();
    return e;
}

std::optional<time_point> ClientCore::poll_timeout() const {
    std::optional<time_point> t = status_.poll_timeout();
    auto consider = [&](std::optional<time_point> x) {
        if (x && (!t || *x < *t)) t = x;
    };
    if (closing_) consider(closing_->deadline);
    consider(retry_at_);
    if (conn_) {
        if (conn_->stage != Stage::established) consider(conn_->deadline);
        consider(conn_->ack_deadline);
        consider(conn_->next_heartbeat);
    }
    if (authenticated()) {
        for (const auto& [name, r] : rooms_)
            if (r.join == JoinState::sent || r.join == JoinState::retry_wait)
                consider(r.join_deadline);
    }
    const std::uint64_t live = established() ? conn_->id : 0;
    for (const auto& e : outbox_) {
        if (e.sent_on == 0 && live != 0 && e.not_before) {
            consider(e.not_before);
            break;  // only the head of the line can be released
        }
    }
    for (const auto& e : outbox_)
        if (e.expires_at && (e.sent_on == 0 || e.sent_on != live)) consider(e.expires_at);
    return t;
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
    auto violation = [&](std::string what) {
        fail_link(now, close_code::decode_error,
                  "unexpected " + std::string{proto::to_string(proto::op_of(msg))} + " " + what);
    };
    const bool in_session = stage == Stage::syncing || stage == Stage::established;
    std::visit(
        overloaded{
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
                if (!m.resume_token.empty()) session_->resume_token = std::move(m.resume_token);
                ++metrics_.resumes_ok;
                on_session(now, true, session_->user);
            },
            [&](proto::InvalidSession& m) {
                if (stage != Stage::authenticating || !conn_->resuming)
                    return violation("without RESUME");
                ++metrics_.resumes_failed;
                if (m.resumable)
                    return fail_link(now, close_code::unknown_error, "session not resumable now");
                session_.reset();
                for (auto& [name, r] : rooms_)
                    r.join = JoinState::idle;
                conn_->resuming = false;
                send_identify();
            },
            [&](proto::HeartbeatAck& m) {
                if (stage == Stage::hello) return violation("before HELLO");
                if (conn_->ack_deadline && m.ts == conn_->heartbeat_ts) {
                    conn_->ack_deadline.reset();
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
                if (m.retry_after_ms) pending_retry_after_ = duration{*m.retry_after_ms};
                fail_link(now, close_code::normal, "server requested reconnect: " + m.reason);
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
    conn_->next_heartbeat = now + duration{static_cast<duration::rep>(
                                      rng_.uniform(static_cast<std::uint64_t>(interval.count())))};
    conn_->stage = Stage::authenticating;
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
        send(std::move(r));
    } else {
        send_identify();
    }
}

void ClientCore::send_identify() {
    send(proto::Identify{pending_token_.value_or(std::string{}), config_.client_info});
}

void ClientCore::on_session(time_point now, bool resumed, std::string_view user) {
    conn_->stage = Stage::syncing;
    conn_->deadline = now + config_.sync_timeout;
    if (escalating_) backoff_.reset();  // a new episode after a successful re-identify
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
        // Seed 001: a fatal (re)join moves the room to error and stops tracking it.
        std::string reason = m.code + (m.reason.empty() ? "" : ": " + m.reason);
        emit(RoomStatusChanged{r->name, RoomState::error, std::move(reason)});
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
        return fail_link(now, close_code::unknown_error, "event from another epoch in " + m.room);
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
                             std::to_string(m.position.offset));
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
    fail_entry(static_cast<std::size_t>(it - outbox_.begin()), m.code, m.reason);
}

void ClientCore::maybe_finish_sync(time_point now) {
    if (!conn_ || conn_->stage != Stage::syncing) return;
    for (const auto& [name, r] : rooms_) {
        if (r.join != JoinState::joined) return;
        if (r.position->offset < r.catch_up_target) return;
    }
    conn_->stage = Stage::established;
    ++metrics_.connects;
    if (connected_once_) ++metrics_.reconnects;
    if (lost_at_) {
        metrics_.last_time_to_reconnect = now - *lost_at_;
        metrics_.downtime += now - *lost_at_;
        lost_at_.reset();
    }
    connected_once_ = true;
    outage_attempts_ = 0;
    backoff_.on_connected(now);
    flush_outbox(now);
}

void ClientCore::note_established_lost(time_point now) {
    ++metrics_.link_losses;
    backoff_.on_disconnected(now);
    lost_at_ = now;
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
            fail_entry(i, "expired", "message expired before it was acknowledged");
        else
            ++i;
    }
}

void ClientCore::fail_entry(std::size_t index, std::string code, std::string reason) {
    TETHER_ASSERT(index < outbox_.size());
    auto& e = outbox_[index];
    PublishFailed ev{e.id, e.room, std::move(code), std::move(reason), e.ever_sent};
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

std::optional<std::string> ClientCore::restore(time_point now, const ClientSnapshot& snap) {
    if (stop_reason_ != StopReason::not_started || want_connected_)
        return "restore() must come before connect()";
    if (!rooms_.empty() || !outbox_.empty()) return "restore() needs an empty client";
    if (snap.id_prefix.empty() || snap.id_prefix.size() > 32) return "invalid id prefix";
    if (snap.next_publish == 0) return "invalid publish counter";
    if (snap.rooms.size() > config_.rooms_max) return "more rooms than rooms_max";
    if (snap.outbox.size() > config_.outbox.count_max) return "more messages than outbox.count_max";
    std::size_t bytes = 0;
    for (const auto& p : snap.outbox) {
        if (p.id.empty() || p.id.size() > config_.limits.id_bytes_max) return "invalid message id";
        if (!valid_room_name(p.room, config_.limits)) return "invalid room in outbox";
        if (proto::validate_data(p.data, config_.limits)) return "invalid data in outbox";
        bytes += p.data.size();
    }
    if (bytes > config_.outbox.bytes_max) return "outbox larger than outbox.bytes_max";
    for (const auto& r : snap.rooms)
        if (!valid_room_name(r.room, config_.limits)) return "invalid room name";

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
        outbox_.push_back(std::move(e));
        ++sending_total_;
    }
    ++state_version_;
    return std::nullopt;
}

// ---- derived status ------------------------------------------------------------------

ClientStatus ClientCore::derive_status() const {
    ClientStatus s;
    s.online = online_;
    s.pending = outbox_.size();
    s.close_code = last_close_code_;
    s.close_reason = last_close_reason_;
    if (!outbox_.empty()) {
        s.sending_done = sending_done_;
        s.sending_total = sending_total_;
    }
    if (error_) {
        s.state = ConnState::error;
        s.reason = stop_reason_;
    } else if (!want_connected_) {
        s.state = ConnState::disconnected;
        s.reason = stop_reason_;
    } else if (!online_) {
        s.state = ConnState::disconnected;
        s.reason = StopReason::offline;
    } else if (established()) {
        s.state = ConnState::connected;
        s.reason = StopReason::none;
        s.phase = outbox_.empty() ? Phase::none : Phase::sending;
    } else {
        s.reason = StopReason::none;
        s.state = (connected_once_ || attempts_since_connect_ > 1 || retry_at_)
                      ? ConnState::reconnecting
                      : ConnState::connecting;
        // The attempt in progress, or the one about to be made.
        s.attempt = conn_ ? outage_attempts_ : outage_attempts_ + 1;
        s.next_retry_at = retry_at_;
        if (conn_) {
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
                    const bool joining = std::any_of(
                        rooms_.begin(), rooms_.end(),
                        [](const auto& kv) { return kv.second.join != JoinState::joined; });
                    s.phase = joining ? Phase::joining : Phase::catching_up;
                    break;
                }
                case Stage::established:
                    break;
            }
        }
    }
    return s;
}

RoomState ClientCore::derive_room_state(const Room& r) const {
    if (stop_reason_ == StopReason::not_started)
        return RoomState::connecting;  // queued until connect()
    if (!want_connected_ || !online_ || error_) return RoomState::disconnected;
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
            emit(RoomStatusChanged{name, st, {}});
        }
    }
}

}  // namespace tether
