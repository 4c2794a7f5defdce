#pragma once
/// @file
/// The sans-I/O state machine of `tether::ReconnectingWebSocket`: a
/// reconnecting WebSocket for *any* server, without the tether protocol
/// (seed 003).
///
/// It shares the client's rules where they apply -- the same `Backoff`, the
/// same fatal classification by close code or reason, the same offline
/// handling, bounded outbound queue and close timeout -- and adds what
/// third-party servers need:
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

#include <tether/core/backoff.hpp>
#include <tether/core/client_core.hpp>
#include <tether/core/observable.hpp>
#include <tether/core/random.hpp>
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
    std::string data;
    bool binary = false;
    friend bool operator==(const SocketMessage&, const SocketMessage&) = default;
};

struct SocketConfig {
    BackoffPolicy backoff;
    std::uint64_t seed = 1;         ///< jitter
    duration open_timeout{10'000};  ///< TCP + TLS + WebSocket handshake
    duration close_timeout{2'000};  ///< close handshake, then hard teardown
    /// Close codes received from the server that stop retrying.
    std::vector<std::uint16_t> fatal_codes{1008, 4003, 4004};
    std::vector<std::string> fatal_reasons;  ///< substrings of a close reason that are fatal

    std::optional<SocketMessage> auth_message;  ///< sent first on every connect
    /// Wait for handle_auth_reply() (the driver validates the first replies)
    /// before subscriptions and the queue; also for servers that greet first.
    bool await_auth_reply = false;
    duration auth_timeout{10'000};
    std::vector<SocketMessage> subscriptions;  ///< sent after auth on every connect

    LivenessMode liveness = LivenessMode::ws_ping;
    duration ping_interval{15'000};
    duration pong_timeout{10'000};
    std::string ping_payload = "ping";  ///< the ws ping payload, or the app message

    std::size_t queue_count_max = 1000;  ///< messages kept while not connected
    std::size_t queue_bytes_max = 4u << 20;
    OverflowPolicy overflow = OverflowPolicy::reject_new;
    std::size_t message_bytes_max = 16u << 20;  ///< larger sends are refused ("too_large")
    bool reset_backoff_on_online = true;

    std::optional<std::string> validate() const;
};

struct SocketStatus {
    ConnState state = ConnState::disconnected;
    StopReason reason = StopReason::not_started;
    std::uint32_t attempt = 0;
    std::optional<time_point> next_retry_at;
    std::uint16_t close_code = 0;
    std::string close_reason;
    std::size_t queued = 0;
    bool online = true;
    friend bool operator==(const SocketStatus&, const SocketStatus&) = default;
};

/// One line for humans, e.g. "reconnecting (attempt 3, next in 2.1 s)".
std::string describe(const SocketStatus& s, time_point now);

/// An instruction for the driver.
struct SocketTransmit {
    enum class Kind : std::uint8_t {
        open,   ///< connect `conn` (TCP, TLS, WebSocket handshake with the configured headers)
        send,   ///< send `message` on `conn`
        ping,   ///< send an RFC 6455 ping with `message.data` as payload
        close,  ///< start a close handshake with code/reason
        abort,  ///< tear `conn` down now
    };
    Kind kind = Kind::send;
    std::uint64_t conn = 0;
    SocketMessage message;
    std::uint16_t code = 0;
    std::string reason;
};

struct SocketStatusChanged {
    SocketStatus status;
};
struct SocketReceived {
    SocketMessage message;
};
/// A queued message that will never be sent ("dropped": queue overflow with
/// drop_oldest; "closed": close() discarded the queue).
struct SocketDropped {
    SocketMessage message;
    std::string code;
};
struct SocketLatency {
    duration rtt{0};
};
using SocketEvent = std::variant<SocketStatusChanged, SocketReceived, SocketDropped, SocketLatency>;

struct SocketMetrics {
    std::uint64_t attempts = 0;
    std::uint64_t connects = 0;
    std::uint64_t link_losses = 0;
    std::uint64_t liveness_timeouts = 0;
    std::uint64_t auth_failures = 0;
    std::uint64_t sent = 0;
    std::uint64_t received = 0;
    std::uint64_t dropped = 0;  ///< refused or dropped sends
    std::optional<duration> last_rtt;
};

class SocketCore {
  public:
    explicit SocketCore(SocketConfig config);
    SocketCore(const SocketCore&) = delete;
    SocketCore& operator=(const SocketCore&) = delete;

    // ---- application commands ----
    void connect(time_point now, bool reset_backoff = false);
    void retry_now(time_point now);
    /// Closes with 1000, stops reconnecting; queued messages are kept unless
    /// `discard_queue` (then each is reported as SocketDropped "closed").
    void close(time_point now, bool discard_queue = false);
    void set_online(time_point now, bool online);
    /// Sends now when connected, else queues. Empty string when accepted, else
    /// "queue_full" or "too_large".
    std::string send(time_point now, SocketMessage m);
    /// Replaces the auth message for the next connects (a fresh signature,
    /// say); nullopt sends none. Takes effect at the next handle_open.
    void set_auth_message(std::optional<SocketMessage> m) { config_.auth_message = std::move(m); }
    /// Sends at once if a socket is open (even before `connected`), never
    /// queued: replies to the server's application-level pings.
    void reply(time_point now, SocketMessage m);

    // ---- driver inputs ----
    void handle_open(time_point now, std::uint64_t conn);
    void handle_message(time_point now, std::uint64_t conn, SocketMessage m);
    /// A pong frame (ws_ping) or a message the pong matcher accepted (app_message).
    void handle_pong(time_point now, std::uint64_t conn);
    /// The validator's verdict on the reply to the auth message.
    void handle_auth_reply(time_point now, std::uint64_t conn, bool ok, std::string_view why = {});
    void handle_close(time_point now, std::uint64_t conn, std::uint16_t code,
                      std::string_view reason);
    void handle_timeout(time_point now);

    // ---- outputs ----
    std::optional<SocketTransmit> poll_transmit();
    std::optional<SocketEvent> poll_event();
    std::optional<time_point> poll_timeout() const;

    // ---- state ----
    const Observable<SocketStatus>& status() const noexcept { return status_; }
    const SocketMetrics& metrics() const noexcept { return metrics_; }
    /// True while `conn` waits for the reply to the auth message.
    bool awaiting_auth(std::uint64_t conn) const noexcept;
    std::optional<std::uint64_t> connection() const noexcept;
    const SocketConfig& config() const noexcept { return config_; }

  private:
    enum class Stage : std::uint8_t { opening, authenticating, established };
    struct Conn {
        std::uint64_t id = 0;
        Stage stage = Stage::opening;
        time_point deadline{};
        std::optional<time_point> next_ping;
        std::optional<time_point> pong_deadline;
        time_point ping_sent_at{};
    };
    struct Closing {
        std::uint64_t id = 0;
        time_point deadline{};
    };

    void start_attempt(time_point now);
    void fail_link(time_point now, std::uint16_t code, std::string reason);
    void on_link_lost(time_point now, std::uint16_t code, std::string_view reason, bool from_peer);
    void establish(time_point now);
    void transmit_send(const SocketMessage& m);
    void abort_closing();
    bool is_fatal(std::uint16_t code, std::string_view reason) const;
    void refresh();
    SocketStatus derive_status() const;

    SocketConfig config_;
    Rng rng_;
    Backoff backoff_;
    std::uint64_t next_conn_ = 1;
    bool want_connected_ = false;
    bool online_ = true;
    bool error_ = false;
    StopReason stop_reason_ = StopReason::not_started;
    bool connected_once_ = false;
    std::uint32_t outage_attempts_ = 0;
    std::optional<time_point> retry_at_;
    std::optional<Conn> conn_;
    std::optional<Closing> closing_;
    std::uint16_t last_close_code_ = 0;
    std::string last_close_reason_;
    std::deque<SocketMessage> queue_;
    std::size_t queue_bytes_ = 0;
    std::deque<SocketTransmit> transmits_;
    std::deque<SocketEvent> events_;
    Observable<SocketStatus> status_;
    SocketMetrics metrics_;
};

}  // namespace tether
