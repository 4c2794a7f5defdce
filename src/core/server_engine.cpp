#include <tether/core/assert.hpp>
#include <tether/core/close_codes.hpp>
#include <tether/core/constant_time.hpp>
#include <tether/core/server_engine.hpp>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <tuple>
#include <variant>

namespace tether {
namespace {

constexpr std::int64_t kHousekeepingMs = 1'000;
constexpr std::size_t kQueueMax = 1u << 22;     // transmits between two polls
constexpr std::uint32_t kRateLimitedMax = 200;  // NACKed publishes in a row before closing 4008
// How long a rate-limited publish holds the ones behind it beyond its
// retry_after; after that the client has evidently dropped it.
constexpr std::int64_t kHeldGraceMs = 5'000;
constexpr int kSessionIdAttemptsMax = 4;  // fresh ids tried before refusing with 1013
constexpr std::size_t kHeldMax = 1024;    // NACKed ids remembered per connection (then 4008)

}  // namespace

std::optional<std::string> ServerConfig::validate() const {
    if (!authenticate) return "an authenticator is required";
    if (!random_bytes) return "a random source is required";
    if (heartbeat.count() < 100) return "heartbeat must be >= 100 ms";
    if (idle_timeout.count() < 0) return "idle timeout must not be negative";
    if (handshake_timeout.count() <= 0) return "handshake timeout must be > 0";
    if (session_ttl.count() < 0) return "session ttl must not be negative";
    if (sessions_max == 0) return "sessions max must be >= 1";
    if (rooms_per_connection_max == 0) return "rooms per connection must be >= 1";
    if (room_name_bytes_max == 0 || room_name_bytes_max > limits.room_bytes_max)
        return "room name limit must be between 1 and the codec's room limit";
    if (message_bytes_max == 0 || message_bytes_max >= limits.frame_bytes_max)
        return "message size limit must be > 0 and below the frame limit";
    if (!(publish_rate > 0) || !(publish_burst >= 1))
        return "publish rate must be > 0 and burst >= 1";
    if (replay_page_events == 0 || replay_page_bytes == 0)
        return "replay pages must allow at least one event";
    if (dedupe_per_user_max == 0) return "dedupe window must be >= 1";
    return std::nullopt;
}

ServerEngine::ServerEngine(ServerConfig config, Store& store, std::int64_t now_ms)
    : config_(std::move(config)), store_(store) {
    if (auto e = config_.validate())
        throw std::invalid_argument("tether: invalid server config: " + *e);
    idle_timeout_ = config_.idle_timeout.count() > 0 ? config_.idle_timeout
                                                     : 2 * config_.heartbeat + duration{5'000};
    publish_limit_ = RateLimit{config_.publish_rate, config_.publish_burst};
    next_housekeeping_ms_ = now_ms + kHousekeepingMs;
    // Sessions survive restarts of a durable store; the ones that were
    // attached when the process died start their retention window now.
    for (auto& rec : store_.load_sessions()) {
        if (rec.expires_at_ms == 0) rec.expires_at_ms = now_ms + config_.session_ttl.count();
        if (rec.expires_at_ms <= now_ms) {
            store_.erase_session(rec.id);
            continue;
        }
        store_.save_session(rec);
        sessions_[rec.id] = Session{std::move(rec.resume_token), std::move(rec.user),
                                    std::move(rec.rooms), rec.expires_at_ms, std::nullopt};
    }
    // Rebuild the dedupe window from history, so that a publish retried after
    // a restart is still recognised.
    const std::int64_t since = now_ms - config_.dedupe_ttl.count();
    for (const auto& room : store_.rooms()) {
        const auto info = store_.stream(room);
        for (const auto& e : store_.read(room, 0, info.head, SIZE_MAX, SIZE_MAX))
            if (!e.publish_id.empty() && e.at_ms >= since)
                remember(e.publisher, e.publish_id,
                         DedupeEntry{room, {info.epoch, e.offset}, e.at_ms, true});
    }
}

// ---- helpers ---------------------------------------------------------------------------

void ServerEngine::send(std::uint64_t conn, const proto::Message& m) {
    send_frame(conn, std::make_shared<const std::string>(proto::encode(m)));
}

void ServerEngine::send_frame(std::uint64_t conn, std::shared_ptr<const std::string> frame) {
    TETHER_ASSERT(transmits_.size() < kQueueMax);
    transmits_.push_back(ServerTransmit{ServerTransmit::Kind::send, conn, std::move(frame), 0, {}});
}

void ServerEngine::close(std::uint64_t conn, std::uint16_t code, std::string reason) {
    auto it = conns_.find(conn);
    if (it == conns_.end()) return;
    transmits_.push_back(
        ServerTransmit{ServerTransmit::Kind::close, conn, {}, code, std::move(reason)});
    ++metrics_.closes_by_code[code];
    detach(it->second.last_seen_ms, conn, it->second);
    conns_.erase(it);
}

std::string ServerEngine::random_hex(std::size_t bytes) {
    std::vector<std::uint8_t> buf(bytes);
    config_.random_bytes(buf);
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    out.reserve(bytes * 2);
    for (auto b : buf) {
        out += kHex[b >> 4];
        out += kHex[b & 15];
    }
    return out;
}

void ServerEngine::persist(const SessionEntry& s) {
    store_.save_session(SessionRecord{s.first, s.second.resume_token, s.second.user, s.second.rooms,
                                      s.second.expires_at_ms});
}

std::uint64_t ServerEngine::durable_head(std::string_view room) const {
    const auto info = store_.stream(room);
    auto it = durable_heads_.find(room);
    // Nothing appended through this engine in this epoch: all of it is durable.
    if (it == durable_heads_.end() || it->second.epoch != info.epoch) return info.head;
    return std::min(it->second.head, info.head);
}

void ServerEngine::remember(std::string_view user, std::string_view id, DedupeEntry e) {
    auto& ids = dedupe_[std::string{user}];
    auto& order = dedupe_order_[std::string{user}];
    const auto at = e.at_ms;
    if (ids.emplace(std::string{id}, std::move(e)).second) order.emplace_back(at, std::string{id});
    while (order.size() > config_.dedupe_per_user_max) {
        ids.erase(order.front().second);
        order.pop_front();
    }
}

ServerEngine::DedupeEntry* ServerEngine::recall(std::string_view user, std::string_view id,
                                                std::optional<std::int64_t> now) {
    auto u = dedupe_.find(user);
    if (u == dedupe_.end()) return nullptr;
    auto it = u->second.find(std::string{id});
    if (it == u->second.end()) return nullptr;
    if (now && it->second.at_ms < *now - config_.dedupe_ttl.count()) return nullptr;
    return &it->second;
}

// ---- inputs ----------------------------------------------------------------------------

void ServerEngine::handle_open(std::int64_t now, std::uint64_t conn) {
    ++metrics_.connections_opened;
    Conn c;
    c.opened_ms = now;
    c.last_seen_ms = now;
    c.bucket = TokenBucket{publish_limit_, now};
    conns_[conn] = std::move(c);
    if (draining_) return close(conn, close_code::try_again_later, "server draining");
    send(conn, proto::Hello{config_.heartbeat.count(), config_.session_ttl.count(),
                            config_.server_name, config_.server_version, config_.node_id});
}

void ServerEngine::handle_message(std::int64_t now, std::uint64_t conn, std::string_view text) {
    auto it = conns_.find(conn);
    if (it == conns_.end()) return;
    Conn& c = it->second;
    c.last_seen_ms = now;
    auto res = proto::decode(text, config_.limits);
    if (!res)
        return close(conn, res.error().close_code(), "decode error: " + res.error().message());
    proto::Message& msg = *res;
    const bool authed = c.session != nullptr;
    std::visit(
        [&](auto& m) {
            using T = std::decay_t<decltype(m)>;
            if constexpr (std::is_same_v<T, proto::Heartbeat>) {
                ++metrics_.heartbeats;
                send(conn, proto::HeartbeatAck{m.ts});
            } else if constexpr (std::is_same_v<T, proto::Identify>) {
                if (authed)
                    return close(conn, close_code::already_authenticated, "already authenticated");
                on_identify(now, conn, c, m);
            } else if constexpr (std::is_same_v<T, proto::Resume>) {
                if (authed)
                    return close(conn, close_code::already_authenticated, "already authenticated");
                on_resume(now, conn, c, m);
            } else if constexpr (std::is_same_v<T, proto::Join> ||
                                 std::is_same_v<T, proto::Leave> ||
                                 std::is_same_v<T, proto::Publish>) {
                if (!authed) return close(conn, close_code::not_authenticated, "not authenticated");
                if constexpr (std::is_same_v<T, proto::Join>) on_join(now, conn, c, m);
                if constexpr (std::is_same_v<T, proto::Leave>) leave_room(conn, c, m.room);
                if constexpr (std::is_same_v<T, proto::Publish>) on_publish(now, conn, c, m);
            } else {
                close(conn, close_code::unknown_op,
                      "unexpected op " + std::string{proto::to_string(proto::op_of(msg))} +
                          " from a client");
            }
        },
        msg);
    handle_durable(now);
}

void ServerEngine::on_identify(std::int64_t now, std::uint64_t conn, Conn& c,
                               const proto::Identify& m) {
    ++metrics_.identifies;
    if (draining_) return close(conn, close_code::try_again_later, "server draining");
    const AuthResult auth = config_.authenticate(m.token, now);
    // The user id goes back in READY and into the store: an authenticator
    // that returns something no client could decode is refused too (found by
    // fuzz_server_engine: a name cut in the middle of a UTF-8 sequence).
    const bool user_ok = !auth.user.empty() && auth.user.size() <= config_.limits.text_bytes_max &&
                         proto::is_valid_utf8(auth.user);
    if (!auth.ok || !user_ok) {
        ++metrics_.auth_failures;
        return close(conn, close_code::authentication_failed, "authentication failed");
    }
    if (sessions_.size() >= config_.sessions_max)
        return close(conn, close_code::try_again_later, "too many sessions");
    // 128 random bits never repeat with a working random source; one that
    // repeats (a broken RNG, a fuzzer's) must not hand out an existing
    // session (found by fuzz_server_engine).
    SessionMap::iterator it;
    bool fresh = false;
    for (int attempt = 0; attempt < kSessionIdAttemptsMax && !fresh; ++attempt)
        std::tie(it, fresh) = sessions_.try_emplace(random_hex(16));
    if (!fresh) {
        return close(conn, close_code::try_again_later, "could not allocate a session id");
    }
    Session& s = it->second;
    s.resume_token = random_hex(32);  // 256 bits
    s.user = auth.user;
    s.conn = conn;
    c.session = &*it;
    persist(*it);
    send(conn, proto::Ready{it->first, it->second.resume_token, it->second.user});
}

void ServerEngine::on_resume(std::int64_t now, std::uint64_t conn, Conn& c,
                             const proto::Resume& m) {
    if (draining_) return close(conn, close_code::try_again_later, "server draining");
    auto it = sessions_.find(m.session_id);
    const bool ok = it != sessions_.end() &&
                    constant_time_equal(it->second.resume_token, m.resume_token) &&
                    (it->second.conn || it->second.expires_at_ms > now);
    if (!ok) {
        // Unknown, expired or not the caller's: the answer is the same.
        ++metrics_.resumes_failed;
        send(conn, proto::InvalidSession{false});
        return;
    }
    ++metrics_.resumes_ok;
    Session& s = it->second;
    if (s.conn && *s.conn != conn)
        close(*s.conn, close_code::unknown_error, "session resumed elsewhere");
    s.conn = conn;
    s.expires_at_ms = 0;
    s.rooms.clear();
    // One use per resume token: a copy replayed later (from a log, a stolen
    // backup) no longer resumes anything.
    s.resume_token = random_hex(32);  // persisted below, with the rooms
    c.session = &*it;
    send(conn, proto::Resumed{it->first, s.resume_token});
    for (const auto& rp : m.rooms) {
        proto::Join j{rp.room, rp.position};
        on_join(now, conn, c, j);
    }
    persist(*it);
}

bool ServerEngine::valid_room(std::string_view room) const {
    if (room.empty() || room.size() > config_.room_name_bytes_max) return false;
    return std::none_of(room.begin(), room.end(), [](char ch) {
        const auto c = static_cast<unsigned char>(ch);
        return c < 0x20 || c == 0x7F;
    });
}

void ServerEngine::on_join(std::int64_t now, std::uint64_t conn, Conn& c, const proto::Join& m) {
    auto refuse = [&](std::string_view code, std::string reason, bool fatal) {
        ++metrics_.join_errors;
        send(conn, proto::JoinError{m.room, std::string{code}, std::move(reason), fatal});
    };
    if (!valid_room(m.room))
        return refuse(proto::codes::bad_room,
                      "room names are 1.." + std::to_string(config_.room_name_bytes_max) +
                          " bytes without control characters",
                      true);
    Session& s = c.session->second;
    if (config_.authorize && !config_.authorize(s.user, m.room, false))
        return refuse(proto::codes::not_permitted, "not permitted in this room", true);
    if (!c.rooms.contains(m.room) && c.rooms.size() >= config_.rooms_per_connection_max)
        return refuse(
            proto::codes::too_many_rooms,
            "at most " + std::to_string(config_.rooms_per_connection_max) + " rooms per connection",
            true);
    std::int64_t retry = 0;
    if (!c.bucket.take(publish_limit_, now, retry))
        return refuse(proto::codes::rate_limited, "too many requests", false);
    ++metrics_.joins;
    join_room(conn, c, m.room, m.since);
    if (std::find(s.rooms.begin(), s.rooms.end(), m.room) == s.rooms.end()) {
        s.rooms.push_back(m.room);
        persist(*c.session);
    }
    pump_replay(conn, c);
}

void ServerEngine::join_room(std::uint64_t conn, Conn& c, const std::string& room,
                             std::optional<proto::StreamPosition> since) {
    const auto info = store_.stream(room);
    const std::uint64_t head = durable_head(room);
    const std::uint64_t first = std::min(info.first, head + 1);
    const bool recoverable = !since || (since->epoch == info.epoch && since->offset <= head &&
                                        since->offset + 1 >= first);
    subscribers_[room].insert(conn);
    send(conn, proto::Joined{room, {info.epoch, head}, recoverable});
    if (since && recoverable && since->offset < head)
        c.rooms[room] = Replay{since->offset + 1, info.epoch};
    else
        c.rooms[room] = std::nullopt;
}

void ServerEngine::leave_room(std::uint64_t conn, Conn& c, std::string_view room) {
    c.rooms.erase(room);
    if (auto it = subscribers_.find(room); it != subscribers_.end()) {
        it->second.erase(conn);
        if (it->second.empty()) subscribers_.erase(it);
    }
    if (c.session) {
        auto& rooms = c.session->second.rooms;
        rooms.erase(std::remove(rooms.begin(), rooms.end(), room), rooms.end());
        persist(*c.session);
    }
}

void ServerEngine::on_publish(std::int64_t now, std::uint64_t conn, Conn& c,
                              const proto::Publish& m) {
    auto nack = [&](std::string_view code, std::string reason,
                    std::optional<std::int64_t> retry = std::nullopt) {
        ++metrics_.nacks;
        send(conn, proto::Nack{m.id, std::string{code}, std::move(reason), retry});
    };
    const std::string& user = c.session->second.user;
    if (DedupeEntry* d = recall(user, m.id, now)) {
        ++metrics_.publish_dupes;
        if (d->durable)
            return send(conn, proto::Ack{m.id, d->room, d->position.epoch, d->position.offset});
        for (auto& p : pending_)
            if (p.room == d->room && p.position == d->position) p.ack_to.emplace_back(conn, m.id);
        return;
    }
    if (!valid_room(m.room))
        return nack(proto::codes::bad_room, "room names are 1.." +
                                                std::to_string(config_.room_name_bytes_max) +
                                                " bytes without control characters");
    if (m.data.size() > config_.message_bytes_max)
        return nack(proto::codes::too_large,
                    "payload above " + std::to_string(config_.message_bytes_max) + " bytes");
    if (config_.authorize && !config_.authorize(user, m.room, true))
        return nack(proto::codes::not_permitted, "not permitted to publish here");
    if (!c.held.empty() && now >= c.held_until_ms) c.held.clear();
    auto hold = [&](std::string reason, std::int64_t retry) {
        if (++c.rate_limited_in_a_row > kRateLimitedMax || c.held.size() >= kHeldMax)
            return close(conn, close_code::rate_limited, "rate limited: publish flood");
        if (std::find(c.held.begin(), c.held.end(), m.id) == c.held.end()) c.held.push_back(m.id);
        c.held_until_ms = now + retry + kHeldGraceMs;
        nack(proto::codes::rate_limited, std::move(reason), retry);
    };
    if (!c.held.empty() && c.held.front() != m.id) {
        // Behind a held publish: accepting this one would overtake it.
        return hold("held behind " + c.held.front(),
                    std::max<std::int64_t>(1, c.held_until_ms - kHeldGraceMs - now));
    }
    std::int64_t retry = 0;
    if (!c.bucket.take(publish_limit_, now, retry)) return hold("publish rate exceeded", retry);
    c.rate_limited_in_a_row = 0;
    if (!c.held.empty()) c.held.erase(c.held.begin());
    const auto res = append(now, m.room, m.data, user, m.id);
    remember(user, m.id, DedupeEntry{m.room, res.position, now, false});
    pending_.back().ack_to.emplace_back(conn, m.id);
}

AppendResult ServerEngine::append(std::int64_t now, std::string_view room, std::string data,
                                  std::string_view user, std::string_view id) {
    const auto res = store_.append(room, data, user, id, now);
    ++metrics_.publishes;
    auto& dh = durable_heads_[std::string{room}];
    if (dh.epoch != res.position.epoch)
        dh = DurableHead{res.position.epoch, res.position.offset - 1};
    pending_.push_back(Pending{res.seq,
                               std::string{room},
                               res.position,
                               std::move(data),
                               std::string{user},
                               std::string{id},
                               {}});
    return res;
}

AppendResult ServerEngine::publish(std::int64_t now, std::string_view room, std::string data) {
    const auto res = append(now, room, std::move(data), {}, {});
    handle_durable(now);
    return res;
}

void ServerEngine::handle_durable(std::int64_t) {
    const std::uint64_t durable = store_.durable_seq();
    while (!pending_.empty() && pending_.front().seq <= durable) {
        Pending p = std::move(pending_.front());
        pending_.pop_front();
        auto& dh = durable_heads_[p.room];
        if (dh.epoch == p.position.epoch) dh.head = p.position.offset;
        if (!p.user.empty())
            if (auto* d = recall(p.user, p.publish_id, std::nullopt)) d->durable = true;
        for (const auto& [conn, id] : p.ack_to) {
            if (!conns_.count(conn)) continue;  // gone: its retry will be answered from the window
            send(conn, proto::Ack{id, p.room, p.position.epoch, p.position.offset});
        }
        auto sub = subscribers_.find(p.room);
        if (sub == subscribers_.end()) continue;
        std::shared_ptr<const std::string> frame;  // encoded once for every live subscriber
        for (auto conn : sub->second) {
            auto& c = conns_.at(conn);
            auto r = c.rooms.find(p.room);
            if (r == c.rooms.end() || r->second) continue;  // replaying: the cursor will read it
            if (!frame)
                frame = std::make_shared<const std::string>(
                    proto::encode(proto::Event{p.room, p.position, p.data}));
            send_frame(conn, frame);
            ++metrics_.deliveries;
        }
    }
}

void ServerEngine::handle_remote_append(std::int64_t, const RemoteAppend& a) {
    auto& dh = durable_heads_[a.room];
    // Rooms with subscribers have a known head (recorded at JOIN). An unknown
    // room, or a new epoch, starts right before this append: subscribers of an
    // older epoch then see the new epoch and resume (history lost, reported).
    if (dh.epoch != a.position.epoch) dh = DurableHead{a.position.epoch, a.position.offset - 1};
    if (a.position.offset <= dh.head) return;  // already delivered (or ours)
    const bool contiguous = a.position.offset == dh.head + 1;
    const std::uint64_t from = dh.head + 1;
    dh.head = a.position.offset;
    auto sub = subscribers_.find(a.room);
    if (sub == subscribers_.end()) return;
    std::shared_ptr<const std::string> frame;  // encoded once for every live subscriber
    for (auto conn : sub->second) {
        auto& c = conns_.at(conn);
        auto r = c.rooms.find(a.room);
        if (r == c.rooms.end() || r->second) continue;  // replaying: its cursor reads the store
        if (contiguous) {
            if (!frame)
                frame = std::make_shared<const std::string>(
                    proto::encode(proto::Event{a.room, a.position, a.data}));
            send_frame(conn, frame);
            ++metrics_.deliveries;
        } else {
            r->second =
                Replay{from, a.position.epoch};  // missed remote appends: catch up from the store
            pump_replay(conn, c);
        }
    }
}

void ServerEngine::pump_replay(std::uint64_t conn, Conn& c) {
    if (!c.writable) return;
    std::size_t events = 0, bytes = 0;
    bool sent = false;
    for (auto& [room, replay] : c.rooms) {
        if (!replay) continue;
        const auto info = store_.stream(room);
        if (info.epoch != replay->epoch) {
            replay.reset();  // the stream was lost meanwhile: the next event tells the client
            continue;
        }
        const std::uint64_t head = durable_head(room);
        while (replay && events < config_.replay_page_events && bytes < config_.replay_page_bytes) {
            auto batch =
                store_.read(room, replay->next - 1, head, config_.replay_page_events - events,
                            config_.replay_page_bytes - bytes);
            for (auto& e : batch) {
                bytes += e.data.size();
                ++events;
                send(conn, proto::Event{room, {info.epoch, e.offset}, std::move(e.data)});
                ++metrics_.deliveries;
                ++metrics_.replayed;
                replay->next = e.offset + 1;
                sent = true;
            }
            if (replay->next > head)
                replay.reset();  // caught up: live from now on
            else if (batch.empty()) {
                // History was trimmed under the cursor: the client must learn of the gap.
                close(conn, close_code::invalid_position, "replay position fell out of history");
                return;
            }
        }
        if (events >= config_.replay_page_events || bytes >= config_.replay_page_bytes) break;
    }
    if (sent) {
        ++metrics_.replay_pages;
        c.writable = false;
    }
}

void ServerEngine::handle_writable(std::int64_t now, std::uint64_t conn) {
    auto it = conns_.find(conn);
    if (it == conns_.end()) return;
    it->second.writable = true;
    pump_replay(conn, it->second);
    handle_durable(now);
}

void ServerEngine::detach(std::int64_t now, std::uint64_t conn, Conn& c) {
    for (const auto& [room, r] : c.rooms) {
        auto it = subscribers_.find(room);
        if (it == subscribers_.end()) continue;
        it->second.erase(conn);
        if (it->second.empty()) subscribers_.erase(it);
    }
    c.rooms.clear();
    if (c.session) {
        Session& s = c.session->second;
        if (s.conn == conn) {
            s.conn.reset();
            s.expires_at_ms = now + config_.session_ttl.count();
            persist(*c.session);
        }
        c.session = nullptr;
    }
}

void ServerEngine::handle_close(std::int64_t now, std::uint64_t conn) {
    auto it = conns_.find(conn);
    if (it == conns_.end()) return;
    detach(now, conn, it->second);
    conns_.erase(it);
}

void ServerEngine::handle_timeout(std::int64_t now) {
    if (now < next_housekeeping_ms_) return;
    next_housekeeping_ms_ = now + kHousekeepingMs;
    std::vector<std::pair<std::uint64_t, const char*>> expired;
    for (auto& [id, c] : conns_) {
        if (!c.session && now - c.opened_ms > config_.handshake_timeout.count())
            expired.emplace_back(id, "handshake timeout");
        else if (now - c.last_seen_ms > idle_timeout_.count())
            expired.emplace_back(id, "heartbeat timeout");
    }
    for (auto& [id, why] : expired) {
        ++metrics_.idle_closes;
        conns_.at(id).last_seen_ms = now;
        close(id, close_code::unknown_error, why);
    }
    for (auto it = sessions_.begin(); it != sessions_.end();) {
        if (!it->second.conn && it->second.expires_at_ms <= now) {
            store_.erase_session(it->first);
            ++metrics_.sessions_expired;
            it = sessions_.erase(it);
        } else {
            ++it;
        }
    }
    const std::int64_t dedupe_cutoff = now - config_.dedupe_ttl.count();
    for (auto& [user, order] : dedupe_order_) {
        auto& ids = dedupe_[user];
        while (!order.empty() && order.front().first < dedupe_cutoff) {
            auto d = ids.find(order.front().second);
            if (d != ids.end() && d->second.durable) ids.erase(d);
            order.pop_front();
        }
    }
    store_.trim(now);
    handle_durable(now);
}

std::optional<ServerTransmit> ServerEngine::poll_transmit() {
    if (transmits_.empty()) return std::nullopt;
    ServerTransmit t = std::move(transmits_.front());
    transmits_.pop_front();
    return t;
}

std::optional<std::int64_t> ServerEngine::poll_timeout() const {
    return next_housekeeping_ms_;
}

void ServerEngine::drain(std::int64_t now, std::int64_t retry_after_ms) {
    draining_ = true;
    store_.flush();
    handle_durable(now);
    std::vector<std::uint64_t> ids;
    for (const auto& [id, c] : conns_)
        ids.push_back(id);
    for (auto id : ids) {
        std::uint8_t r[2];
        config_.random_bytes(r);
        const auto jitter = retry_after_ms > 0 ? (r[0] << 8 | r[1]) % retry_after_ms : 0;
        send(id, proto::Reconnect{"server draining", retry_after_ms + jitter});
        close(id, close_code::going_away, "server draining");
    }
}

StreamInfo ServerEngine::stream_info(std::string_view room) const {
    auto info = store_.stream(room);
    info.head = durable_head(room);
    info.first = std::min(info.first, info.head + 1);
    return info;
}

std::vector<StoredEvent> ServerEngine::history(std::string_view room, std::uint64_t after,
                                               std::size_t limit, std::size_t max_bytes) const {
    return store_.read(room, after, durable_head(room), limit, max_bytes);
}

bool ServerEngine::disconnect_session(std::int64_t, std::string_view session_id) {
    auto it = sessions_.find(session_id);
    if (it == sessions_.end()) return false;
    if (it->second.conn)
        close(*it->second.conn, close_code::unknown_error, "disconnected by an administrator");
    return true;
}

std::vector<SessionInfo> ServerEngine::sessions() const {
    std::vector<SessionInfo> out;
    out.reserve(sessions_.size());
    for (const auto& [id, s] : sessions_)
        out.push_back(SessionInfo{id, s.user, s.rooms, s.conn.has_value(), s.expires_at_ms});
    return out;
}

std::optional<SessionInfo> ServerEngine::session(std::string_view id) const {
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return std::nullopt;
    const auto& s = it->second;
    return SessionInfo{it->first, s.user, s.rooms, s.conn.has_value(), s.expires_at_ms};
}

}  // namespace tether
