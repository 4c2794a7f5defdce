#pragma once
/// @file
/// The reconnect lifecycle shared by both sans-I/O client cores
/// (`ClientCore` for the tether protocol, `SocketCore` for any WebSocket
/// server): one attempt at a time, backoff with the stable-period reset,
/// closing with a bounded teardown, fatal classification by close code,
/// close reason or certificate failure, offline/online, the connection
/// status and its description, and the one timer table of the core.
///
/// A core owns one `Reconnector` and implements `ReconnectHooks`: the
/// reconnector asks it to begin each attempt and tells it when the attempt's
/// link was lost; the core says when its socket should open, when the
/// attempt is established, and what to do after a loss (retry, stop,
/// escalate). docs/DESIGN.md, "One reconnect machine".
///
/// @par Thread safety
/// Distinct objects: safe. Shared objects: unsafe (it lives inside a core).

#include <tether/core/backoff.hpp>
#include <tether/core/error.hpp>
#include <tether/core/random.hpp>
#include <tether/core/time.hpp>
#include <tether/core/timer_table.hpp>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace tether {

/// Top-level connection state (docs/PROTOCOL.md, "Client states").
enum class ConnState : std::uint8_t { connecting, connected, reconnecting, disconnected, error };

/// Why a client is disconnected or in error.
enum class StopReason : std::uint8_t {
    none,
    not_started,   ///< connect() not called yet
    manual,        ///< close() was called, or the backoff strategy is `never`
    offline,       ///< the environment is offline; resumes by itself
    fatal,         ///< a fatal close code or reason
    max_attempts,  ///< attempts_max exhausted (and, for tether, re-authentication failed)
    auth_failed,   ///< credentials rejected (re-authentication failed, or the auth reply refused)
    certificate,   ///< the server's TLS certificate failed verification
};

/// "connecting", "connected", ...
[[nodiscard]] std::string_view to_string(ConnState s) noexcept;
/// "closed by the application", "fatal close", ...
[[nodiscard]] std::string_view to_string(StopReason r) noexcept;
/// Stable identifiers for scripts and JSON ("max_attempts", "certificate").
[[nodiscard]] std::string_view to_id(StopReason r) noexcept;

