#pragma once
/// @file
/// `tether::ReconnectingWebSocket`: a reconnecting WebSocket for any server
/// (exchanges, home automation, chat bridges).
///
/// The same backoff, fatal-close classification, offline handling and
/// bounded outbound queue as tether::Client, without the tether protocol:
/// on every connect it sends the auth message first (optionally waiting for a
/// reply your validator accepts), then the subscription messages, then what
/// was queued while disconnected. Liveness by RFC 6455 ping frames by default,
/// or by an application payload with a pong matcher; application-level pings
/// from the server can be answered passively.
///
/// Delivery is at-most-once per message once written to a socket: a generic
/// server sends no acknowledgements, so a message written just before a drop
/// may be lost. Use tether::Client where nothing may be lost.
///
/// @par Example
/// @code
/// tether::ReconnectingWebSocketOptions o;
/// o.url = "wss://stream.example.com/ws";
/// o.auth = [] { return tether::SocketMessage{R"({"op":"auth","key":"..."})"}; };
/// o.subscriptions = {{R"({"op":"subscribe","channel":"trades"})"}};
/// tether::ReconnectingWebSocket ws{o};
/// ws.on_message([](const tether::SocketMessage& m) { std::puts(m.data.c_str()); });
/// @endcode
///
/// @par Thread safety
/// Every public member function may be called from any thread; callbacks run
/// on the socket's strand, one at a time. No callback runs after the
/// destructor returned.

#include <tether/core/socket_core.hpp>
#include <tether/transport_options.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace tether {

/// Options of a tether::ReconnectingWebSocket: every option of the core
/// (SocketConfig: backoff, timeouts, fatal codes, auth, subscriptions,
/// liveness, queue bounds), how to reach the server (TransportOptions), and
/// the callbacks that need the network client. `auth_message` and
/// `await_auth_reply` are set from `auth` and `auth_validator`; `seed` 0
/// draws one from the OS.
struct ReconnectingWebSocketOptions : SocketConfig, TransportOptions {
    std::string subprotocol;  ///< Sec-WebSocket-Protocol, required from the server when set

    /// Produces the auth message for each connect (called on every attempt,
    /// so it can carry a fresh timestamp or token). Unset: no auth message.
    std::function<std::optional<SocketMessage>()> auth;
    /// When set, the socket waits for replies until one returns true (go
    /// on) or false (rejected: stop retrying, state `error`); nullopt means
    /// "not the auth reply", keep waiting (bounded by auth_timeout).
    std::function<std::optional<bool>(const SocketMessage&)> auth_validator;
    /// app_message mode: which incoming messages answer our ping (default:
    /// exactly "pong"). Matched messages are not passed to on_message.
    std::function<bool(const SocketMessage&)> pong_matcher;
    /// Passive replies to the server's application-level pings: return the
    /// reply, or nullopt for ordinary messages. Answered messages are not
    /// passed to on_message.
    std::function<std::optional<SocketMessage>(const SocketMessage&)> ping_responder;

    /// Handlers installed before the socket starts, so that none misses the
    /// first events (the on_*() setters may: the socket connects at once).
    std::function<void(const SocketMessage&)> on_message;
    std::function<void(const SocketStatus&)> on_status;  ///< status changes (the current one first)
    std::function<void(std::chrono::milliseconds rtt)> on_latency;  ///< each ping round trip
    /// A message that will not be sent: too_large, queue_full, dropped.
    std::function<void(const SocketMessage&, std::error_code error)> on_dropped;
};

/// The reconnecting WebSocket for any server: see this file's description.
class ReconnectingWebSocket {
  public:
    /// Runs on its own thread; starts connecting at once. Throws
    /// std::invalid_argument on invalid options.
    explicit ReconnectingWebSocket(ReconnectingWebSocketOptions options);
    /// Runs on `executor` (the application's io_context, say) through a strand.
    ReconnectingWebSocket(const boost::asio::any_io_executor& executor,
                          ReconnectingWebSocketOptions options);
    ~ReconnectingWebSocket();
    ReconnectingWebSocket(const ReconnectingWebSocket&) = delete;
    ReconnectingWebSocket& operator=(const ReconnectingWebSocket&) = delete;

    /// Sends now when connected, else queues (bounded). A refused or dropped
    /// message is reported to on_dropped (queue_full, too_large, dropped).
    void send(std::string text);
    /// Like send(), as a binary frame.
    void send_binary(std::string data);

    /// Each message from the server (pongs, auth replies and answered pings excepted).
    void on_message(std::function<void(const SocketMessage&)> f);
    /// Called at once with the current status, then on every change.
    void on_status(std::function<void(const SocketStatus&)> f);
    /// Each ping round trip.
    void on_latency(std::function<void(std::chrono::milliseconds)> f);
    /// Each message that will not be sent, with why.
    void on_dropped(std::function<void(const SocketMessage&, std::error_code error)> f);

    /// Blocks until connected (true), the timeout passes, or the socket
    /// stopped for good (false).
    [[nodiscard]] bool wait_connected(std::chrono::milliseconds timeout);
    /// The current status.
    SocketStatus status() const;
    /// The status for humans: "reconnecting (attempt 2, next in 1.4 s), 3 queued".
    std::string status_line() const;
    /// Counters since creation.
    SocketMetrics metrics() const;
    /// Blocks until every message sent before the call left the queue
    /// (written to a socket) or was dropped (true), or the timeout passed.
    [[nodiscard]] bool flush(std::chrono::milliseconds timeout);

    /// Attempt now (leaves a fatal or error state too).
    void retry_now();
    /// Starts again after close() or a fatal stop.
    void connect(bool reset_backoff = false);
    /// Closes (1000) and stops reconnecting; queued messages are kept.
    void close();
    /// Tells the socket the network is down/up.
    void set_online(bool online);

    /// The clock of status().next_retry_at.
    static time_point now();

    struct Impl;  ///< implementation detail

  private:
    struct Own;
    std::unique_ptr<Own> own_;
    std::shared_ptr<Impl> impl_;
};

}  // namespace tether
