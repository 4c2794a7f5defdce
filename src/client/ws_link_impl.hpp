#pragma once
// Internal to ws_link*.cpp: what the WebSocket link (ws_link_socket.cpp) and
// the URL, TLS and probe helpers (ws_link.cpp) share. Both run Beast over
// asio_support::AnyStream, so that its WebSocket and HTTP operations are
// compiled once for plain TCP and TLS alike.

#include "client/ws_link.hpp"

#include "asio/any_stream.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/core/error.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace tether::detail {

namespace link_impl {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

using asio_support::AnyStream;

/// An error as a sentence; for TLS errors, OpenSSL's reason (certificate verify failed, ...).
std::string describe(const beast::error_code& ec);
/// A TLS handshake failure as a LinkClose: error::certificate_rejected (with
/// the verification result: unknown issuer, hostname mismatch, expired, ...)
/// or error::tls_failed.
LinkClose tls_failure(const beast::error_code& ec, SSL* ssl, std::string_view context);
/// SNI and, with `verify`, OpenSSL's own host name (or IP address) check.
bool prepare_tls(SSL* ssl, const std::string& host, bool verify);

/// An HTTP(S) GET on its own connection, before the WebSocket is opened.
class HttpProbe {
  public:
    virtual ~HttpProbe() = default;
    /// Stops it: `done` then runs with an error, or not at all if it already ran.
    virtual void cancel() = 0;
};
/// Starts a probe of `url`; `done` runs once on `ex`, with std::nullopt for a
/// 2xx answer or how it failed.
std::shared_ptr<HttpProbe> start_http_probe(const asio::any_io_executor& ex,
                                            const Endpoint& endpoint, const std::string& user_agent,
                                            std::function<void(std::optional<LinkClose>)> done);

/// The WebSocket link (ws_link_socket.cpp).
std::shared_ptr<Link> make_websocket_link(const asio::any_io_executor& ex,
                                          std::shared_ptr<const Endpoint> ep, LinkOptions options,
                                          LinkHandlers handlers);

}  // namespace link_impl

}  // namespace tether::detail
