#pragma once
// A WebSocket session after the upgrade: the gateway frames RFC 6455 itself
// (wire/ws_frame.hpp) on the bare socket (plain) or Beast's ssl_stream (TLS),
// hands parsed messages to the engine in batches, and writes every queued
// frame of the connection in one write (docs/DESIGN.md, "Own WebSocket
// framing").

#include "gateway/http_util.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include <string>

namespace tether::gateway {

struct Bridge;

/// Answers the upgrade request `req` (101, or 400/426 for a malformed one)
/// and runs the session. `leftover`: bytes read after the request.
void start_ws_session(boost::asio::ip::tcp::socket socket, Bridge& bridge, std::string leftover,
                      const Request& req);
void start_ws_session(boost::beast::ssl_stream<boost::beast::tcp_stream> stream, Bridge& bridge,
                      std::string leftover, const Request& req);

}  // namespace tether::gateway
