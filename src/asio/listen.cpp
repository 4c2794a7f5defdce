#include "asio/listen.hpp"

#include <stdexcept>

namespace tether::asio_support {

void listen(boost::asio::ip::tcp::acceptor& acceptor, const std::string& host, std::uint16_t port,
            std::string_view what) {
    namespace asio = boost::asio;
    boost::system::error_code ec;
    const auto address = asio::ip::make_address(host, ec);
    if (ec) throw std::runtime_error("invalid " + std::string{what} + " address '" + host + "'");
    const asio::ip::tcp::endpoint ep{address, port};
    acceptor.open(ep.protocol(), ec);
    if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor.bind(ep, ec);
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec)
        throw std::runtime_error("cannot listen on " + std::string{what} + " " + host + ":" +
                                 std::to_string(port) + ": " + ec.message());
}

}  // namespace tether::asio_support
