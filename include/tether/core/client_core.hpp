#pragma once
/// @file
/// The sans-I/O client state machine (quinn-proto / ngtcp2 shape).
///
/// `ClientCore` owns everything a reconnecting tether client decides: when to
/// open a connection, what to send, when to give up, what the application
/// sees. It performs no I/O and reads no clock. The driver (the network layer,
/// or the simulator) feeds it inputs and carries out its outputs:
///
/// - inputs: `handle_open`, `handle_message`, `handle_close`,
///   `handle_timeout`, `set_online`, `provide_credentials`, and the
///   application commands `connect`, `retry_now`, `close`, `join`, `leave`,
///   `publish` -- every one takes `now`;
/// - outputs: `poll_transmit()` (open / send / close / abort a connection),
///   `poll_event()` (status, room status, messages, acks, latency, ...),
///   `poll_timeout()` (when to call handle_timeout next).
///
/// After every input the driver drains poll_transmit() and poll_event() until
/// empty and re-arms its single timer from poll_timeout().
///
/// Connections are named by an id the core allocates in the `open` transmit.
/// Inputs carrying another id than the current one refer to a stale socket;
/// the core ignores them (and asks for the stale socket to be aborted), so two
/// sockets can never both drive the session.
///
/// @par Reconnect order
/// open -> HELLO -> IDENTIFY or RESUME and wait for the answer -> rejoin
/// rooms with their positions -> replay (catch up to each room's head) ->
/// flush the outbox in order -> status `connected`.
///
/// @par Thread safety
/// Distinct objects: safe. Shared objects: unsafe (drive it from one strand).

#include <tether/core/error.hpp>
#include <tether/core/observable.hpp>
#include <tether/core/protocol.hpp>
#include <tether/core/reconnector.hpp>
#include <tether/core/time.hpp>
#include <tether/version.hpp>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace tether {

/// What the client is doing within its state.
enum class Phase : std::uint8_t {
    none,
    fetching_credentials,  ///< waiting for provide_credentials()
    opening,               ///< socket and WebSocket handshake
    authenticating,        ///< HELLO, IDENTIFY -> READY
    resuming,              ///< RESUME -> RESUMED
    joining,               ///< rejoining rooms
    catching_up,           ///< replaying missed events
    sending,               ///< outbox not yet acknowledged: "sending x of y"
};

/// "opening", "catching up", ...
[[nodiscard]] std::string_view to_string(Phase p) noexcept;
/// Stable identifiers for scripts and JSON ("catching_up").
[[nodiscard]] std::string_view to_id(Phase p) noexcept;

/// Snapshot of the client's status, observable through ClientCore::status().
struct ClientStatus : ConnectionStatus {
    Phase phase = Phase::none;      ///< what it is doing within the state
    std::size_t sending_done = 0;   ///< "sending x of y": x
    std::size_t sending_total = 0;  ///< "sending x of y": y
    std::size_t pending = 0;        ///< messages in the outbox
    friend bool operator==(const ClientStatus&, const ClientStatus&) = default;
};

/// One line for humans, e.g. "reconnecting (attempt 3, next in 2.1 s)",
/// "connected (sending 3 of 10)".
[[nodiscard]] std::string describe(const ClientStatus& s, time_point now);

/// Per-room status (docs/PROTOCOL.md, "Client states").
enum class RoomState : std::uint8_t { connecting, joined, reconnecting, disconnected, error };
/// "joined", "reconnecting", ...
[[nodiscard]] std::string_view to_string(RoomState s) noexcept;

/// What happens when a publish would exceed the outbox bounds.
enum class OverflowPolicy : std::uint8_t {
    reject_new,   ///< publish() fails with error::outbox_full
    drop_oldest,  ///< the oldest queued message is dropped (PublishFailed error::dropped)
};

/// Bounds and policies of the outbox (messages not yet acknowledged).
struct OutboxLimits {
    std::size_t count_max = 1000;      ///< messages at most
    std::size_t bytes_max = 4u << 20;  ///< sum of payload sizes (4 MiB)
    OverflowPolicy overflow =
        OverflowPolicy::reject_new;       ///< what a publish beyond the bounds does
    std::optional<duration> message_ttl;  ///< unset: messages never expire
    /// Publishes sent and not yet answered, at most (a window, like TCP's):
    /// a reconnect flush of a long outbox never floods the server.
    std::size_t inflight_max = 64;
};

