#pragma once
// One outgoing WebSocket connection (ws:// or wss://), driven by a reconnect
// core through its transmits: the building block of both network clients.
//
// - resolve -> [HTTP probe] -> TCP connect -> [TLS handshake with SNI and
//   host-name verification] -> WebSocket handshake (headers, subprotocol)
//   -> on_open -> read loop.
// - Every handler runs on the executor given at creation (the owner's
//   strand). Every method must be called from that executor.
// - on_close is called exactly once unless abort() came first; after abort()
//   no handler runs again. It reports what happened as data (LinkClose): the
//   close frame received -- authoritative even when the connection was reset
//   right after it -- or the transport error as a tether::error code.
// - Writes are queued (bounded by `write_queue_bytes_max`; beyond it the link
//   fails with error::write_queue_full). Pings and the close handshake are
//   serialised with each other, as Beast allows one control operation at a
//   time.

#include <tether/core/error.hpp>
#include <tether/core/reconnector.hpp>
#include <tether/transport_options.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ssl/context.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tether::detail {

struct Url {
    bool tls = false;
    std::string host;    ///< without brackets
    std::string port;    ///< always set (defaults 80/443)
    std::string target;  ///< path and query, at least "/"
    std::string host_header;
    bool http = false;  ///< http:// or https:// (a probe URL), not ws:// or wss://
};

/// Parses ws://, wss://, http:// and https:// URLs (error::invalid_config).
[[nodiscard]] result<Url, Error> parse_url(std::string_view url);

/// Where and how to connect, decided once from the TransportOptions: the one
/// copy of the URL, probe and TLS decisions of both network clients.
struct Endpoint {
    Url url;
    std::optional<Url> probe;
    std::shared_ptr<boost::asio::ssl::context> tls;  ///< set for wss:// or an https:// probe
    bool verify = true;
    std::vector<std::pair<std::string, std::string>> headers;
};

/// The endpoint of `t`: a ws:// or wss:// URL, an optional http(s) probe,
/// the TLS context (system store or `ca_file`). error::invalid_config with a
/// sentence when something is unusable.
[[nodiscard]] result<Endpoint, Error> make_endpoint(const TransportOptions& t);

struct LinkOptions {
    std::string subprotocol;  ///< required from the server when set
    std::string user_agent = "tether";
    std::size_t message_bytes_max = 16u << 20;
    std::size_t write_queue_bytes_max = 16u << 20;
};

struct LinkHandlers {
    std::function<void()> on_open;
    std::function<void(std::string data, bool binary)> on_message;
    std::function<void(std::string_view payload)> on_pong;
    std::function<void(LinkClose why)> on_close;
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

/// A link to `endpoint` (shared: it outlives the link's operations).
std::shared_ptr<Link> make_link(const boost::asio::any_io_executor& ex,
                                std::shared_ptr<const Endpoint> endpoint, LinkOptions options,
                                LinkHandlers handlers);

}  // namespace tether::detail