/// The options of the lifecycle, shared by ClientConfig and SocketConfig.
struct ReconnectConfig {
    /// Reconnect policy: 0.5 s x2 up to 15 s, +/-25 % jitter after the cap.
    BackoffPolicy backoff;
    /// Jitter seed (and, for tether, the publish-id prefix). The core uses it
    /// as given, 0 included; the network clients replace 0 by a seed drawn
    /// from the OS.
    std::uint64_t seed = 0;
    duration open_timeout{10'000};  ///< TCP + TLS + WebSocket handshake
    duration close_timeout{2'000};  ///< close handshake, then hard teardown
    /// Close codes received from the server that stop retrying. Each core
    /// sets its own default (ClientConfig, SocketConfig).
    std::vector<std::uint16_t> fatal_codes;
    /// Substrings of a received close reason that stop retrying.
    std::vector<std::string> fatal_reasons;
    /// Coming back online resets the attempt counter.
    bool reset_backoff_on_online = true;
    /// A certificate that fails verification (unknown issuer, wrong host
    /// name, expired) stops retrying with StopReason::certificate unless
    /// this is set (deployments that expect the certificate to be fixed).
    bool retry_certificate_errors = false;

    /// The first invalid field, as an error::invalid_config.
    [[nodiscard]] result<void, Error> validate() const;
};

/// The status both clients report (ClientStatus and SocketStatus extend it).
struct ConnectionStatus {
    ConnState state = ConnState::disconnected;    ///< the top-level state
    StopReason reason = StopReason::not_started;  ///< why it is disconnected or in error
    std::uint32_t attempt = 0;                    ///< current attempt within this outage
    std::optional<time_point> next_retry_at;      ///< set while waiting to retry
    /// Last close code: the one received or sent, or 1006 when the link
    /// failed without a close frame (0: none yet).
    std::uint16_t close_code = 0;
    std::string close_reason;  ///< its reason, or what failed
    std::error_code error;     ///< the link failure, when there was no close frame
    bool online = true;        ///< false while the host is offline
    friend bool operator==(const ConnectionStatus&, const ConnectionStatus&) = default;
};

/// One line for humans: "reconnecting (attempt 3, next in 2.1 s)",
/// "disconnected: fatal close (close 4004 authentication failed)".
/// `phase` is shown while an attempt is in progress ("opening").
[[nodiscard]] std::string describe(const ConnectionStatus& s, time_point now,
                                   std::string_view phase = {});

/// A close frame: code and reason.
struct CloseFrame {
    std::uint16_t code = 0;  ///< the close code
    std::string reason;      ///< its reason (at most 123 bytes)
    friend bool operator==(const CloseFrame&, const CloseFrame&) = default;
};

/// How a link ended, as the link saw it (reported by the driver). A close
/// frame received from the server is authoritative: when `frame` is set,
/// its code and reason decide what happens next even if the connection was
/// reset right after it.
struct LinkClose {
    std::optional<CloseFrame> frame;  ///< the peer's close frame, if one arrived
    std::error_code error;            ///< the transport failure (none after a clean close)
    std::string detail;               ///< what failed, for humans ("connection refused")

    /// The peer closed with `code` and `reason`.
    [[nodiscard]] static LinkClose closed(std::uint16_t code, std::string reason) {
        return LinkClose{CloseFrame{code, std::move(reason)}, {}, {}};
    }
    /// The link failed without a close frame.
    [[nodiscard]] static LinkClose failed(std::error_code e, std::string detail = {}) {
        return LinkClose{std::nullopt, e, std::move(detail)};
    }
};

/// An instruction for the driver, from either core.
struct Transmit {
    /// What to do.
    enum class Kind : std::uint8_t {
        open,   ///< open connection `conn` (connect + TLS + WebSocket handshake)
        send,   ///< send `data` on `conn` (binary: a binary frame, else text)
        ping,   ///< send an RFC 6455 ping with `data` as payload
        close,  ///< start a close handshake on `conn` with code/reason
        abort,  ///< tear `conn` down now, without a handshake
    };
    Kind kind = Kind::send;  ///< what to do
    std::uint64_t conn = 0;  ///< which connection (the core's id)
    std::string data;        ///< send: the payload; ping: the ping payload
    bool binary = false;     ///< send: a binary frame
    std::uint16_t code = 0;  ///< close: the close code
    std::string reason;      ///< close: the close reason
};

/// The deadlines of a client core, in the order handle_timeout() serves them.
enum class Timer : std::uint8_t {
    status,     ///< Observable waiters of the status
    teardown,   ///< a closing socket's close handshake
    retry,      ///< the next attempt
    attempt,    ///< the current attempt's stage (open, auth, sync, ...)
    liveness,   ///< heartbeat ack or pong due
    heartbeat,  ///< next heartbeat or ping
    join,       ///< the earliest JOIN retry or JOIN answer due (tether)
    outbox,     ///< the earliest message expiry or rate-limit hold (tether)
    count_,
};

/// Verdict on a lost link (Reconnector::classify).
enum class LossKind : std::uint8_t {
    transient,    ///< reconnect with backoff
    fatal_close,  ///< a fatal close code or reason from the server
    certificate,  ///< certificate verification failed (and retries are off)
};

/// What the core does for the lifecycle.
class ReconnectHooks {
  public:
    virtual ~ReconnectHooks() = default;
    /// Starts attempt `conn` (request credentials, or Reconnector::open_socket()).
    virtual void begin_attempt(time_point now, std::uint64_t conn) = 0;
    /// The current attempt ended: the core resets what belonged to it and
    /// decides what follows (Reconnector::classify, schedule_retry, stop).
    /// `from_peer`: the link reported it (else the core itself failed it);
    /// `established`: the attempt had reached `connected`.
    virtual void link_lost(time_point now, const LinkClose& why, bool from_peer,
                           bool established) = 0;
};

/// The lifecycle shared by ClientCore and SocketCore: see this file's description.
class Reconnector {
  public:
    /// `config` and `hooks` must outlive the reconnector (both are the core's).
    Reconnector(const ReconnectConfig& config, ReconnectHooks& hooks);
    ~Reconnector() = default;
    Reconnector(const Reconnector&) = delete;
    Reconnector& operator=(const Reconnector&) = delete;

    // ---- the application's commands ----
    /// Wants to be connected; attempts now unless one is alive or offline.
    void connect(time_point now, bool reset_backoff);
    /// Like connect(), also out of an error or fatal stop, without resetting
    /// the counters of the outage.
    void retry_now(time_point now);
    /// Stops wanting to be connected; closes the live attempt with `code`.
    void close(time_point now, std::uint16_t code, std::string reason);
    /// Offline fails the attempt (1001) and pauses retries; online attempts at once.
    void set_online(time_point now, bool online);

    // ---- the attempt, driven by the core ----
    /// Starts an attempt now (escalation); requires active() and none alive.
    void start_attempt(time_point now);
    /// Asks the driver to open the current attempt's socket; arms the open timeout.
    void open_socket(time_point now);
    /// The driver opened `conn`. True when it is the current attempt and was
    /// opening; a stale socket is aborted instead.
    [[nodiscard]] bool handle_open(std::uint64_t conn);
    /// True when inputs of `conn` may reach the session (current, socket open).
    [[nodiscard]] bool accepts(std::uint64_t conn) const noexcept;
    /// The current attempt's stage deadline: at `at`, fail it with `why`.
    void set_deadline(time_point at, error why, std::string text);
    /// No stage deadline for the current attempt.
    void clear_deadline() noexcept;
    /// The attempt reached `connected`.
    void established(time_point now);
    /// Fails the current attempt from our side (timeout, protocol violation,
    /// offline): close with code/reason, or abort a socket not open yet.
    void fail(time_point now, std::uint16_t code, std::string reason, std::error_code why);
    /// The driver reports the end of `conn`.
    void handle_close(time_point now, std::uint64_t conn, const LinkClose& why);
    /// Serves `t` if it is one of the lifecycle's own timers (teardown,
    /// retry, attempt); false for the core's timers, which the core serves.
    [[nodiscard]] bool handle_timer(time_point now, Timer t);

    // ---- after a loss (the core's link_lost) ----
    /// What a loss means: transient, a fatal close, a certificate failure.
    [[nodiscard]] LossKind classify(const LinkClose& why, bool from_peer) const;
    /// Schedules the next attempt; false when the backoff is exhausted
    /// (`attempts_max`, or the `never` strategy).
    [[nodiscard]] bool schedule_retry(time_point now);
    /// The next schedule_retry() waits `d` (capped), e.g. a server's RECONNECT hint.
    void set_retry_after(duration d) noexcept { pending_retry_after_ = d; }
    /// Stops for good until the application calls connect()/retry_now().
    void stop(StopReason r) noexcept;
    /// Stops in the `error` state.
    void enter_error(StopReason r) noexcept;

    // ---- state ----
    /// Wants to be connected, is online and not in error.
    [[nodiscard]] bool active() const noexcept { return want_ && online_ && !error_; }
    /// The application wants to be connected.
    [[nodiscard]] bool wants_connection() const noexcept { return want_; }
    /// The host is online (as far as the core was told).
    [[nodiscard]] bool online() const noexcept { return online_; }
    /// In the `error` state.
    [[nodiscard]] bool in_error() const noexcept { return error_; }
    /// Why it stopped (or none).
    [[nodiscard]] StopReason stop_reason() const noexcept { return stop_; }
    /// connect() was called at least once.
    [[nodiscard]] bool started() const noexcept { return stop_ != StopReason::not_started; }
    /// True when the application stopped it or it stopped for good.
    [[nodiscard]] bool stopped() const noexcept { return !want_; }
    /// The live attempt's id (also while it waits for credentials).
    [[nodiscard]] std::optional<std::uint64_t> current() const noexcept;
    /// The live attempt has a socket (requested or open).
    [[nodiscard]] bool socket_requested() const noexcept;
    /// The current attempt reached `connected`.
    [[nodiscard]] bool is_established() const noexcept { return attempt_ && attempt_->established; }
    /// A connection reached `connected` since the last connect() from a stop.
    [[nodiscard]] bool connected_once() const noexcept { return connected_once_; }
    /// Attempts in the current outage (since the last established connection).
    [[nodiscard]] std::uint32_t outage_attempts() const noexcept { return outage_attempts_; }
    /// The base status; cores add their fields.
    [[nodiscard]] ConnectionStatus status() const;

    /// The core's timer table (the lifecycle's slots and the core's own).
    TimerTable<Timer>& timers() noexcept { return timers_; }
    /// The core's timer table.
    const TimerTable<Timer>& timers() const noexcept { return timers_; }
    /// The earliest deadline.
    [[nodiscard]] std::optional<time_point> poll_timeout() const noexcept { return timers_.next(); }
    /// The core's random source (jitter, ids).
    Rng& rng() noexcept { return rng_; }
    /// The reconnect backoff.
    Backoff& backoff() noexcept { return backoff_; }

    // ---- transmits ----
    /// Queues a frame on the live attempt.
    void send(std::string data, bool binary = false);
    /// Queues a transmit.
    void push(Transmit t);
    /// The next transmit for the driver.
    [[nodiscard]] std::optional<Transmit> poll_transmit();
    /// Transmits queued.
    [[nodiscard]] std::size_t transmits_queued() const noexcept { return transmits_.size(); }

  private:
    enum class Socket : std::uint8_t { none, opening, open };
    struct Attempt {
        std::uint64_t id = 0;
        Socket socket = Socket::none;
        bool established = false;
        error deadline_error = error::open_timeout;
        std::string deadline_text;
    };
    struct Closing {
        std::uint64_t id = 0;
    };

    void begin(time_point now);
    void abort_closing();
    void lost(time_point now, const LinkClose& why, bool from_peer);
    void record(const LinkClose& why);

    const ReconnectConfig& config_;
    ReconnectHooks& hooks_;
    Rng rng_;
    Backoff backoff_;
    TimerTable<Timer> timers_;
    std::deque<Transmit> transmits_;
    std::uint64_t next_conn_ = 1;
    bool want_ = false;
    bool online_ = true;
    bool error_ = false;
    StopReason stop_ = StopReason::not_started;
    bool connected_once_ = false;  ///< since the last connect() from a stop
    std::uint32_t attempts_since_connect_ = 0;
    std::uint32_t outage_attempts_ = 0;
    std::optional<duration> pending_retry_after_;
    std::optional<Attempt> attempt_;
    std::optional<Closing> closing_;
    std::uint16_t last_close_code_ = 0;
    std::string last_close_reason_;
    std::error_code last_error_;
};

}  // namespace tether
