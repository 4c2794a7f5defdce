#pragma once
/// @file
/// The sans-I/O state machine of `tether::ReconnectingWebSocket`: a
/// reconnecting WebSocket for *any* server, without the tether protocol
/// (docs/DESIGN.md, "ReconnectingWebSocket").
///
/// It shares the client's lifecycle (the Reconnector: backoff, fatal
/// classification by close code, reason or certificate, offline handling,
/// the close timeout, the timer table) and adds what third-party servers
/// need:
///
/// - an auth message sent first on every connect, optionally waiting for a
///   reply that the driver validates (`handle_auth_reply`);
/// - subscription messages re-sent after auth on every connect;
/// - liveness by RFC 6455 ping frames (default) or by an application
///   payload whose answer the driver recognises (`handle_pong`);
/// - a queue of outbound messages kept while disconnected and flushed, in
///   order, after the subscriptions.
///
/// Delivery is at-most-once per message once written to a socket: there is no
/// acknowledgement in a generic protocol, so a message written just before a
/// drop may be lost. Messages still queued when the link drops are kept.
///
/// Connect order: open -> auth (-> wait for a valid reply) -> subscriptions
/// -> queued messages -> status `connected`.
///
/// @par Thread safety
/// Distinct objects: safe. Shared objects: unsafe (drive it from one strand).

#include <tether/core/client_core.hpp>
#include <tether/core/error.hpp>
#include <tether/core/observable.hpp>
#include <tether/core/reconnector.hpp>
#include <tether/core/time.hpp>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace tether {

/// How a ReconnectingWebSocket checks that the link is alive.
enum class LivenessMode : std::uint8_t {
    ws_ping,      ///< RFC 6455 ping frames; any pong counts
    app_message,  ///< send `ping_payload` as a text frame; the driver reports matching replies
    none,         ///< no liveness checks (only TCP and the server notice a dead link)
};

/// An outbound message of a generic socket.
struct SocketMessage {
    std::string data;     ///< the payload
    bool binary = false;  ///< true: a binary frame, false: text
    friend bool operator==(const SocketMessage&, const SocketMessage&) = default;
};

/// The options of a SocketCore; ReconnectingWebSocketOptions extends it.
struct SocketConfig : ReconnectConfig {
    /// Fatal close codes: 1008, 4003, 4004.
    SocketConfig();

