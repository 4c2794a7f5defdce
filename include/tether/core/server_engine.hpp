#pragma once
/// @file
/// The sans-I/O gateway engine: sessions, rooms, replay, dedupe, limits.
///
/// Same shape as ClientCore: the network layer feeds `handle_open`,
/// `handle_message`, `handle_writable`, `handle_close`, `handle_timeout`,
/// `handle_store` (a store request completed) and `handle_remote_append`,
/// and carries out `poll_transmit()` (frames and closes) and `poll_store()`
/// (requests for the Store); `poll_timeout()` says when to call
/// `handle_timeout` next. The engine holds no store and never waits for
/// one: every read and write is a request whose result comes back later,
/// in any order (docs/DESIGN.md, "An asynchronous store"). `now` is
/// wall-clock time (ms since the Unix epoch) so that session expiry and
/// history age survive restarts.
///
/// Start-up: the engine pages through the stored sessions (bounded pages);
/// until ready() it refuses connections with 1013.
///
/// Rules it enforces (docs/PROTOCOL.md):
/// - HELLO on open; IDENTIFY -> READY with a new session (128+ random bits of
///   resume token, bound to the user and session); RESUME -> RESUMED and
///   replay, or INVALID_SESSION when the session is unknown, expired or the
///   token does not match (nothing else is revealed).
/// - A connection silent for longer than `idle_timeout` is closed with 4000;
///   its session is kept for `session_ttl`.
/// - JOIN with `since` replays what follows the position (`recovered: true`)
///   or answers `recovered: false`; never a silent gap. Replay is paged
///   (`replay_page_events`/`_bytes`); the next page is written only after the
///   network layer reported the connection writable again. Live events of a
///   room are held back while it replays, so replay and live merge without gap
///   or duplicate.
/// - PUBLISH is idempotent per user within the dedupe window, which the
///   store keeps (its publish log, include/tether/core/store.hpp); ACK
///   carries the offset (a retried publish gets the original). Nothing is
///   fanned out or acknowledged before the store made it durable.
/// - Limits: token-bucket publish rate per connection (NACK rate_limited with
///   retry_after_ms), rooms per connection, room-name length, message size,
///   sessions, handshake time.
///
/// @par Thread safety
/// Distinct objects: safe. Shared objects: unsafe (one strand).

#include <tether/core/protocol.hpp>
#include <tether/core/store.hpp>
#include <tether/core/time.hpp>
#include <tether/core/token_bucket.hpp>
#include <tether/version.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tether {

/// What ServerConfig::authenticate decides about an access token.
struct AuthResult {
    bool ok = false;     ///< accepted
    std::string user;    ///< when ok
    std::string reason;  ///< when not ok (logged, never sent back in detail)
};

