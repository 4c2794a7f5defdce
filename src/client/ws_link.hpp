#pragma once
// One outgoing WebSocket connection (ws:// or wss://), driven by a reconnect
// core through its transmits: the building block of tether::Client and
// tether::ReconnectingWebSocket. Internal to src/net.
//
// - resolve -> [HTTP probe] -> TCP connect -> [TLS handshake with SNI and
//   host-name verification] -> WebSocket handshake (headers, subprotocol)
//   -> on_open -> read loop.
// - Every handler runs on the executor given at creation (the owner's
//   strand). Every method must be called from that executor.
// - on_close is called exactly once unless abort() came first; after abort()
//   no handler runs again.
// - Writes are queued (bounded by `write_queue_bytes_max`; beyond it the link
//   fails with 1006 "write queue full"). Pings and the close handshake are
//   serialised with each other, as Beast allows one control operation at a
//   time.

#include <tether/core/time.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ssl/context.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace tether::detail {

struct Url {
    bool tls = false;
    std::string host;    ///< without brackets
    std::string port;    ///< always set (defaults 80/443)
    std::string target;  ///< path and query, at least "/"
    std::string host_header;
    bool http = false;  ///< http:// or https:// (a probe URL), not ws:// or wss://
    bool scheme_http() const noexcept { return http; }
};

/// Parses ws://, wss://, http:// and https:// URLs. On error: a message.
std::variant<Url, std::string> parse_url(std::string_view url);

/// Builds the TLS client context: peer verification on, the system CA store
/// or `ca_file`. Throws std::runtime_error with a clear message.
std::shared_ptr<boost::asio::ssl::context> make_client_tls(
    const std::optional<std::string>& ca_file, bool verify);

struct LinkOptions {
    std::vector<std::pair<std::string, std::string>> headers;
    std::string subprotocol;  ///< required from the server when set
    std::string user_agent = "tether";
    std::size_t message_bytes_max = 16u << 20;
    std::size_t write_queue_bytes_max = 16u << 20;
    std::optional<Url> probe;  ///< GET it first; only open the socket on a 2xx answer
    std::shared_ptr<boost::asio::ssl::context> tls;  ///< required for wss:// and https://
    bool verify_host = true;
};

struct LinkHandlers {
    std::function<void()> on_open;
    std::function<void(std::string data, bool binary)> on_message;
    std::function<void(std::string_view payload)> on_pong;
    std::function<void(std::uint16_t code, std::string reason)> on_close;
};

class Link {
  public:
    virtual ~Link() = default;
    virtual void start() = 0;
    virtual void send(std::string data, bool binary) = 0;
    virtual void ping(std::string payload) = 0;
    virtual void close(std::uint16_t code, std::string reason) = 0;
    virtual void abort() = 0;
};

std::shared_ptr<Link> make_link(boost::asio::any_io_executor ex, Url url, LinkOptions options,
                                LinkHandlers handlers);

}  // namespace tether::detail
