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

#include <tether/core/backoff.hpp>
#include <tether/core/observable.hpp>
#include <tether/core/protocol.hpp>
#include <tether/core/random.hpp>
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

/// Top-level connection state (seed 001).
enum class ConnState : std::uint8_t { connecting, connected, reconnecting, disconnected, error };

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

/// Why the client is disconnected or in error.
enum class StopReason : std::uint8_t {
    none,
    not_started,   ///< connect() not called yet
    manual,        ///< close() was called
    offline,       ///< the environment is offline; resumes by itself
    fatal,         ///< a fatal close code or reason
    max_attempts,  ///< attempts_max exhausted and re-authentication failed
    auth_failed,   ///< re-authentication with fresh credentials failed
};

std::string_view to_string(ConnState s) noexcept;
std::string_view to_string(Phase p) noexcept;
std::string_view to_string(StopReason r) noexcept;

/// Snapshot of the client's status, observable through ClientCore::status().
struct ClientStatus {
    ConnState state = ConnState::disconnected;
    Phase phase = Phase::none;
    StopReason reason = StopReason::not_started;
    std::uint32_t attempt = 0;                ///< current attempt within this outage
    std::optional<time_point> next_retry_at;  ///< set while waiting to retry
    std::uint16_t close_code = 0;             ///< last close code seen (0: none)
    std::string close_reason;                 ///< last close reason seen
    std::size_t sending_done = 0;             ///< "sending x of y": x
    std::size_t sending_total = 0;            ///< "sending x of y": y
    std::size_t pending = 0;                  ///< messages in the outbox
    bool online = true;
    friend bool operator==(const ClientStatus&, const ClientStatus&) = default;
};

/// One line for humans, e.g. "reconnecting (attempt 3, next in 2.1 s)".
std::string describe(const ClientStatus& s, time_point now);

/// Per-room status (seed 001).
enum class RoomState : std::uint8_t { connecting, joined, reconnecting, disconnected, error };
std::string_view to_string(RoomState s) noexcept;

/// What happens when a publish would exceed the outbox bounds.
enum class OverflowPolicy : std::uint8_t {
    reject_new,   ///< publish() fails with "outbox_full"
    drop_oldest,  ///< the oldest queued message is dropped (PublishFailed "dropped")
};

struct OutboxLimits {
    std::size_t count_max = 1000;
    std::size_t bytes_max = 4u << 20;  ///< sum of payload sizes (4 MiB)
    OverflowPolicy overflow = OverflowPolicy::reject_new;
    std::optional<duration> message_ttl;  ///< unset: messages never expire
    /// Publishes sent and not yet answered, at most (a window, like TCP's):
    /// a reconnect flush of a long outbox never floods the server.
    std::size_t inflight_max = 64;
};