    std::optional<SocketMessage> auth_message;  ///< sent first on every connect
    /// Wait for handle_auth_reply() (the driver validates the first replies)
    /// before subscriptions and the queue; also for servers that greet first.
    bool await_auth_reply = false;
    duration auth_timeout{10'000};             ///< the auth reply must come within this
    std::vector<SocketMessage> subscriptions;  ///< sent after auth on every connect

    LivenessMode liveness = LivenessMode::ws_ping;  ///< how the link is checked
    duration ping_interval{15'000};                 ///< a ping this often
    duration pong_timeout{10'000};      ///< its answer within this, else the link is replaced
    std::string ping_payload = "ping";  ///< the ws ping payload, or the app message

    std::size_t queue_count_max = 1000;                    ///< messages kept while not connected
    std::size_t queue_bytes_max = 4u << 20;                ///< bytes kept while not connected
    OverflowPolicy overflow = OverflowPolicy::reject_new;  ///< what a send beyond the bounds does
    std::size_t message_bytes_max = 16u << 20;  ///< larger sends are refused (error::too_large)

    /// The first invalid field (error::invalid_config).
    [[nodiscard]] result<void, Error> validate() const;
};

/// The status of a SocketCore.
struct SocketStatus : ConnectionStatus {
    std::size_t queued = 0;  ///< messages waiting for `connected`
    friend bool operator==(const SocketStatus&, const SocketStatus&) = default;
};

/// One line for humans, e.g. "reconnecting (attempt 3, next in 2.1 s), 2 queued".
[[nodiscard]] std::string describe(const SocketStatus& s, time_point now);

/// The socket's status changed.
struct SocketStatusChanged {
    SocketStatus status;  ///< the new status
};
/// A message arrived.
struct SocketReceived {
    SocketMessage message;  ///< the message
};
/// A queued message that will never be sent: error::dropped (queue overflow
/// with drop_oldest) or error::client_closed (close() discarded the queue).
struct SocketDropped {
    SocketMessage message;  ///< the message
    std::error_code error;  ///< dropped or client_closed
};
/// A ping round trip was measured.
struct SocketLatency {
    duration rtt{0};  ///< the round-trip time
};
/// Everything SocketCore::poll_event() can return.
using SocketEvent = std::variant<SocketStatusChanged, SocketReceived, SocketDropped, SocketLatency>;

/// Counters of a socket since it was created.
struct SocketMetrics {
    std::uint64_t attempts = 0;           ///< connection attempts started
    std::uint64_t connects = 0;           ///< attempts that reached `connected`
    std::uint64_t link_losses = 0;        ///< established connections lost
    std::uint64_t liveness_timeouts = 0;  ///< links replaced because no pong came
    std::uint64_t auth_failures = 0;      ///< auth replies refused
    std::uint64_t sent = 0;               ///< messages written
    std::uint64_t received = 0;           ///< messages received
    std::uint64_t dropped = 0;            ///< refused or dropped sends
    std::optional<duration> last_rtt;     ///< the last ping round trip
};

/// The sans-I/O reconnecting WebSocket for any server: see this file's description.
class SocketCore final : private ReconnectHooks {
  public:
    /// Throws std::invalid_argument when the config does not validate().
    explicit SocketCore(SocketConfig config);
    ~SocketCore() override = default;
    SocketCore(const SocketCore&) = delete;
    SocketCore& operator=(const SocketCore&) = delete;

    // ---- application commands ----
    /// Starts connecting (or, when waiting to retry, tries at once).
    void connect(time_point now, bool reset_backoff = false);
    /// Attempts now unless an attempt is in flight; also leaves a fatal or error state.
    void retry_now(time_point now);
    /// Closes with 1000, stops reconnecting; queued messages are kept unless
    /// `discard_queue` (then each is reported as SocketDropped "closed").
    void close(time_point now, bool discard_queue = false);
    /// Offline closes the socket (1001) and pauses retries; online attempts at once.
    void set_online(time_point now, bool online);
    /// Sends now when connected, else queues. Errors: queue_full, too_large.
    [[nodiscard]] result<void> send(time_point now, SocketMessage m);
    /// Replaces the auth message for the next connects (a fresh signature,
    /// say); nullopt sends none. Takes effect at the next handle_open.
    void set_auth_message(std::optional<SocketMessage> m) { config_.auth_message = std::move(m); }
    /// Sends at once if a socket is open (even before `connected`), never
    /// queued: replies to the server's application-level pings.
    void reply(time_point now, const SocketMessage& m);

    // ---- driver inputs ----
    /// The driver opened connection `conn`.
    void handle_open(time_point now, std::uint64_t conn);
    /// A message arrived on `conn`.
    void handle_message(time_point now, std::uint64_t conn, SocketMessage m);
    /// A pong frame (ws_ping) or a message the pong matcher accepted (app_message).
    void handle_pong(time_point now, std::uint64_t conn);
    /// The validator's verdict on the reply to the auth message.
    void handle_auth_reply(time_point now, std::uint64_t conn, bool ok, std::string_view why = {});
    /// The connection ended: the close frame received, or how the link failed.
    void handle_close(time_point now, std::uint64_t conn, const LinkClose& why);
    /// Call at (or after) poll_timeout(): serves every timer due.
    void handle_timeout(time_point now);

    // ---- outputs ----
    /// The next instruction for the driver (drain until nullopt after every input).
    [[nodiscard]] std::optional<Transmit> poll_transmit();
    /// The next event for the application (drain until nullopt after every input).
    [[nodiscard]] std::optional<SocketEvent> poll_event();
    /// The earliest deadline of the timer table.
    [[nodiscard]] std::optional<time_point> poll_timeout() const;

    // ---- state ----
    /// The status, with subscriptions and waiters.
    const Observable<SocketStatus>& status() const noexcept { return status_; }
    /// Counters since creation.
    const SocketMetrics& metrics() const noexcept { return metrics_; }
    /// True while `conn` waits for the reply to the auth message.
    [[nodiscard]] bool awaiting_auth(std::uint64_t conn) const noexcept;
    /// Id of the live connection, if any.
    [[nodiscard]] std::optional<std::uint64_t> connection() const noexcept;
    /// The configuration in use.
    const SocketConfig& config() const noexcept { return config_; }
    /// Asserts the invariants (docs/DESIGN.md, "Assertions"); the handlers
    /// call it at entry and exit in builds with TETHER_INVARIANTS.
    void check_invariants() const;

  private:
    enum class Stage : std::uint8_t { opening, authenticating, established };
    struct Conn {
        std::uint64_t id = 0;
        Stage stage = Stage::opening;
        time_point ping_sent_at{};
    };

    // ReconnectHooks
    void begin_attempt(time_point now, std::uint64_t conn) override;
    void link_lost(time_point now, const LinkClose& why, bool from_peer, bool established) override;

    void on_timer(time_point now, Timer t);
    void establish(time_point now);
    void transmit_send(const SocketMessage& m);
    void refresh();
    [[nodiscard]] SocketStatus derive_status() const;

    SocketConfig config_;
    Reconnector rc_;
    std::optional<Conn> conn_;
    std::deque<SocketMessage> queue_;
    std::size_t queue_bytes_ = 0;
    std::deque<SocketEvent> events_;
    Observable<SocketStatus> status_;
    SocketMetrics metrics_;
};

}  // namespace tether
