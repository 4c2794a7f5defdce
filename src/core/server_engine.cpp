#include <tether/core/assert.hpp>
#include <tether/core/close_codes.hpp>
#include <tether/core/constant_time.hpp>
#include <tether/core/server_engine.hpp>

#include <algorithm>
#include <stdexcept>
#include <tuple>
#include <variant>

namespace tether {
namespace {

constexpr std::int64_t kHousekeepingMs = 1'000;
constexpr std::size_t kQueueMax = 1u << 22;     // transmits or store requests between two polls
constexpr std::uint32_t kRateLimitedMax = 200;  // NACKed publishes in a row before closing 4008
// How long a rate-limited publish holds the ones behind it beyond its
// retry_after; after that the client has evidently dropped it.
constexpr std::int64_t kHeldGraceMs = 5'000;
constexpr int kSessionIdAttemptsMax = 4;             // fresh ids tried before refusing with 1013
constexpr std::size_t kSessionIdDrawsPerShard = 64;  // random ids drawn per shard at most
constexpr std::size_t kHeldMax = 1024;      // NACKed ids remembered per connection (then 4008)
constexpr std::int64_t kBusyRetryMs = 100;  // NACK unavailable while the store is behind
constexpr std::size_t kWaitingJoinsMax = 10'000;  // joins waiting for one room's stream

ServerConfig validated(ServerConfig c) {
    if (auto r = c.validate(); !r)
        throw std::invalid_argument("tether: invalid server config: " + r.error().message);
    return c;
}

}  // namespace

result<void, Error> ServerConfig::validate() const {
    auto bad = [](const char* what) { return make_error(error::invalid_config, what); };
    if (!authenticate) return bad("an authenticator is required");
    if (!random_bytes) return bad("a random source is required");
    if (heartbeat.count() < 100) return bad("heartbeat must be >= 100 ms");
    if (idle_timeout.count() < 0) return bad("idle timeout must not be negative");
    if (handshake_timeout.count() <= 0) return bad("handshake timeout must be > 0");
    if (session_ttl.count() < 0) return bad("session ttl must not be negative");
    if (sessions_max == 0) return bad("sessions max must be >= 1");
    if (rooms_per_connection_max == 0) return bad("rooms per connection must be >= 1");
    if (room_name_bytes_max == 0 || room_name_bytes_max > limits.room_bytes_max)
        return bad("room name limit must be between 1 and the codec's room limit");
    if (message_bytes_max == 0 || message_bytes_max >= limits.frame_bytes_max)
        return bad("message size limit must be > 0 and below the frame limit");
    if (!(publish_rate > 0) || !(publish_burst >= 1))
        return bad("publish rate must be > 0 and burst >= 1");
    if (replay_page_events == 0 || replay_page_bytes == 0)
        return bad("replay pages must allow at least one event");
    if (dedupe_ttl.count() <= 0) return bad("dedupe window must be > 0");
    if (appends_in_flight_max == 0) return bad("appends in flight must be >= 1");
    if (startup_page == 0) return bad("start-up pages must be >= 1");
    if (shard_count == 0 || shard_count > kShardsMax)
        return bad("shards must be between 1 and 256");
    if (shard_index >= shard_count) return bad("shard index must be below the shard count");
    return {};
}

std::size_t session_shard(std::string_view session_id, std::size_t shards) noexcept {
    std::uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a, 64 bits
    for (char ch : session_id) {
        h ^= static_cast<unsigned char>(ch);
        h *= 0x100000001b3ULL;
    }
    return shards <= 1 ? 0 : static_cast<std::size_t>(h % shards);
}

ServerEngine::ServerEngine(ServerConfig config, std::int64_t now_ms)
    : config_(validated(std::move(config))),
      idle_timeout_(config_.idle_timeout.count() > 0 ? config_.idle_timeout
                                                     : 2 * config_.heartbeat + duration{5'000}),
      publish_limit_(RateLimit{config_.publish_rate, config_.publish_burst}),
      next_request_((static_cast<std::uint64_t>(config_.shard_index) << 56) + 1),
      next_housekeeping_ms_(now_ms + kHousekeepingMs) {
    // Start-up, one bounded page at a time: the sessions. (The dedupe window
    // is the store's publish log: nothing to rebuild.)
    submit(store_op::LoadSessions{{}, config_.startup_page}, Startup{});
}

// ---- helpers ---------------------------------------------------------------------------

std::uint64_t ServerEngine::submit(StoreOp op, Request pending) {
    TETHER_ASSERT(store_out_.size() < kQueueMax);
    const std::uint64_t id = next_request_++;
    requests_.emplace(id, std::move(pending));
    store_out_.push_back(StoreRequest{id, std::move(op)});
    ++metrics_.store_requests;
    return id;
}

void ServerEngine::send(std::uint64_t conn, const proto::Message& m) {
    send_frame(conn, std::make_shared<const std::string>(proto::encode(m)));
}

void ServerEngine::send_frame(std::uint64_t conn, std::shared_ptr<const std::string> frame) {
    TETHER_ASSERT(transmits_.size() < kQueueMax);
    transmits_.push_back(ServerTransmit{ServerTransmit::Kind::send, conn, std::move(frame), 0, {}});
}

void ServerEngine::close(std::uint64_t conn, std::uint16_t code, const std::string& reason) {
    auto it = conns_.find(conn);
    if (it == conns_.end()) return;
    transmits_.push_back(ServerTransmit{
        ServerTransmit::Kind::close, conn, {}, code, proto::truncate_close_reason(reason)});
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
    submit(store_op::SaveSession{SessionRecord{s.first, s.second.resume_token, s.second.user,
                                               s.second.rooms, s.second.expires_at_ms,
                                               s.second.generation}},
           Background{});
}

// ---- inputs ----------------------------------------------------------------------------

void ServerEngine::handle_open(std::int64_t now, std::uint64_t conn) {
    TETHER_CHECKED(*this);
    ++metrics_.connections_opened;
    Conn c;
    c.opened_ms = now;
    c.last_seen_ms = now;
    c.bucket = TokenBucket{publish_limit_, now};
    conns_[conn] = std::move(c);
    if (draining_) return close(conn, close_code::try_again_later, "server draining");
    if (!ready()) return close(conn, close_code::try_again_later, "server starting");
    send(conn, proto::Hello{config_.heartbeat.count(), config_.session_ttl.count(),
                            config_.server_name, config_.server_version, config_.node_id});
}

void ServerEngine::handle_message(std::int64_t now, std::uint64_t conn, std::string_view text) {
    handle_decoded(now, conn, proto::decode(text, config_.limits));
}

void ServerEngine::handle_decoded(std::int64_t now, std::uint64_t conn, proto::DecodeResult frame) {
    TETHER_CHECKED(*this);
    auto it = conns_.find(conn);
    if (it == conns_.end()) return;
    Conn& c = it->second;
    c.last_seen_ms = now;
    if (!frame)
        return close(conn, frame.error().close_code(), "decode error: " + frame.error().message());
    dispatch(now, conn, c, *frame);
}

void ServerEngine::dispatch(std::int64_t now, std::uint64_t conn, Conn& c, proto::Message& msg) {
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
                if (c.claiming)
                    return close(conn, close_code::already_authenticated,
                                 "a RESUME is in progress");
                on_identify(now, conn, c, m);
            } else if constexpr (std::is_same_v<T, proto::Resume>) {
                if (authed)
                    return close(conn, close_code::already_authenticated, "already authenticated");
                if (c.claiming)
                    return close(conn, close_code::already_authenticated,
                                 "a RESUME is in progress");
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
    // With shards, only an id that hashes to this shard will do (expected:
    // shard_count draws; the bound fails with probability ~e^-64).
    SessionMap::iterator it;
    bool fresh = false;
    int attempts = 0;
    for (std::size_t draw = 0; draw < kSessionIdDrawsPerShard * config_.shard_count &&
                               attempts < kSessionIdAttemptsMax && !fresh;
         ++draw) {
        std::string id = random_hex(16);
        if (session_shard(id, config_.shard_count) != config_.shard_index) continue;
        ++attempts;
        std::tie(it, fresh) = sessions_.try_emplace(std::move(id));
    }
    if (!fresh) return close(conn, close_code::try_again_later, "could not allocate a session id");
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
    // One use per resume token: a copy replayed later (from a log, a stolen
    // backup) no longer resumes anything.
    if (config_.shared_store) {
        // The store decides, atomically for every node: the token is checked
        // and replaced there, so of two RESUMEs with one token one wins.
        c.claiming = true;
        auto token = random_hex(32);
        submit(store_op::ClaimSession{m.session_id, m.resume_token, std::move(token), now},
               ClaimRequest{conn, m});
        return;
    }
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
    it->second.resume_token = random_hex(32);  // persisted with the rooms
    resume_session(now, conn, c, *it, m);
}

void ServerEngine::on_claimed(std::int64_t now, ClaimRequest& req, StoreResult& r) {
    auto cit = conns_.find(req.conn);
    Conn* c = cit == conns_.end() ? nullptr : &cit->second;
    if (c) c->claiming = false;
    const auto* claimed = r.error ? nullptr : std::get_if<store_result::Claimed>(&r.value);
    if (!claimed || !claimed->ok) {
        if (!c) return;
        if (!claimed)  // the store could not answer: not the client's fault
            return close(req.conn, close_code::try_again_later, "session store unavailable");
        ++metrics_.resumes_failed;
        send(req.conn, proto::InvalidSession{false});
        return;
    }
    const SessionRecord& rec = claimed->record;
    auto [it, inserted] = sessions_.try_emplace(rec.id);
    Session& s = it->second;
    if (inserted || s.generation + 1 != rec.generation) ++metrics_.sessions_claimed;
    if (inserted) s.user = rec.user;
    s.generation = rec.generation;
    s.resume_token = rec.resume_token;
    if (!c) {
        // The client left before the answer: the session stays resumable
        // with the token it holds (the claim replaced it in the store).
        s.resume_token = req.resume.resume_token;
        if (!s.conn) {
            s.expires_at_ms = now + config_.session_ttl.count();
            if (inserted) s.rooms = rec.rooms;
        }
        persist(*it);
        return;
    }
    resume_session(now, req.conn, *c, *it, req.resume);
}

void ServerEngine::handle_session_claimed(std::int64_t, const SessionClaim& claim) {
    TETHER_CHECKED(*this);
    if (claim.node == config_.node_id) return;
    auto it = sessions_.find(claim.id);
    if (it == sessions_.end() || it->second.generation >= claim.generation) return;
    ++metrics_.sessions_taken;
    if (auto held = it->second.conn) {
        // Without a save on the way out (detach saves only the holder's
        // session): it is the other node's now.
        it->second.conn.reset();
        close(*held, close_code::unknown_error, "session resumed elsewhere");
    }
    sessions_.erase(it);
}

void ServerEngine::resume_session(std::int64_t now, std::uint64_t conn, Conn& c,
                                  SessionEntry& entry, const proto::Resume& m) {
    ++metrics_.resumes_ok;
    Session& s = entry.second;
    if (s.conn && *s.conn != conn)
        close(*s.conn, close_code::unknown_error, "session resumed elsewhere");
    s.conn = conn;
    s.expires_at_ms = 0;
    s.rooms.clear();
    c.session = &entry;
    send(conn, proto::Resumed{entry.first, s.resume_token});
    for (const auto& rp : m.rooms) {
        if (!conns_.count(conn)) return;  // closed by a refusal (a flood)
        on_join(now, conn, c, proto::Join{rp.room, rp.position});
    }
    persist(entry);
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
    auto [room_it, inserted] = rooms_.try_emplace(m.room);
    if (inserted && config_.on_room_interest) config_.on_room_interest(m.room, true);
    auto& rs = room_it->second;
    // A position this engine has not seen yet (a newer offset or epoch) was
    // seen through another shard or node, whose appends reach this one a
    // little later: the store decides, never this engine's older view
    // (docs/DESIGN.md, "Shards").
    const bool ahead =
        rs.known && m.since && (m.since->epoch != rs.epoch || m.since->offset > rs.head);
    // A shared store may have changed under this engine's view (a failover
    // that lost the newest entries gives the room a new epoch there): a join
    // from a position is answered from a fresh read, never from the cache.
    const bool verify = config_.shared_store && m.since;
    if (!rs.known || ahead || verify) {
        // The stream must be read first: the join waits (bounded), the
        // connection goes on.
        if (rs.waiting.size() >= kWaitingJoinsMax)
            return refuse(proto::codes::rate_limited, "room busy", false);
        rs.waiting.emplace_back(conn, m);
        if (rs.loading == 0) rs.loading = submit(store_op::ReadStream{m.room}, LoadRoom{m.room});
    } else {
        join_room(conn, c, m);
    }
    if (std::find(s.rooms.begin(), s.rooms.end(), m.room) == s.rooms.end()) {
        s.rooms.push_back(m.room);
        persist(*c.session);
    }
}

void ServerEngine::join_room(std::uint64_t conn, Conn& c, const proto::Join& m) {
    auto& rs = rooms_.at(m.room);
    TETHER_ASSERT(rs.known);
    ++metrics_.joins;
    const auto& since = m.since;
    const std::uint64_t first = std::min(rs.first, rs.head + 1);
    const bool recoverable = !since || (since->epoch == rs.epoch && since->offset <= rs.head &&
                                        since->offset + 1 >= first);
    rs.subscribers.insert(conn);
    send(conn, proto::Joined{m.room, {rs.epoch, rs.head}, recoverable});
    Cursor& cur = c.rooms[m.room];
    const bool reading = cur.reading;  // a read of an earlier join is dropped when it returns
    cur = Cursor{};
    cur.reading = reading;
    if (since && recoverable && since->offset < rs.head) {
        cur.replaying = true;
        cur.next = since->offset + 1;
        cur.epoch = rs.epoch;
    }
    pump_replay(conn, c);
}

void ServerEngine::leave_room(std::uint64_t conn, Conn& c, std::string_view room) {
    c.rooms.erase(room);
    if (auto it = rooms_.find(room); it != rooms_.end()) {
        auto& w = it->second.waiting;
        w.erase(std::remove_if(w.begin(), w.end(), [&](const auto& x) { return x.first == conn; }),
                w.end());
        it->second.subscribers.erase(conn);
        drop_room_if_unused(room);
    }
    if (c.session) {
        auto& rooms = c.session->second.rooms;
        rooms.erase(std::remove(rooms.begin(), rooms.end(), room), rooms.end());
        persist(*c.session);
    }
}

void ServerEngine::drop_room_if_unused(std::string_view room) {
    auto it = rooms_.find(room);
    if (it == rooms_.end()) return;
    const auto& rs = it->second;
    if (rs.subscribers.empty() && rs.waiting.empty() && rs.loading == 0) {
        if (config_.on_room_interest) config_.on_room_interest(it->first, false);
        rooms_.erase(it);
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
    if (!valid_room(m.room))
        return nack(proto::codes::bad_room, "room names are 1.." +
                                                std::to_string(config_.room_name_bytes_max) +
                                                " bytes without control characters");
    if (m.data.size() > config_.message_bytes_max)
        return nack(proto::codes::too_large,
                    "payload above " + std::to_string(config_.message_bytes_max) + " bytes");
    if (config_.authorize && !config_.authorize(user, m.room, true))
        return nack(proto::codes::not_permitted, "not permitted to publish here");
    if (draining_) return nack(proto::codes::unavailable, "server draining", drain_retry_after_ms_);
    if (appends_in_flight_ >= config_.appends_in_flight_max)
        return nack(proto::codes::unavailable, "store busy", kBusyRetryMs);
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
    AppendRequest req;
    req.ack_to = std::make_pair(conn, m.id);
    append(now, m.room, m.data, user, m.id, std::move(req));
}

void ServerEngine::append(std::int64_t now, std::string_view room, std::string data,
                          std::string_view user, std::string_view id, AppendRequest req) {
    req.room = std::string{room};
    req.data = data;
    // The store is the dedupe authority (a retry on another shard, after a
    // restart, or while the original is in flight gets the original's offset).
    submit(store_op::Append{std::string{room}, std::move(data), std::string{user}, std::string{id},
                            now, now - config_.dedupe_ttl.count()},
           std::move(req));
    ++appends_in_flight_;
}

void ServerEngine::publish(std::int64_t now, std::string_view room, std::string data,
                           std::function<void(result<proto::StreamPosition>)> done) {
    TETHER_CHECKED(*this);
    if (draining_ || appends_in_flight_ >= config_.appends_in_flight_max) {
        if (done) done(make_error_code(error::store_unavailable));
        return;
    }
    AppendRequest req;
    req.done = std::move(done);
    append(now, room, std::move(data), {}, {}, std::move(req));
}

void ServerEngine::history(std::string_view room, std::uint64_t after, std::size_t limit,
                           std::size_t max_bytes, std::function<void(result<HistoryPage>)> done) {
    TETHER_CHECKED(*this);
    HistoryRead req{std::move(done), std::nullopt};
    auto it = rooms_.find(room);
    // A room the engine tracks: never more than it has fanned out.
    if (it != rooms_.end() && it->second.known) req.known_head = it->second.head;
    store_op::ReadRange r{std::string{room}, after,
                          req.known_head.value_or(std::numeric_limits<std::uint64_t>::max()), limit,
                          max_bytes};
    submit(std::move(r), std::move(req));
}

// ---- store results ---------------------------------------------------------------------

void ServerEngine::handle_store(std::int64_t now, StoreResult r) {
    TETHER_CHECKED(*this);
    auto node = requests_.extract(r.id);
    if (node.empty()) return;  // not ours, or already answered: ignore
    if (r.error) ++metrics_.store_errors;
    std::visit(
        [&](auto& req) {
            using T = std::decay_t<decltype(req)>;
            if constexpr (std::is_same_v<T, AppendRequest>) {
                on_appended(now, req, r);
            } else if constexpr (std::is_same_v<T, LoadRoom>) {
                on_room_loaded(now, req, r);
            } else if constexpr (std::is_same_v<T, ReplayRead>) {
                on_replay_read(req, r);
            } else if constexpr (std::is_same_v<T, HistoryRead>) {
                if (r.error) {
                    if (req.done) req.done(r.error);
                    return;
                }
                auto& range = std::get<store_result::Range>(r.value);
                if (req.known_head) range.info.head = std::min(range.info.head, *req.known_head);
                range.info.first = std::min(range.info.first, range.info.head + 1);
                if (req.done) req.done(HistoryPage{range.info, std::move(range.events)});
            } else if constexpr (std::is_same_v<T, ClaimRequest>) {
                on_claimed(now, req, r);
            } else if constexpr (std::is_same_v<T, Startup>) {
                on_startup(now, r);
            }
        },
        node.mapped());
    maybe_finish_drain(now);
}

void ServerEngine::on_appended(std::int64_t now, AppendRequest& req, const StoreResult& r,
                               EncodedOnce* shared) {
    TETHER_ASSERT(appends_in_flight_ > 0);
    --appends_in_flight_;
    // The connection may be gone: its retry is answered from the publish log.
    const bool asker = req.ack_to && conns_.count(req.ack_to->first) != 0;
    if (r.error) {
        // Nothing was stored: the asker hears it, and may retry.
        if (asker) {
            ++metrics_.nacks;
            send(req.ack_to->first,
                 proto::Nack{req.ack_to->second, std::string{proto::codes::unavailable},
                             "the store could not take it: " + r.error.message(), kBusyRetryMs});
        }
        if (req.done) req.done(r.error);
        return;
    }
    const auto& appended = std::get<store_result::Appended>(r.value);
    const auto pos = appended.position;
    if (appended.duplicate)
        ++metrics_.publish_dupes;
    else
        ++metrics_.publishes;
    if (asker)
        send(req.ack_to->first, proto::Ack{req.ack_to->second, req.room, pos.epoch, pos.offset});
    if (req.done) req.done(pos);
    (void)now;
    // A duplicate was fanned out when the original was stored.
    if (!appended.duplicate) advance(req.room, pos, req.data, shared);
}

void ServerEngine::advance(std::string_view room, proto::StreamPosition pos,
                           const std::string& data, EncodedOnce* shared) {
    auto it = rooms_.find(room);
    if (it == rooms_.end()) return;  // nobody listens: nothing to fan out
    RoomState& rs = it->second;
    if (!rs.known) {
        // Its stream is being read: the join answers from whichever is newer.
        if (pos.epoch > rs.seen_loading.epoch ||
            (pos.epoch == rs.seen_loading.epoch && pos.offset > rs.seen_loading.offset))
            rs.seen_loading = pos;
        return;
    }
    if (pos.epoch != rs.epoch) {
        // The store lost the stream: a new epoch starts right before this
        // event. Subscribers of the old one see the epoch change and resume
        // (history lost, reported by their client).
        rs.epoch = pos.epoch;
        rs.head = pos.offset - 1;
        rs.first = 1;
    }
    if (pos.offset <= rs.head) return;  // already delivered (a read covered it)
    const bool contiguous = pos.offset == rs.head + 1;
    const std::uint64_t from = rs.head + 1;
    rs.head = pos.offset;
    std::shared_ptr<const std::string> frame;  // encoded once for every live subscriber
    for (auto conn : rs.subscribers) {
        auto& c = conns_.at(conn);
        auto cur = c.rooms.find(room);
        if (cur == c.rooms.end() || cur->second.replaying) continue;  // its cursor reads it
        if (contiguous) {
            if (!frame) {
                auto encode = [&] {
                    return proto::encode(proto::Event{std::string{room}, pos, data});
                };
                frame =
                    shared ? shared->get(encode) : std::make_shared<const std::string>(encode());
            }
            send_frame(conn, frame);
            ++metrics_.deliveries;
        } else {
            // Offsets were missed (another node's, or a lost notification):
            // catch up from the store, never a gap.
            ++metrics_.gap_fills;
            cur->second.replaying = true;
            cur->second.next = from;
            cur->second.epoch = pos.epoch;
            pump_replay(conn, c);
        }
    }
}

void ServerEngine::handle_remote_append(std::int64_t now, const RemoteAppend& a) {
    TETHER_CHECKED(*this);
    if (a.request != 0 && request_shard(a.request) == config_.shard_index) {
        // One of ours, reported in commit order ahead of its own result: it
        // completes now (ACK, then EVENT), and the result is ignored.
        auto it = requests_.find(a.request);
        if (it != requests_.end() && std::holds_alternative<AppendRequest>(it->second)) {
            auto node = requests_.extract(it);
            on_appended(now, std::get<AppendRequest>(node.mapped()),
                        StoreResult{a.request, {}, store_result::Appended{a.position, false}},
                        a.frame.get());
            maybe_finish_drain(now);
            return;
        }
    }
    if (a.reset) {
        // A new epoch without an event: subscribers move to it (catch_up).
        auto it = rooms_.find(a.room);
        if (it != rooms_.end() && it->second.known)
            catch_up(a.room, it->second, StreamInfo{a.position.epoch, a.position.offset, a.first});
        return;
    }
    advance(a.room, a.position, a.data, a.frame.get());
}

// ---- shards -----------------------------------------------------------------------------

std::optional<std::size_t> ServerEngine::owner_shard(std::uint64_t conn,
                                                     const proto::DecodeResult& frame) const {
    if (config_.shard_count <= 1 || !frame) return std::nullopt;
    const auto* resume = std::get_if<proto::Resume>(&*frame);
    if (!resume) return std::nullopt;
    auto it = conns_.find(conn);
    if (it == conns_.end() || it->second.session)
        return std::nullopt;  // authenticated: refused here
    const auto owner = session_shard(resume->session_id, config_.shard_count);
    if (owner == config_.shard_index) return std::nullopt;
    return owner;
}

std::optional<ConnHandoff> ServerEngine::release(std::uint64_t conn) {
    TETHER_CHECKED(*this);
    auto it = conns_.find(conn);
    if (it == conns_.end() || it->second.session) return std::nullopt;
    TETHER_ASSERT(it->second.rooms.size() == 0);
    ConnHandoff h{it->second.opened_ms, it->second.last_seen_ms};
    conns_.erase(it);
    return h;
}

void ServerEngine::adopt(std::int64_t, std::uint64_t conn, const ConnHandoff& h) {
    TETHER_CHECKED(*this);
    TETHER_ASSERT(conns_.count(conn) == 0);
    Conn c;
    c.opened_ms = h.opened_ms;
    c.last_seen_ms = h.last_seen_ms;
    c.bucket = TokenBucket{publish_limit_, h.last_seen_ms};
    conns_[conn] = std::move(c);
    if (!ready()) close(conn, close_code::try_again_later, "server starting");
}

void ServerEngine::on_room_loaded(std::int64_t now, const LoadRoom& req, const StoreResult& r) {
    auto it = rooms_.find(req.room);
    if (it == rooms_.end()) return;
    RoomState& rs = it->second;
    rs.loading = 0;
    auto waiting = std::exchange(rs.waiting, {});
    if (r.error) {
        // The joins cannot be answered now: they are refused as retryable.
        for (const auto& [conn, m] : waiting) {
            if (!conns_.count(conn)) continue;
            ++metrics_.join_errors;
            send(conn, proto::JoinError{m.room, std::string{proto::codes::rate_limited},
                                        "the room's history is unavailable", false});
        }
        drop_room_if_unused(req.room);
        return;
    }
    const auto& info = std::get<store_result::Stream>(r.value).info;
    if (rs.known) {
        catch_up(req.room, rs, info);  // a refresh for a join that was ahead of us
    } else {
        rs.known = true;
        rs.epoch = info.epoch;
        rs.head = info.head;
        // An append may have completed while the stream was read.
        if (rs.seen_loading.epoch == info.epoch)
            rs.head = std::max(rs.head, rs.seen_loading.offset);
        rs.first = info.first;
        rs.seen_loading = {};
    }
    for (const auto& [conn, m] : waiting) {
        auto c = conns_.find(conn);
        if (c == conns_.end() || !c->second.session) continue;  // left meanwhile
        join_room(conn, c->second, m);
    }
    (void)now;
    drop_room_if_unused(req.room);
}

void ServerEngine::catch_up(std::string_view room, RoomState& rs, const StreamInfo& info) {
    // Live appends went on while the stream was read: only a newer view counts.
    if (info.epoch < rs.epoch || (info.epoch == rs.epoch && info.head <= rs.head)) return;
    const bool new_epoch = info.epoch != rs.epoch;
    const std::uint64_t from = new_epoch ? std::max<std::uint64_t>(info.first, 1) : rs.head + 1;
    rs.epoch = info.epoch;
    rs.head = info.head;
    rs.first = info.first;
    // Live subscribers read what they missed from the store, as after a jump.
    for (auto conn : rs.subscribers) {
        auto& c = conns_.at(conn);
        auto cur = c.rooms.find(room);
        if (cur == c.rooms.end() || cur->second.replaying) continue;  // its cursor reads it
        ++metrics_.gap_fills;
        cur->second.replaying = true;
        cur->second.next = from;
        cur->second.epoch = rs.epoch;
        pump_replay(conn, c);
    }
}

void ServerEngine::pump_replay(std::uint64_t conn, Conn& c) {
    if (!c.writable || c.reading) return;
    for (auto& [room, cur] : c.rooms) {
        if (!cur.replaying || cur.reading) continue;
        const auto& rs = rooms_.at(room);
        if (!rs.known || rs.epoch != cur.epoch) {
            cur.replaying =
                false;  // the stream was lost meanwhile: the next event tells the client
            continue;
        }
        if (cur.next > rs.head) {
            cur.replaying = false;  // caught up: live from now on
            continue;
        }
        cur.reading = true;
        c.reading = true;
        submit(store_op::ReadRange{room, cur.next - 1, rs.head, config_.replay_page_events,
                                   config_.replay_page_bytes},
               ReplayRead{conn, room, cur.next - 1});
        return;  // one read per connection at a time
    }
}

void ServerEngine::on_replay_read(const ReplayRead& req, StoreResult& r) {
    auto cit = conns_.find(req.conn);
    if (cit == conns_.end()) return;  // the connection is gone
    Conn& c = cit->second;
    c.reading = false;
    auto cur_it = c.rooms.find(req.room);
    if (cur_it == c.rooms.end()) return pump_replay(req.conn, c);  // left meanwhile
    Cursor& cur = cur_it->second;
    cur.reading = false;
    if (!cur.replaying || cur.next != req.after + 1) return pump_replay(req.conn, c);  // stale
    if (r.error)
        return close(req.conn, close_code::try_again_later, "history unavailable: try again");
    auto& range = std::get<store_result::Range>(r.value);
    auto& rs = rooms_.at(req.room);
    if (range.info.epoch != cur.epoch || rs.epoch != cur.epoch) {
        // The stream was lost meanwhile (or, on a shared store, may have lost
        // its newest entries): every subscriber moves to the new epoch, and
        // its first EVENT tells the client that history was lost.
        cur.replaying = false;
        if (range.info.epoch != rs.epoch) catch_up(req.room, rs, range.info);
        return pump_replay(req.conn, c);
    }
    rs.first = range.info.first;
    if (range.events.empty() || range.events.front().offset != cur.next) {
        // History was trimmed under the cursor: the client must learn of the gap.
        return close(req.conn, close_code::invalid_position, "replay position fell out of history");
    }
    for (auto& e : range.events) {
        TETHER_ASSERT(e.offset == cur.next && e.offset <= rs.head);
        send(req.conn, proto::Event{req.room, {cur.epoch, e.offset}, std::move(e.data)});
        ++metrics_.deliveries;
        ++metrics_.replayed;
        cur.next = e.offset + 1;
    }
    ++metrics_.replay_pages;
    if (cur.next > rs.head) cur.replaying = false;  // caught up: live from now on
    c.writable = false;                             // the next page once this one is written
}

void ServerEngine::handle_writable(std::int64_t, std::uint64_t conn) {
    TETHER_CHECKED(*this);
    auto it = conns_.find(conn);
    if (it == conns_.end()) return;
    it->second.writable = true;
    pump_replay(conn, it->second);
}

void ServerEngine::detach(std::int64_t now, std::uint64_t conn, Conn& c) {
    for (const auto& [room, cur] : c.rooms) {
        if (auto it = rooms_.find(room); it != rooms_.end()) {
            it->second.subscribers.erase(conn);
            auto& w = it->second.waiting;
            w.erase(
                std::remove_if(w.begin(), w.end(), [&](const auto& x) { return x.first == conn; }),
                w.end());
            drop_room_if_unused(room);
        }
    }
    // Joins still waiting for a room of a connection that never got a cursor.
    if (c.session) {
        for (const auto& room : c.session->second.rooms) {
            if (auto it = rooms_.find(room); it != rooms_.end()) {
                auto& w = it->second.waiting;
                w.erase(std::remove_if(w.begin(), w.end(),
                                       [&](const auto& x) { return x.first == conn; }),
                        w.end());
                drop_room_if_unused(room);
            }
        }
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
    TETHER_CHECKED(*this);
    auto it = conns_.find(conn);
    if (it == conns_.end()) return;
    detach(now, conn, it->second);
    conns_.erase(it);
}

void ServerEngine::handle_timeout(std::int64_t now) {
    TETHER_CHECKED(*this);
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
            submit(store_op::EraseSession{it->first, it->second.generation}, Background{});
            ++metrics_.sessions_expired;
            it = sessions_.erase(it);
        } else {
            ++it;
        }
    }
    if (ready()) submit(store_op::Trim{now, now - config_.dedupe_ttl.count()}, Background{});
}

std::optional<ServerTransmit> ServerEngine::poll_transmit() {
    if (transmits_.empty()) return std::nullopt;
    ServerTransmit t = std::move(transmits_.front());
    transmits_.pop_front();
    return t;
}

std::optional<StoreRequest> ServerEngine::poll_store() {
    if (store_out_.empty()) return std::nullopt;
    StoreRequest r = std::move(store_out_.front());
    store_out_.pop_front();
    return r;
}

std::optional<std::int64_t> ServerEngine::poll_timeout() const {
    return next_housekeeping_ms_;
}

// ---- start-up ---------------------------------------------------------------------------

void ServerEngine::on_startup(std::int64_t now, StoreResult& r) {
    if (r.error) {
        // A store that cannot be read at start-up: try the same step again
        // (the driver's store reconnects); nothing is served meanwhile.
        return next_startup_step(now);
    }
    switch (phase_) {
        case Phase::loading_sessions: {
            auto& page = std::get<store_result::Sessions>(r.value);
            // Sessions survive restarts of a durable store; the ones that were
            // attached when the process died start their retention window now.
            for (auto& rec : page.sessions) {
                startup_after_ = rec.id;
                // Every shard pages through the store and keeps its own.
                if (session_shard(rec.id, config_.shard_count) != config_.shard_index) continue;
                if (rec.expires_at_ms == 0) rec.expires_at_ms = now + config_.session_ttl.count();
                if (rec.expires_at_ms <= now) {
                    submit(store_op::EraseSession{rec.id}, Background{});
                    continue;
                }
                submit(store_op::SaveSession{rec}, Background{});
                sessions_[rec.id] =
                    Session{std::move(rec.resume_token), std::move(rec.user), std::move(rec.rooms),
                            rec.expires_at_ms,           std::nullopt,        rec.generation};
            }
            if (!page.more) {
                phase_ = Phase::ready;
                return;
            }
            break;
        }
        case Phase::ready:
            return;
    }
    next_startup_step(now);
}

void ServerEngine::next_startup_step(std::int64_t) {
    switch (phase_) {
        case Phase::loading_sessions:
            submit(store_op::LoadSessions{startup_after_, config_.startup_page}, Startup{});
            break;
        case Phase::ready:
            break;
    }
}

// ---- drain, admin -----------------------------------------------------------------------

void ServerEngine::drain(std::int64_t now, std::int64_t retry_after_ms) {
    TETHER_CHECKED(*this);
    draining_ = true;
    drain_retry_after_ms_ = retry_after_ms;
    maybe_finish_drain(now);
}

void ServerEngine::maybe_finish_drain(std::int64_t) {
    // Once every append in flight is durable (and acknowledged), everyone is
    // asked to reconnect elsewhere.
    if (!draining_ || drain_sent_ || appends_in_flight_ > 0) return;
    drain_sent_ = true;
    std::vector<std::uint64_t> ids;
    for (const auto& [id, c] : conns_)
        ids.push_back(id);
    for (auto id : ids) {
        std::uint8_t r[2];
        config_.random_bytes(r);
        const auto retry = drain_retry_after_ms_;
        const auto jitter = retry > 0 ? (r[0] << 8 | r[1]) % retry : 0;
        send(id, proto::Reconnect{"server draining", retry + jitter});
        close(id, close_code::going_away, "server draining");
    }
}

bool ServerEngine::disconnect_session(std::int64_t, std::string_view session_id) {
    TETHER_CHECKED(*this);
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

// ---- invariants -------------------------------------------------------------------------

void ServerEngine::check_invariants() const {
    std::size_t appends = 0;
    for (const auto& [id, r] : requests_) {
        TETHER_ASSERT(id < next_request_);
        if (std::holds_alternative<AppendRequest>(r)) ++appends;
    }
    TETHER_ASSERT(appends == appends_in_flight_);
    for (const auto& [id, c] : conns_) {
        // Session and connection point at each other.
        if (c.session) {
            TETHER_ASSERT(c.session->second.conn == id);
            TETHER_ASSERT(sessions_.count(c.session->first) == 1);
        }
        TETHER_ASSERT(c.rooms.size() <= config_.rooms_per_connection_max);
        std::size_t reading = 0;
        for (const auto& [room, cur] : c.rooms) {
            // Subscriber sets match each connection's rooms.
            auto rs = rooms_.find(room);
            TETHER_ASSERT(rs != rooms_.end() && rs->second.known);
            TETHER_ASSERT(rs->second.subscribers.count(id) == 1);
            if (cur.replaying) TETHER_ASSERT(cur.next >= 1);
            // Nobody is sent past the durable head: a cursor of the room's
            // stream points at most one past it.
            if (cur.epoch == rs->second.epoch) TETHER_ASSERT(cur.next <= rs->second.head + 1);
            if (cur.reading) ++reading;
        }
        // One replay read per connection (its room may have been left meanwhile).
        TETHER_ASSERT(reading <= 1 && (reading == 0 || c.reading));
        TETHER_ASSERT(c.held.size() <= kHeldMax);
    }
    for (const auto& [name, rs] : rooms_) {
        for (auto conn : rs.subscribers) {
            auto c = conns_.find(conn);
            TETHER_ASSERT(c != conns_.end() && c->second.rooms.contains(name));
        }
        // A room waits for its stream exactly while a read is in flight.
        TETHER_ASSERT(rs.known || rs.loading != 0);
        TETHER_ASSERT(rs.waiting.empty() || rs.loading != 0);
        if (rs.loading != 0) TETHER_ASSERT(requests_.count(rs.loading) == 1);
        TETHER_ASSERT(rs.first >= 1);
        TETHER_ASSERT(rs.waiting.size() <= kWaitingJoinsMax);
    }
    for (const auto& [id, s] : sessions_)
        if (s.conn) TETHER_ASSERT(conns_.count(*s.conn) == 1);
    TETHER_ASSERT(ready() || conns_.empty());  // refused with 1013 until then
    if (drain_sent_) TETHER_ASSERT(conns_.empty() || draining_);
}

}  // namespace tether