/// The options of a ClientCore. Everything a tether::Client does is
/// decided here; ClientOptions (client.hpp) extends it with the network's.
struct ClientConfig : ReconnectConfig {
    /// Fatal close codes: 4003, 4004, 4012, 4013, 4014 (docs/PROTOCOL.md).
    ClientConfig();

    std::string token;  ///< static credentials (used unless dynamic_credentials)
    /// When true, every attempt first emits CredentialsNeeded and waits for
    /// provide_credentials() / credentials_failed() (token refresh).
    bool dynamic_credentials = false;
    proto::ClientInfo client_info{"tether-cpp", std::string{version_string}};  ///< sent in IDENTIFY
    proto::Limits limits;  ///< frame, nesting and field limits, checked before sending
    duration credentials_timeout{10'000};  ///< the credentials callback must answer within this
    duration auth_timeout{10'000};         ///< open -> READY/RESUMED
    std::optional<duration> heartbeat_interval;     ///< default: the server's HELLO value
    std::optional<duration> heartbeat_ack_timeout;  ///< default: the heartbeat interval
    /// A JOIN must be answered within this (then it is sent again).
    duration join_timeout{10'000};
    /// JOINs sent without any answer before the link is deemed broken (reconnect).
    std::uint32_t join_attempts_max = 3;
    /// First wait after a retryable JOIN_ERROR; doubles per error, capped at backoff.max.
    duration join_retry_delay{1'000};
    duration sync_timeout{30'000};  ///< authenticated -> rooms rejoined and caught up
    /// Fatal codes that trigger one re-identify with fresh credentials.
    std::vector<std::uint16_t> reauth_codes{
        4003, 4004};  ///< (4003: not authenticated, 4004: authentication failed)
    std::size_t rooms_max =
        1000;             ///< rooms tracked at most (join() fails with too_many_rooms beyond)
    OutboxLimits outbox;  ///< bounds of the outbox

    /// The first invalid field (error::invalid_config).
    [[nodiscard]] result<void, Error> validate() const;
};

// ---- events for the application --------------------------------------------
/// The client's status changed (after every input that changed it).
struct StatusChanged {
    ClientStatus status;  ///< the new status
};
/// A room's status changed.
struct RoomStatusChanged {
    std::string room;                         ///< the room
    RoomState state = RoomState::connecting;  ///< its new state
    std::error_code error;  ///< why it is in `error` (invalid_room, not_permitted, ...)
    std::string reason;     ///< for humans ("left", the server's JOIN_ERROR reason)
};
/// An event of a room, delivered exactly once and in order.
struct MessageReceived {
    std::string room;                ///< the room
    proto::StreamPosition position;  ///< the event's epoch and offset
    std::string data;                ///< raw JSON
    bool replayed = false;           ///< true when part of the catch-up after (re)joining
};
/// The room's history could not be recovered from `last_delivered`: events
/// in between are lost to this client. Refetch application state.
struct HistoryLost {
    std::string room;                      ///< the room
    proto::StreamPosition last_delivered;  ///< the last position the application got
    proto::StreamPosition
        resumed_at;  ///< where the room continues (the new epoch or the oldest kept)
};
/// A publish was stored durably.
struct PublishAcked {
    std::string id;                  ///< its publish id
    std::string room;                ///< its room
    proto::StreamPosition position;  ///< where it was stored
};
/// A publish will never be acknowledged.
struct PublishFailed {
    std::string id;           ///< its publish id
    std::string room;         ///< its room
    std::error_code error;    ///< expired, dropped, or the server's refusal (not_permitted, ...)
    std::string server_code;  ///< the NACK code as sent, when the server refused it
    std::string reason;       ///< for humans
    bool possibly_delivered = false;  ///< it was sent at least once before failing
};
/// A round trip (heartbeat to its ack) was measured.
struct LatencySample {
    duration rtt{0};  ///< the round-trip time
};
/// Call provide_credentials() or credentials_failed(); `refresh` asks for a
/// new token (the previous one was rejected).
struct CredentialsNeeded {
    bool refresh = false;  ///< true: the previous token was refused, fetch a new one
};
/// A session started (READY) or resumed (RESUMED).
struct SessionStarted {
    std::string session_id;  ///< the session's id
    std::string user;        ///< the authenticated user
    bool resumed = false;    ///< true: resumed, false: a new session
};

/// Everything ClientCore::poll_event() can return.
using ClientEvent =
    std::variant<StatusChanged, RoomStatusChanged, MessageReceived, HistoryLost, PublishAcked,
                 PublishFailed, LatencySample, CredentialsNeeded, SessionStarted>;

/// Counters of a client since it was created.
struct ClientMetrics {
    std::uint64_t attempts = 0;            ///< connection attempts started
    std::uint64_t connects = 0;            ///< attempts that reached `connected`
    std::uint64_t reconnects = 0;          ///< connects after the first
    std::uint64_t link_losses = 0;         ///< established connections lost
    std::uint64_t heartbeat_timeouts = 0;  ///< links replaced because no heartbeat ack came
    std::uint64_t resumes_ok = 0;          ///< RESUMEs answered RESUMED
    std::uint64_t resumes_failed = 0;      ///< RESUMEs answered INVALID_SESSION
    std::uint64_t queued = 0;              ///< publishes accepted into the outbox
    std::uint64_t sent = 0;                ///< PUBLISH frames sent (including resends)
    std::uint64_t acked = 0;               ///< publishes acknowledged
    std::uint64_t dropped = 0;             ///< rejected, dropped, expired or NACKed for good
    std::uint64_t delivered = 0;           ///< events given to the application
    std::uint64_t replayed = 0;            ///< of which part of a catch-up
    std::uint64_t duplicates = 0;          ///< events discarded as already delivered
    std::uint64_t history_lost = 0;        ///< HistoryLost events
    duration downtime{0};                  ///< total time not connected after first connect
    duration last_time_to_reconnect{0};    ///< the last outage, from loss to connected
    std::optional<duration> last_rtt;      ///< the last heartbeat round trip
};

/// A tracked room, as ClientCore::rooms() lists it.
struct RoomInfo {
    std::string room;                               ///< the room
    RoomState state = RoomState::connecting;        ///< its state
    std::optional<proto::StreamPosition> position;  ///< last delivered, once joined
};

/// What a client must keep across a process restart to lose nothing and send
/// nothing twice: the unacknowledged outbox (with the publish ids the server
/// deduplicates on) and the last delivered position of every room.
/// `tether::Client` saves it to a file (ClientOptions::state_file).
struct ClientSnapshot {
    /// A message not yet acknowledged.
    struct Pending {
        std::string id;    ///< its publish id
        std::string room;  ///< its room
        std::string data;  ///< its data (one JSON value)
        friend bool operator==(const Pending&, const Pending&) = default;
    };
    /// A room and the last position delivered in it.
    struct RoomPosition {
        std::string room;                               ///< the room
        std::optional<proto::StreamPosition> position;  ///< unset: never delivered anything
        friend bool operator==(const RoomPosition&, const RoomPosition&) = default;
    };
    std::string id_prefix;            ///< publish ids continue after a restart
    std::uint64_t next_publish = 1;   ///< next publish id counter
    std::vector<Pending> outbox;      ///< oldest first
    std::vector<RoomPosition> rooms;  ///< rooms tracked, with their positions
    friend bool operator==(const ClientSnapshot&, const ClientSnapshot&) = default;
};

/// The sans-I/O client of protocol v1: see this file's description.
class ClientCore final : private ReconnectHooks {
  public:
    /// Throws std::invalid_argument when the config does not validate().
    explicit ClientCore(ClientConfig config);
    ~ClientCore() override = default;
    ClientCore(const ClientCore&) = delete;
    ClientCore& operator=(const ClientCore&) = delete;

    // ---- application commands ----
    /// Starts connecting (or, when waiting to retry, tries at once).
    void connect(time_point now, bool reset_backoff = false);
    /// Attempts now unless an attempt is already in flight; also leaves a
    /// fatal or error state.
    void retry_now(time_point now);
    /// Closes with 1000 and stops reconnecting until connect()/retry_now().
    void close(time_point now);
    /// Offline pauses retries and closes the socket with 1001; online
    /// reconnects at once (backoff reset unless disabled).
    void set_online(time_point now, bool online);
    /// The credentials asked for by CredentialsNeeded (ignored when late).
    void provide_credentials(time_point now, std::string token);
    /// The credentials cannot be had: the attempt fails with credentials_failed.
    void credentials_failed(time_point now, const std::string& reason);

    /// Tracks a room; joins now or when connected. Errors: invalid_room,
    /// too_many_rooms.
    [[nodiscard]] result<void> join(time_point now, std::string room);
    /// Stops tracking a room (LEAVE when connected). False when not tracked.
    bool leave(time_point now, std::string_view room);
    /// Queues `data` (one JSON value) for `room`; sent when connected.
    /// Returns the publish id. Errors: invalid_room, invalid_data, too_large,
    /// outbox_full.
    [[nodiscard]] result<std::string> publish(time_point now, std::string room, std::string data);

    // ---- driver inputs ----
    /// The driver opened connection `conn` (the WebSocket handshake is done).
    void handle_open(time_point now, std::uint64_t conn);
    /// A text frame arrived on `conn`.
    void handle_message(time_point now, std::uint64_t conn, std::string_view text);
    /// The connection ended: the close frame received, or how the link failed.
    void handle_close(time_point now, std::uint64_t conn, const LinkClose& why);
    /// Call at (or after) poll_timeout(): serves every timer due.
    void handle_timeout(time_point now);

    // ---- outputs ----
    /// The next instruction for the driver (drain until nullopt after every input).
    [[nodiscard]] std::optional<Transmit> poll_transmit();
    /// The next event for the application (drain until nullopt after every input).
    [[nodiscard]] std::optional<ClientEvent> poll_event();
    /// The earliest deadline of the timer table (a past one means "due now").
    [[nodiscard]] std::optional<time_point> poll_timeout() const;

    // ---- persistence ----
    /// The state to save (cheap: copies the outbox and the room positions).
    [[nodiscard]] ClientSnapshot snapshot() const;
    /// Restores a snapshot before the first connect(). Rooms are tracked again
    /// and rejoined from their positions; the outbox is resent with its
    /// original ids, so the server's dedupe window makes each message count
    /// once. Returns an error (and changes nothing) when called after
    /// connect(), when rooms or messages already exist, or when the snapshot
    /// breaks a limit of the config (room names, data, outbox bounds).
    /// Restored messages get a fresh message_ttl counted from `now`.
    /// Errors: bad_call (after connect(), or not empty), invalid_state.
    [[nodiscard]] result<void, Error> restore(time_point now, const ClientSnapshot& snap);
    /// Grows by one whenever snapshot() would answer something new.
    std::uint64_t state_version() const noexcept { return state_version_; }

    // ---- state ----
    /// The status, with subscriptions and waiters.
    const Observable<ClientStatus>& status() const noexcept { return status_; }
    /// Counters since creation.
    const ClientMetrics& metrics() const noexcept { return metrics_; }
    /// The rooms tracked, with their state and last delivered position.
    std::vector<RoomInfo> rooms() const;
    /// Messages in the outbox (not yet acknowledged or failed).
    std::size_t pending() const noexcept { return outbox_.size(); }
    /// Id of the live connection, if any (for drivers and tests).
    std::optional<std::uint64_t> connection() const noexcept;
    /// The configuration in use.
    const ClientConfig& config() const noexcept { return config_; }
    /// Asserts the invariants (docs/DESIGN.md, "Assertions"); every input
    /// calls it at entry and exit in builds with TETHER_INVARIANTS.
    void check_invariants() const;

  private:
    /// The current attempt's stage. The lifecycle (attempts, socket, close,
    /// backoff, timers) is the Reconnector's; this is what the tether
    /// protocol adds on top.
    enum class Stage : std::uint8_t {
        credentials,     ///< waiting for provide_credentials()
        opening,         ///< socket and WebSocket handshake
        hello,           ///< waiting for HELLO
        authenticating,  ///< IDENTIFY or RESUME sent
        syncing,         ///< rejoining rooms and catching up
        established      ///< `connected`
    };
    enum class JoinState : std::uint8_t { idle, sent, retry_wait, joined };

    struct Room {
        std::string name;
        std::optional<proto::StreamPosition> position;  ///< last delivered
        JoinState join = JoinState::idle;
        std::uint32_t join_attempts = 0;  ///< JOINs sent without an answer on this connection
        std::uint32_t join_errors = 0;    ///< consecutive retryable JOIN_ERRORs (delay growth)
        time_point join_deadline{};
        std::uint64_t catch_up_target = 0;  ///< head offset at JOINED
        bool ever_joined = false;
        RoomState reported = RoomState::connecting;
        bool reported_once = false;
    };
    struct OutboxEntry {
        std::string id;
        std::string room;
        std::string data;
        std::optional<time_point> expires_at;
        std::optional<time_point> not_before;  ///< NACK retry_after hold
        std::uint64_t sent_on = 0;             ///< connection it is in flight on (0: queued)
        std::uint64_t seq = 0;                 ///< queue order (the invariants check it)
        bool ever_sent = false;
    };
    /// The protocol state of the current attempt (the Reconnector holds its id).
    struct Conn {
        std::uint64_t id = 0;
        Stage stage = Stage::credentials;
        bool resuming = false;
        duration heartbeat_interval{0};
        std::int64_t heartbeat_ts = 0;  ///< of the HEARTBEAT awaiting its ack
    };
    struct Session {
        std::string id;
        std::string resume_token;
        std::string user;
    };

    // ReconnectHooks
    void begin_attempt(time_point now, std::uint64_t conn) override;
    void link_lost(time_point now, const LinkClose& why, bool from_peer, bool established) override;

    // connection lifecycle
    void escalate(time_point now, StopReason cause);
    void fail_link(time_point now, std::uint16_t code, std::string reason, error why);
    void send(const proto::Message& m);
    void on_timer(time_point now, Timer t);

    // message handling
    void on_message(time_point now, proto::Message& m);
    void on_hello(time_point now, const proto::Hello& m);
    void on_session(time_point now, bool resumed, std::string_view user);
    void on_joined(time_point now, const proto::Joined& m);
    void on_join_error(time_point now, const proto::JoinError& m);
    void on_event(time_point now, proto::Event& m);
    void on_ack(time_point now, const proto::Ack& m);
    void on_nack(time_point now, const proto::Nack& m);
    void send_identify();
    void send_join(time_point now, Room& r);
    void serve_joins(time_point now);
    void maybe_finish_sync(time_point now);
    void flush_outbox(time_point now);
    void expire_outbox(time_point now);
    void fail_entry(std::size_t index, std::error_code why, std::string server_code,
                    std::string reason);
    [[nodiscard]] bool authenticated() const noexcept;
    [[nodiscard]] bool established() const noexcept;
    Room* find_room(std::string_view name);

    void refresh(time_point now);
    void arm_timers();
    [[nodiscard]] ClientStatus derive_status() const;
    [[nodiscard]] RoomState derive_room_state(const Room& r) const;
    void emit(ClientEvent e);

    ClientConfig config_;
    Reconnector rc_;
    std::string id_prefix_;
    std::uint64_t next_publish_ = 1;

    bool escalating_ = false;    ///< this attempt is the one re-identify
    bool need_refresh_ = false;  ///< next credentials request asks for a fresh token
    StopReason escalation_cause_ = StopReason::auth_failed;  ///< why the re-identify runs
    std::optional<Conn> conn_;
    std::optional<std::string> pending_token_;
    std::optional<time_point> lost_at_;  ///< start of the current outage
    std::optional<Session> session_;

    std::map<std::string, Room, std::less<>> rooms_;
    std::deque<OutboxEntry> outbox_;
    std::size_t outbox_bytes_ = 0;
    std::uint64_t outbox_seq_ = 0;  ///< last OutboxEntry::seq given
    std::size_t sending_done_ = 0;
    std::size_t sending_total_ = 0;

    std::uint64_t state_version_ = 0;
    std::deque<ClientEvent> events_;
    Observable<ClientStatus> status_;
    ClientMetrics metrics_;
};

}  // namespace tether
