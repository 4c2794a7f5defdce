#pragma once
/// @file
/// `tether::ReconnectingWebSocket`: a reconnecting WebSocket for any server
/// (exchanges, home automation, chat bridges) -- seed 003.
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

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace tether {

struct ReconnectingWebSocketOptions {
    std::string url;                                           ///< ws:// or wss://
    std::vector<std::pair<std::string, std::string>> headers;  ///< on the upgrade request
    std::string subprotocol;  ///< Sec-WebSocket-Protocol, required from the server when set

    BackoffPolicy backoff;  ///< 0.5 s x2 up to 15 s, 25 % jitter, unlimited attempts
    std::vector<std::uint16_t> fatal_codes{1008, 4003, 4004};
    std::vector<std::string> fatal_reasons;
    std::chrono::milliseconds open_timeout{10'000};
    std::chrono::milliseconds close_timeout{2'000};

    /// Produces the auth message for each connect (called on every attempt,
    /// so it can carry a fresh timestamp or token). Unset: no auth message.
    std::function<std::optional<SocketMessage>()> auth;
    /// When set, the socket waits for replies until one returns true (go
    /// on) or false (rejected: stop retrying, state `error`); nullopt means
    /// "not the auth reply", keep waiting (bounded by auth_timeout).
    std::function<std::optional<bool>(const SocketMessage&)> auth_validator;
    std::chrono::milliseconds auth_timeout{10'000};
    std::vector<SocketMessage> subscriptions;  ///< re-sent after auth on every connect

    LivenessMode liveness = LivenessMode::ws_ping;
    std::chrono::milliseconds ping_interval{15'000};
    std::chrono::milliseconds pong_timeout{10'000};
    std::string ping_payload = "ping";
    /// app_message mode: which incoming messages answer our ping (default:
    /// exactly "pong"). Matched messages are not passed to on_message.
    std::function<bool(const SocketMessage&)> pong_matcher;
    /// Passive replies to the server's application-level pings: return the
    /// reply, or nullopt for ordinary messages. Answered messages are not
    /// passed to on_message.
    std::function<std::optional<SocketMessage>(const SocketMessage&)> ping_responder;

    std::size_t queue_count_max = 1000;
    std::size_t queue_bytes_max = 4u << 20;
    OverflowPolicy overflow = OverflowPolicy::reject_new;
    std::size_t message_bytes_max = 16u << 20;  ///< inbound and outbound

    std::optional<std::string> probe_url;  ///< HTTP(S) URL that must answer 2xx before each attempt
    std::optional<std::string> ca_file;
    bool tls_verify = true;
    bool network_monitor = true;
    std::uint64_t seed = 0;  ///< jitter seed; 0 draws one from the OS

    /// Handlers installed before the socket starts, so that none misses the
    /// first events (the on_*() setters may: the socket connects at once).
    std::function<void(const SocketMessage&)> on_message;
    std::function<void(const SocketStatus&)> on_status;
    std::function<void(std::chrono::milliseconds rtt)> on_latency;
    std::function<void(const SocketMessage&, const std::string& code)> on_dropped;
};

class ReconnectingWebSocket {
  public:
    /// Runs on its own thread; starts connecting at once. Throws
    /// std::invalid_argument on invalid options.
    explicit ReconnectingWebSocket(ReconnectingWebSocketOptions options);
    ReconnectingWebSocket(boost::asio::any_io_executor executor,
                          ReconnectingWebSocketOptions options);
    ~ReconnectingWebSocket();
    ReconnectingWebSocket(const ReconnectingWebSocket&) = delete;
    ReconnectingWebSocket& operator=(const ReconnectingWebSocket&) = delete;

    /// Sends now when connected, else queues (bounded). A refused or dropped
    /// message is reported to on_dropped ("queue_full", "too_large", "dropped").
    void send(std::string text);
    void send_binary(std::string data);

    void on_message(std::function<void(const SocketMessage&)> f);
    /// Called at once with the current status, then on every change.
    void on_status(std::function<void(const SocketStatus&)> f);
    void on_latency(std::function<void(std::chrono::milliseconds)> f);
    void on_dropped(std::function<void(const SocketMessage&, const std::string& code)> f);

    /// Blocks until connected (true), the timeout passes, or the socket
    /// stopped for good (false).
    bool wait_connected(std::chrono::milliseconds timeout);
    SocketStatus status() const;
    std::string status_line() const;
    SocketMetrics metrics() const;
    /// Blocks until every message sent before the call left the queue
    /// (written to a socket) or was dropped (true), or the timeout passed.
    bool flush(std::chrono::milliseconds timeout);

    void retry_now();
    void connect(bool reset_backoff = false);
    /// Closes (1000) and stops reconnecting; queued messages are kept.
    void close();
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
