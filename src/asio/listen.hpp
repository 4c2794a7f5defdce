#pragma once
// Opening a listening TCP socket with a readable error: shared by the gateway
// and the proxy.

#include <boost/asio/ip/tcp.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace tether::asio_support {

/// Opens, binds (SO_REUSEADDR) and listens on host:port. Throws
/// std::runtime_error("cannot listen on <what> host:port: <reason>") or
/// ("invalid <what> address 'host'").
void listen(boost::asio::ip::tcp::acceptor& acceptor, const std::string& host, std::uint16_t port,
            std::string_view what);

}  // namespace tether::asio_support