/// The engine's configuration (`tether serve` maps its flags here, docs/CLI.md).
struct ServerConfig {
    std::string server_name = "tether";          ///< announced in HELLO
    std::string server_version{version_string};  ///< announced in HELLO
    std::string node_id = "node-1";      ///< announced in HELLO: which node of a cluster answered
    duration heartbeat{30'000};          ///< advertised in HELLO
    duration idle_timeout{0};            ///< 0: 2 x heartbeat + 5 s
    duration handshake_timeout{10'000};  ///< open -> IDENTIFY/RESUME
    duration session_ttl{300'000};       ///< kept this long after the last connection ended
    std::size_t sessions_max =
        100'000;  ///< sessions this engine keeps at most (IDENTIFY beyond: 1013)
    std::size_t rooms_per_connection_max =
        100;  ///< rooms one connection may join (JOIN_ERROR too_many_rooms beyond)
    /// Room names: 1..room_name_bytes_max bytes of UTF-8 without control
    /// characters (JOIN_ERROR / NACK `bad_room` otherwise).
    std::size_t room_name_bytes_max = 128;
    std::size_t message_bytes_max = 64u << 10;  ///< payload of one PUBLISH
    double publish_rate = 50.0;                 ///< tokens per second per connection
    double publish_burst =
        100.0;  ///< publishes one connection may send at once after a quiet period
    std::size_t replay_page_events = 256;        ///< events per replay page at most
    std::size_t replay_page_bytes = 256u << 10;  ///< bytes of data per replay page at most
    /// A publish id is recognised for this long (the store's publish log;
    /// how many per user: StoreLimits::dedupe_per_user_max).
    duration dedupe_ttl{600'000};
    /// Appends in flight (not durable yet) at most; beyond it publishes get
    /// NACK unavailable with a short retry_after (the store is behind).
    std::size_t appends_in_flight_max = 100'000;  ///< (NACK unavailable beyond)
    /// Start-up pages: sessions and history events per store read.
    std::size_t startup_page = 1024;
    /// Sharding (docs/DESIGN.md, "Shards"): this engine is shard
    /// `shard_index` of `shard_count` (1..kShardsMax) sharing one store. It
    /// owns the sessions whose id hashes to it (session_shard), hands out only
    /// such ids, tags its store request ids with its index (request_shard),
    /// and sends an unauthenticated connection's RESUME of another shard's
    /// session to that shard (owner_shard, release, adopt).
    std::size_t shard_index = 0;
    std::size_t shard_count = 1;  ///< shards of one gateway
    /// Shards at most (the index lives in the top byte of request ids).
    static constexpr std::size_t kShardsMax = 256;
    /// The store is shared by several gateway nodes (Redis):
    /// - every RESUME claims the session in the store (store_op::ClaimSession)
    ///   before it is answered, so that of two RESUMEs of one session on two
    ///   nodes exactly one wins, and a node resumes sessions it never saw;
    /// - a JOIN from a position reads the room's stream before it is
    ///   answered (another node, or a failover, may have changed it).
    bool shared_store = false;
    proto::Limits limits;  ///< frame, nesting and field limits of the codec

    /// Verifies an access token. Required.
    std::function<AuthResult(std::string_view token, std::int64_t now_ms)> authenticate;
    /// May `user` join (publish = false) or publish to (publish = true) `room`?
    /// Unset: everything is allowed.
    std::function<bool(std::string_view user, std::string_view room, bool publish)> authorize;
    /// Fills the span with cryptographically secure random bytes. Required.
    std::function<void(std::span<std::uint8_t>)> random_bytes;
    /// Optional: the engine started (true) or stopped (false) tracking a
    /// room (a subscriber, or a join waiting for its stream). The gateway
    /// sends a shard other shards' appends only for rooms it tracks; the
    /// engine reads a room's stream after announcing it, so an append it is
    /// not told of is in what it reads (docs/DESIGN.md, "Shards").
    std::function<void(std::string_view room, bool tracked)> on_room_interest;

    /// The first invalid field (error::invalid_config).
    [[nodiscard]] result<void, Error> validate() const;
};

/// An instruction of the engine for the network layer.
struct ServerTransmit {
    /// Send a frame, or close the connection.
    enum class Kind : std::uint8_t { send, close };
    Kind kind = Kind::send;  ///< what to do
    std::uint64_t conn = 0;  ///< which connection
    /// send: the encoded frame. One event fanned out to N subscribers is
    /// encoded once and the N transmits share it.
    std::shared_ptr<const std::string> frame;
    std::uint16_t code = 0;  ///< close: the close code
    std::string reason;      ///< close: the close reason (at most 123 bytes)
    /// The frame's text (empty for a close).
    const std::string& text() const noexcept {
        static const std::string none;
        return frame ? *frame : none;
    }
};

/// Counters of the engine since it started (exported as /metrics).
struct ServerMetrics {
    std::uint64_t connections_opened = 0;  ///< WebSocket connections opened
    std::uint64_t identifies = 0;          ///< IDENTIFY requests
    std::uint64_t auth_failures = 0;       ///< IDENTIFY requests refused (4004)
    std::uint64_t resumes_ok = 0;          ///< RESUMEs answered RESUMED
    std::uint64_t resumes_failed = 0;      ///< RESUMEs answered INVALID_SESSION
    std::uint64_t joins = 0;               ///< JOINs that took effect
    std::uint64_t join_errors = 0;         ///< JOIN_ERROR answers
    std::uint64_t publishes = 0;           ///< appended (durable)
    std::uint64_t publish_dupes = 0;       ///< answered with the original's offset (a retry)
    std::uint64_t nacks = 0;               ///< NACK answers
    std::uint64_t deliveries = 0;          ///< EVENT frames written (live + replay)
    std::uint64_t replayed = 0;            ///< of which replay
    std::uint64_t replay_pages = 0;        ///< replay pages written
    std::uint64_t heartbeats = 0;          ///< HEARTBEATs answered
    std::uint64_t idle_closes = 0;         ///< connections closed for silence (4000)
    std::uint64_t sessions_expired = 0;    ///< sessions dropped after their retention window
    std::uint64_t store_requests = 0;      ///< requests emitted
    std::uint64_t store_errors = 0;        ///< requests that completed with an error
    std::uint64_t gap_fills = 0;           ///< live subscribers sent back to the store by a jump
    std::uint64_t sessions_claimed = 0;    ///< sessions resumed here that another node held
    std::uint64_t sessions_taken = 0;      ///< sessions another node claimed from this one
    std::map<std::uint16_t, std::uint64_t> closes_by_code;  ///< closes the server initiated
};

/// The shard (0..shards-1) that owns a session: a stable hash (64-bit
/// FNV-1a) of its id, so that any shard, and a restarted gateway with the
/// same shard count, finds it without asking the others.
[[nodiscard]] std::size_t session_shard(std::string_view session_id, std::size_t shards) noexcept;
/// The shard whose engine made store request `request_id` (its top byte).
[[nodiscard]] constexpr std::size_t request_shard(std::uint64_t request_id) noexcept {
    return static_cast<std::size_t>(request_id >> 56);
}

/// What a connection that moves to another shard before it authenticated
/// takes along (ServerEngine::release, ServerEngine::adopt).
struct ConnHandoff {
    std::int64_t opened_ms = 0;     ///< when it opened (its handshake deadline counts from it)
    std::int64_t last_seen_ms = 0;  ///< its last frame
};

/// A page of a room's durable history (the admin API).
struct HistoryPage {
    StreamInfo info;                  ///< the stream (head clipped to what the engine fanned out)
    std::vector<StoredEvent> events;  ///< oldest first
};

/// A session as the admin API shows it.
struct SessionInfo {
    std::string id;                  ///< its id
    std::string user;                ///< its user
    std::vector<std::string> rooms;  ///< the rooms it joined
    bool connected = false;          ///< a connection holds it now
    std::int64_t expires_at_ms = 0;  ///< when it expires (when not connected)
};

/// The sans-I/O gateway engine: see this file's description.
class ServerEngine {
  public:
    /// Throws std::invalid_argument when the config does not validate().
    ServerEngine(ServerConfig config, std::int64_t now_ms);
    ~ServerEngine() = default;
    ServerEngine(const ServerEngine&) = delete;
    ServerEngine& operator=(const ServerEngine&) = delete;

    // ---- driver inputs ----
    /// A WebSocket connection opened (HELLO goes out).
    void handle_open(std::int64_t now_ms, std::uint64_t conn);
    /// A text frame arrived on `conn` (decoded here with `config.limits`).
    void handle_message(std::int64_t now_ms, std::uint64_t conn, std::string_view text);
    /// A text frame of `conn` that the network layer already decoded with
    /// `config.limits`, off the engine's strand: the message, or why the
    /// frame is not one (the connection is then closed with its code).
    void handle_decoded(std::int64_t now_ms, std::uint64_t conn, proto::DecodeResult frame);
    /// The connection's outbound queue drained: the next replay page may go.
    void handle_writable(std::int64_t now_ms, std::uint64_t conn);
    /// The connection is gone (its session stays for session_ttl).
    void handle_close(std::int64_t now_ms, std::uint64_t conn);
    /// Call at poll_timeout(): idle connections, session expiry, trims.
    void handle_timeout(std::int64_t now_ms);
    /// A request of poll_store() completed.
    void handle_store(std::int64_t now_ms, StoreResult result);
    /// Another node or shard appended to a room (Store::on_remote_append,
    /// Store::set_commit_observer). Live subscribers get it; if appends were
    /// missed in between, they catch up from the store instead (never a gap).
    /// An append already fanned out (this engine's own) is ignored.
    void handle_remote_append(std::int64_t now_ms, const RemoteAppend& a);
    /// Another node claimed a session (Store::on_session_claimed): if this
    /// engine holds an older generation of it, its connection is closed
    /// (4000, "session resumed elsewhere") and the session forgotten here.
    void handle_session_claimed(std::int64_t now_ms, const SessionClaim& claim);

    // ---- shards ----
    /// The shard that must handle `frame` instead of this one: an
    /// unauthenticated connection's RESUME of a session another shard owns.
    /// The driver then release()s the connection here and adopt()s it there,
    /// and hands the frame (and everything after it) to that shard.
    [[nodiscard]] std::optional<std::size_t> owner_shard(std::uint64_t conn,
                                                         const proto::DecodeResult& frame) const;
    /// Forgets an unauthenticated connection without closing it (it moves to
    /// another shard). Nothing if it is unknown or authenticated.
    [[nodiscard]] std::optional<ConnHandoff> release(std::uint64_t conn);
    /// Takes over a connection another shard released (HELLO was sent there).
    void adopt(std::int64_t now_ms, std::uint64_t conn, const ConnHandoff& h);

    // ---- outputs ----
    /// The next frame or close for the network layer.
    [[nodiscard]] std::optional<ServerTransmit> poll_transmit();
    /// The next request for the store (submit it; feed its result to handle_store).
    [[nodiscard]] std::optional<StoreRequest> poll_store();
    /// When to call handle_timeout next (wall-clock ms).
    [[nodiscard]] std::optional<std::int64_t> poll_timeout() const;

    // ---- the admin API ----
    /// Server-side publish. `data` must already be one valid JSON value
    /// (check with proto::validate_data). `done` runs once, on the engine's
    /// strand, with the position once durable (or store_unavailable while
    /// draining, store_failed).
    void publish(std::int64_t now_ms, std::string_view room, std::string data,
                 std::function<void(result<proto::StreamPosition>)> done);
    /// Durable events after `after`, bounded by count and bytes; `done`
    /// runs once with the page.
    void history(std::string_view room, std::uint64_t after, std::size_t limit,
                 std::size_t max_bytes, std::function<void(result<HistoryPage>)> done);
    /// RECONNECT to every connection, then close them with 1001, once the
    /// appends in flight are durable (publishes meanwhile get NACK
    /// unavailable); new connections are refused with 1013 from now on. Each
    /// connection gets its own retry_after in [retry_after_ms, 2 x
    /// retry_after_ms) so that clients do not all come back at once.
    void drain(std::int64_t now_ms, std::int64_t retry_after_ms);
    /// Closes one session's connection (admin API). False if unknown.
    bool disconnect_session(std::int64_t now_ms, std::string_view session_id);

    // ---- state ----
    /// Start-up finished (sessions loaded).
    [[nodiscard]] bool ready() const noexcept { return phase_ == Phase::ready; }
    /// drain() was called.
    [[nodiscard]] bool draining() const noexcept { return draining_; }
    /// Every session kept (admin API).
    [[nodiscard]] std::vector<SessionInfo> sessions() const;
    /// One session (admin API).
    [[nodiscard]] std::optional<SessionInfo> session(std::string_view id) const;
    /// Counters since start.
    const ServerMetrics& metrics() const noexcept { return metrics_; }
    /// Open WebSocket connections.
    std::size_t connection_count() const noexcept { return conns_.size(); }
    /// Sessions kept.
    std::size_t session_count() const noexcept { return sessions_.size(); }
    /// Rooms the engine tracks (subscribers, or a join waiting for the store).
    std::size_t room_count() const noexcept { return rooms_.size(); }
    /// Store requests emitted and not completed yet.
    std::size_t store_in_flight() const noexcept { return requests_.size(); }
    /// Appends emitted and not yet durable.
    std::size_t appends_in_flight() const noexcept { return appends_in_flight_; }
    /// Asserts the invariants (docs/DESIGN.md, "Assertions"); every input
    /// calls it at entry and exit in builds with TETHER_INVARIANTS.
    void check_invariants() const;

  private:
    enum class Phase : std::uint8_t { loading_sessions, ready };

    /// A connection's place in one of its rooms.
    struct Cursor {
        std::uint64_t next = 0;   ///< next offset to send while replaying
        std::uint64_t epoch = 0;  ///< the stream being replayed
        bool replaying = false;   ///< false: live
        bool reading = false;     ///< a replay read is in flight
    };
    /// A session, keyed by its id in sessions_ (the id is not repeated
    /// here: every byte counts per idle connection, docs/BENCHMARKS.md).
    struct Session {
        std::string resume_token;
        std::string user;
        std::vector<std::string> rooms;
        std::int64_t expires_at_ms = 0;  ///< 0 while a connection holds the session
        std::optional<std::uint64_t> conn;
        std::uint64_t generation = 0;  ///< shared stores: the claim this engine holds
    };
    using SessionMap = std::map<std::string, Session, std::less<>>;
    /// A node of sessions_ (stable until erased; a session is erased only
    /// when no connection holds it).
    using SessionEntry = SessionMap::value_type;
    /// A connection's rooms with their cursors, sorted by name in one vector:
    /// a std::map node per room cost ~100 bytes per idle connection. At most
    /// rooms_per_connection_max entries.
    class RoomCursors {
      public:
        using value_type = std::pair<std::string, Cursor>;
        using iterator = std::vector<value_type>::iterator;
        using const_iterator = std::vector<value_type>::const_iterator;
        iterator begin() noexcept { return v_.begin(); }
        iterator end() noexcept { return v_.end(); }
        const_iterator begin() const noexcept { return v_.begin(); }
        const_iterator end() const noexcept { return v_.end(); }
        std::size_t size() const noexcept { return v_.size(); }
        iterator find(std::string_view room) {
            auto it = lower(room);
            return it != v_.end() && it->first == room ? it : v_.end();
        }
        const_iterator find(std::string_view room) const {
            auto it = std::lower_bound(
                v_.begin(), v_.end(), room,
                [](const value_type& e, std::string_view r) { return e.first < r; });
            return it != v_.end() && it->first == room ? it : v_.end();
        }
        bool contains(std::string_view room) const { return find(room) != v_.end(); }
        /// The room's cursor, inserted (live) if the room is new.
        Cursor& operator[](std::string_view room) {
            auto it = lower(room);
            if (it == v_.end() || it->first != room)
                it = v_.emplace(it, std::string{room}, Cursor{});
            return it->second;
        }
        void erase(std::string_view room) {
            if (auto it = find(room); it != v_.end()) v_.erase(it);
        }
        void clear() noexcept { std::vector<value_type>{}.swap(v_); }

      private:
        iterator lower(std::string_view room) {
            return std::lower_bound(
                v_.begin(), v_.end(), room,
                [](const value_type& e, std::string_view r) { return e.first < r; });
        }
        std::vector<value_type> v_;
    };
    struct Conn {
        SessionEntry* session = nullptr;  ///< nullptr until IDENTIFY or RESUME succeeded
        std::int64_t opened_ms = 0;
        std::int64_t last_seen_ms = 0;
        TokenBucket bucket;  ///< publishes and joins (ServerConfig::publish_rate/_burst)
        RoomCursors rooms;
        bool writable = true;
        bool reading = false;   ///< one replay read in flight at most
        bool claiming = false;  ///< a RESUME waits for its claim (shared sessions)
        std::uint32_t rate_limited_in_a_row = 0;
        /// Order gate: the ids NACKed on this connection, oldest first. Only
        /// the oldest may be accepted next (the client resends in order), so
        /// pipelined publishes are never reordered by a rate limit. A vector,
        /// not a deque: an empty std::deque allocates ~600 bytes, on every
        /// connection (measured with heaptrack, docs/BENCHMARKS.md); the gate
        /// is rarely used and bounded (kHeldMax), so front erasure is fine.
        std::vector<std::string> held;
        std::int64_t held_until_ms =
            0;  ///< the gate opens by itself then (the client dropped them)
    };
    /// What the engine knows of a room's stream: the durable head it has
    /// fanned out (every subscriber is live up to it or replaying towards
    /// it), and the joins that wait for the stream to be read.
    struct RoomState {
        bool known = false;
        std::uint64_t epoch = 0;
        std::uint64_t head = 0;
        std::uint64_t first = 1;
        std::uint64_t loading = 0;           ///< the ReadStream in flight (0: none)
        proto::StreamPosition seen_loading;  ///< newest append completed while loading
        std::set<std::uint64_t> subscribers;
        std::vector<std::pair<std::uint64_t, proto::Join>> waiting;  ///< (conn, join)
    };
    // Requests in flight, by id.
    struct AppendRequest {
        std::string room;
        std::string data;
        std::optional<std::pair<std::uint64_t, std::string>> ack_to;  ///< (conn, publish id)
        std::function<void(result<proto::StreamPosition>)> done;      ///< admin publishes
    };
    struct LoadRoom {
        std::string room;
    };
    struct ReplayRead {
        std::uint64_t conn = 0;
        std::string room;
        std::uint64_t after = 0;
    };
    struct HistoryRead {
        std::function<void(result<HistoryPage>)> done;
        std::optional<std::uint64_t> known_head;
    };
    struct ClaimRequest {
        std::uint64_t conn = 0;
        proto::Resume resume;
    };
    struct Startup {};
    struct Background {};  ///< session writes, trims: only errors matter
    using Request = std::variant<AppendRequest, LoadRoom, ReplayRead, HistoryRead, ClaimRequest,
                                 Startup, Background>;

    std::uint64_t submit(StoreOp op, Request pending);
    void send(std::uint64_t conn, const proto::Message& m);
    void send_frame(std::uint64_t conn, std::shared_ptr<const std::string> frame);
    void close(std::uint64_t conn, std::uint16_t code, const std::string& reason);
    void dispatch(std::int64_t now, std::uint64_t conn, Conn& c, proto::Message& msg);
    void on_identify(std::int64_t now, std::uint64_t conn, Conn& c, const proto::Identify& m);
    void on_resume(std::int64_t now, std::uint64_t conn, Conn& c, const proto::Resume& m);
    /// RESUMED, then the rooms joined again from their positions.
    void resume_session(std::int64_t now, std::uint64_t conn, Conn& c, SessionEntry& entry,
                        const proto::Resume& m);
    void on_claimed(std::int64_t now, ClaimRequest& req, StoreResult& r);
    void on_join(std::int64_t now, std::uint64_t conn, Conn& c, const proto::Join& m);
    void on_publish(std::int64_t now, std::uint64_t conn, Conn& c, const proto::Publish& m);
    void join_room(std::uint64_t conn, Conn& c, const proto::Join& m);
    void leave_room(std::uint64_t conn, Conn& c, std::string_view room);
    [[nodiscard]] bool valid_room(std::string_view room) const;
    void pump_replay(std::uint64_t conn, Conn& c);
    void append(std::int64_t now, std::string_view room, std::string data, std::string_view user,
                std::string_view id, AppendRequest req);
    /// The room's stream advanced to `position` (an append of ours or of
    /// another node): live subscribers get it in order, or catch up from the
    /// store when offsets were missed.
    void advance(std::string_view room, proto::StreamPosition position, const std::string& data,
                 EncodedOnce* shared = nullptr);
    /// A newer view of a known room's stream (read for a join that was
    /// ahead): live subscribers catch up from the store.
    void catch_up(std::string_view room, RoomState& rs, const StreamInfo& info);
    void drop_room_if_unused(std::string_view room);
    void detach(std::int64_t now, std::uint64_t conn, Conn& c);
    void persist(const SessionEntry& s);
    std::string random_hex(std::size_t bytes);
    void maybe_finish_drain(std::int64_t now);

    // results
    void on_appended(std::int64_t now, AppendRequest& req, const StoreResult& r,
                     EncodedOnce* shared = nullptr);
    void on_room_loaded(std::int64_t now, const LoadRoom& req, const StoreResult& r);
    void on_replay_read(const ReplayRead& req, StoreResult& r);
    void on_startup(std::int64_t now, StoreResult& r);
    void next_startup_step(std::int64_t now);

    ServerConfig config_;
    duration idle_timeout_{0};
    RateLimit publish_limit_;
    Phase phase_ = Phase::loading_sessions;
    std::string startup_after_;  ///< paging cursor of the start-up (session id)
    bool draining_ = false;
    bool drain_sent_ = false;
    std::int64_t drain_retry_after_ms_ = 0;
    std::map<std::uint64_t, Conn> conns_;
    SessionMap sessions_;
    std::map<std::string, RoomState, std::less<>> rooms_;
    std::map<std::uint64_t, Request> requests_;
    std::size_t appends_in_flight_ = 0;
    std::uint64_t next_request_ = 1;  ///< the top byte is the shard index
    std::deque<ServerTransmit> transmits_;
    std::deque<StoreRequest> store_out_;
    std::int64_t next_housekeeping_ms_ = 0;
    ServerMetrics metrics_;
};

}  // namespace tether
