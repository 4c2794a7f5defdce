#pragma once
// HTTP helpers of the gateway: responses with JSON error bodies, the
// WebSocket accept key, and subprotocol negotiation.

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>

#include <string>
#include <string_view>

namespace tether::gateway {

using Request = boost::beast::http::request<boost::beast::http::string_body>;
using Response = boost::beast::http::response<boost::beast::http::string_body>;

/// A response with the Server header, the content type and a prepared body.
Response make_response(boost::beast::http::status status, std::string body, bool keep_alive,
                       std::string_view type = "application/json");
/// `{"error": message}`.
std::string error_body(std::string_view message);
/// Sec-WebSocket-Accept: base64(SHA-1(key + the RFC 6455 GUID)).
std::string ws_accept_key(std::string_view key);
/// True when the upgrade request offers the tether.v1 subprotocol.
bool offers_v1(const Request& req);

}  // namespace tether::gateway