struct ClientConfig {
    BackoffPolicy backoff;
    std::uint64_t seed = 1;  ///< jitter and publish-id prefix; give each client its own
    std::string token;       ///< static credentials (used unless dynamic_credentials)
    /// When true, every attempt first emits CredentialsNeeded and waits for
    /// provide_credentials() / credentials_failed() (token refresh).
    bool dynamic_credentials = false;
    proto::ClientInfo client_info{"tether-cpp", std::string{version_string}};
    proto::Limits limits;
    duration credentials_timeout{10'000};
    duration open_timeout{10'000};                  ///< socket + WebSocket handshake
    duration auth_timeout{10'000};                  ///< open -> READY/RESUMED
    std::optional<duration> heartbeat_interval;     ///< default: the server's HELLO value
    std::optional<duration> heartbeat_ack_timeout;  ///< default: the heartbeat interval
    duration join_timeout{10'000};
    /// JOINs sent without any answer before the link is deemed broken (reconnect).
    std::uint32_t join_attempts_max = 3;
    /// First wait after a retryable JOIN_ERROR; doubles per error, capped at backoff.max.
    duration join_retry_delay{1'000};
    duration sync_timeout{30'000};  ///< authenticated -> rooms rejoined and caught up
    duration close_timeout{2'000};  ///< close handshake, then hard teardown
    std::vector<std::uint16_t> fatal_codes{4003, 4004, 4012, 4013, 4014};
    std::vector<std::string> fatal_reasons;  ///< substrings of a close reason that are fatal
    /// Fatal codes that trigger one re-identify with fresh credentials.
    std::vector<std::uint16_t> reauth_codes{4003, 4004};
    bool reset_backoff_on_online = true;
    std::size_t rooms_max = 1000;
    OutboxLimits outbox;

    std::optional<std::string> validate() const;
};

/// An instruction for the driver.
struct Transmit {
    enum class Kind : std::uint8_t {
        open,   ///< open connection `conn` (connect + WebSocket handshake with tether.v1)
        send,   ///< send `text` as one text frame on `conn`
        close,  ///< start a close handshake on `conn` with code/reason
        abort,  ///< tear `conn` down now, without a handshake
    };
    Kind kind = Kind::send;
    std::uint64_t conn = 0;
    std::string text;
    std::uint16_t code = 0;
    std::string reason;
};

// ---- events for the application --------------------------------------------
struct StatusChanged {
    ClientStatus status;
};
struct RoomStatusChanged {
    std::string room;
    RoomState state = RoomState::connecting;
    std::string reason;
};
/// An event of a room, delivered exactly once and in order.
struct MessageReceived {
    std::string room;
    proto::StreamPosition position;
    std::string data;       ///< raw JSON
    bool replayed = false;  ///< true when part of the catch-up after (re)joining
};
/// The room's history could not be recovered from `last_delivered`: events
/// in between are lost to this client. Refetch application state.
struct HistoryLost {
    std::string room;
    proto::StreamPosition last_delivered;
    proto::StreamPosition resumed_at;
};
struct PublishAcked {
    std::string id;
    std::string room;
    proto::StreamPosition position;
};
struct PublishFailed {
    std::string id;
    std::string room;
    std::string code;  ///< NACK code, "expired", "dropped" or "too_large"
    std::string reason;
    bool possibly_delivered = false;  ///< it was sent at least once before failing
};
struct LatencySample {
    duration rtt{0};
};
/// Call provide_credentials() or credentials_failed(); `refresh` asks for a
/// new token (the previous one was rejected).
struct CredentialsNeeded {
    bool refresh = false;
};
struct SessionStarted {
    std::string session_id;
    std::string user;
    bool resumed = false;
};

using ClientEvent =
    std::variant<StatusChanged, RoomStatusChanged, MessageReceived, HistoryLost, PublishAcked,
                 PublishFailed, LatencySample, CredentialsNeeded, SessionStarted>;

struct ClientMetrics {
    std::uint64_t attempts = 0;     ///< connection attempts started
    std::uint64_t connects = 0;     ///< attempts that reached `connected`
    std::uint64_t reconnects = 0;   ///< connects after the first
    std::uint64_t link_losses = 0;  ///< established connections lost
    std::uint64_t heartbeat_timeouts = 0;
    std::uint64_t resumes_ok = 0;
    std::uint64_t resumes_failed = 0;
    std::uint64_t queued = 0;  ///< publishes accepted into the outbox
    std::uint64_t sent = 0;    ///< PUBLISH frames sent (including resends)
    std::uint64_t acked = 0;
    std::uint64_t dropped = 0;     ///< rejected, dropped, expired or NACKed for good
    std::uint64_t delivered = 0;   ///< events given to the application
    std::uint64_t replayed = 0;    ///< of which part of a catch-up
    std::uint64_t duplicates = 0;  ///< events discarded as already delivered
    std::uint64_t history_lost = 0;
    duration downtime{0};  ///< total time not connected after first connect
    duration last_time_to_reconnect{0};
    std::optional<duration> last_rtt;
};

struct PublishResult {
    bool accepted = false;
    std::string id;     ///< set when accepted
    std::string error;  ///< "outbox_full", "too_large", "invalid_data", "invalid_room"
};

struct RoomInfo {
    std::string room;
    RoomState state = RoomState::connecting;
    std::optional<proto::StreamPosition> position;  ///< last delivered, once joined
};

/// What a client must keep across a process restart to lose nothing and send
/// nothing twice: the unacknowledged outbox (with the publish ids the server
/// deduplicates on) and the last delivered position of every room.
/// `tether::Client` saves it to a file (ClientOptions::state_file).
struct ClientSnapshot {
    struct Pending {
        std::string id;
        std::string room;
        std::string data;
        friend bool operator==(const Pending&, const Pending&) = default;
    };
    struct RoomPosition {
        std::string room;
        std::optional<proto::StreamPosition> position;  ///< unset: never delivered anything
        friend bool operator==(const RoomPosition&, const RoomPosition&) = default;
    };
    std::string id_prefix;           ///< publish ids continue after a restart
    std::uint64_t next_publish = 1;  ///< next publish id counter
    std::vector<Pending> outbox;     ///< oldest first
    std::vector<RoomPosition> rooms;
    friend bool operator==(const ClientSnapshot&, const ClientSnapshot&) = default;
};

class ClientCore {
  public:
    explicit ClientCore(ClientConfig config);
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
    void provide_credentials(time_point now, std::string token);
    void credentials_failed(time_point now, std::string reason);

    /// Tracks a room; joins now or when connected. Empty string on success,
    /// else "invalid_room" or "too_many_rooms".
    std::string join(time_point now, std::string room);
    void leave(time_point now, std::string_view room);
    /// Queues `data` (one JSON value) for `room`; sent when connected.
    PublishResult publish(time_point now, std::string room, std::string data);

    // ---- driver inputs ----
    void handle_open(time_point now, std::uint64_t conn);
    void handle_message(time_point now, std::uint64_t conn, std::string_view text);
    /// The connection ended (or could not be opened: use 1006).
    void handle_close(time_point now, std::uint64_t conn, std::uint16_t code,
                      std::string_view reason);
    void handle_timeout(time_point now);

    // ---- outputs ----
    std::optional<Transmit> poll_transmit();
    std::optional<ClientEvent> poll_event();
    std::optional<time_point> poll_timeout() const;

    // ---- persistence ----
    /// The state to save (cheap: copies the outbox and the room positions).
    ClientSnapshot snapshot() const;
    /// Restores a snapshot before the first connect(). Rooms are tracked again
    /// and rejoined from their positions; the outbox is resent with its
    /// original ids, so the server's dedupe window makes each message count
    /// once. Returns an error (and changes nothing) when called after
    /// connect(), when rooms or messages already exist, or when the snapshot
    /// breaks a limit of the config (room names, data, outbox bounds).
    /// Restored messages get a fresh message_ttl counted from `now`.
    std::optional<std::string> restore(time_point now, const ClientSnapshot& snap);
    /// Grows by one whenever snapshot() would answer something new.
    std::uint64_t state_version() const noexcept { return state_version_; }

    // ---- state ----
    const Observable<ClientStatus>& status() const noexcept { return status_; }
    const ClientMetrics& metrics() const noexcept { return metrics_; }
    std::vector<RoomInfo> rooms() const;
    std::size_t pending() const noexcept { return outbox_.size(); }
    /// Id of the live connection, if any (for drivers and tests).
    std::optional<std::uint64_t> connection() const noexcept;
    const ClientConfig& config() const noexcept { return config_; }

  private:
    enum class Stage : std::uint8_t {
        credentials,
        opening,
        hello,
        authenticating,
        syncing,
        established
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
        bool ever_sent = false;
    };
    struct Conn {
        std::uint64_t id = 0;
        Stage stage = Stage::credentials;
        time_point deadline{};  ///< of the current stage (none when established)
        bool resuming = false;
        duration heartbeat_interval{0};
        std::optional<time_point> next_heartbeat;
        std::optional<time_point> ack_deadline;
        std::int64_t heartbeat_ts = 0;
    };
    struct Closing {
        std::uint64_t id = 0;
        time_point deadline{};
    };

    // connection lifecycle
    void start_attempt(time_point now);
    void on_link_lost(time_point now, std::uint16_t code, std::string_view reason, bool from_peer);
    void schedule_retry(time_point now);
    void escalate(time_point now);
    void note_established_lost(time_point now);
    void fail_link(time_point now, std::uint16_t code, std::string reason);
    void enter_error(StopReason r);
    void send(proto::Message m);
    void abort_closing();

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
    void maybe_finish_sync(time_point now);
    void flush_outbox(time_point now);
    void expire_outbox(time_point now);
    void fail_entry(std::size_t index, std::string code, std::string reason);
    bool authenticated() const noexcept;
    bool established() const noexcept;
    Room* find_room(std::string_view name);

    void refresh(time_point now);
    ClientStatus derive_status() const;
    RoomState derive_room_state(const Room& r) const;
    void emit(ClientEvent e);

    ClientConfig config_;
    Rng rng_;
    Backoff backoff_;
    std::string id_prefix_;
    std::uint64_t next_publish_ = 1;
    std::uint64_t next_conn_ = 1;

    bool want_connected_ = false;
    bool online_ = true;
    StopReason stop_reason_ = StopReason::not_started;
    bool error_ = false;
    bool escalating_ = false;      ///< this attempt is the one re-identify
    bool need_refresh_ = false;    ///< next credentials request asks for a fresh token
    bool connected_once_ = false;  ///< since the last connect()
    std::uint32_t attempts_since_connect_ = 0;
    std::uint32_t outage_attempts_ = 0;  ///< attempts since the last established connection
    StopReason escalation_cause_ = StopReason::auth_failed;
    std::optional<duration> pending_retry_after_;  ///< from RECONNECT, applied to the next delay
    std::optional<time_point> retry_at_;
    std::optional<Conn> conn_;
    std::optional<Closing> closing_;
    std::optional<std::string> pending_token_;
    std::optional<time_point> lost_at_;  ///< start of the current outage
    std::uint16_t last_close_code_ = 0;
    std::string last_close_reason_;

    struct Session {
        std::string id;
        std::string resume_token;
        std::string user;
    };
    std::optional<Session> session_;

    std::map<std::string, Room, std::less<>> rooms_;
    std::deque<OutboxEntry> outbox_;
    std::size_t outbox_bytes_ = 0;
    std::size_t sending_done_ = 0;
    std::size_t sending_total_ = 0;

    std::uint64_t state_version_ = 0;
    std::deque<Transmit> transmits_;
    std::deque<ClientEvent> events_;
    Observable<ClientStatus> status_;
    ClientMetrics metrics_;
};

}  // namespace tether
