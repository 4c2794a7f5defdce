#pragma once
// An HTTP connection: reads requests (bounded headers and body, bounded
// time), upgrades WebSocket requests to a ws_session, routes the others
// (admin_api.hpp).

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

namespace tether::gateway {

struct Bridge;

void start_http_session(boost::beast::tcp_stream stream, Bridge& bridge);
void start_http_session(boost::beast::ssl_stream<boost::beast::tcp_stream> stream, Bridge& bridge);

}  // namespace tether::gateway
