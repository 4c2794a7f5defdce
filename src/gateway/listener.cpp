#include "gateway/listener.hpp"

#include "asio/listen.hpp"
#include "gateway/bridge.hpp"
#include "gateway/http_session.hpp"

#include <boost/asio/post.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include <stdexcept>

namespace tether::gateway {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

void load_tls(Bridge& g) {
    const auto& opt = g.opt;
    if (!opt.tls_cert_file && !opt.tls_key_file) return;
    if (!opt.tls_cert_file || !opt.tls_key_file)
        throw std::runtime_error("TLS needs both --tls-cert and --tls-key");
    g.tls.emplace(ssl::context::tls_server);
    g.tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                       ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    beast::error_code ec;
    g.tls->use_certificate_chain_file(*opt.tls_cert_file, ec);
    if (ec)
        throw std::runtime_error("cannot load TLS certificate " + *opt.tls_cert_file + ": " +
                                 ec.message());
    g.tls->use_private_key_file(*opt.tls_key_file, ssl::context::pem, ec);
    if (ec)
        throw std::runtime_error("cannot load TLS key " + *opt.tls_key_file + ": " + ec.message());
}

Listener::Listener(Bridge& bridge)
    : bridge_(bridge), acceptor_(asio::make_strand(*bridge.contexts.front())) {
    asio_support::listen(acceptor_, bridge.opt.host, bridge.opt.port, "gateway");
}

std::uint16_t Listener::port() const {
    return acceptor_.local_endpoint().port();
}

void Listener::start() {
    asio::post(acceptor_.get_executor(), [this] { accept(); });
}

void Listener::close() {
    asio::post(acceptor_.get_executor(), [this] {
        beast::error_code ec;
        acceptor_.close(ec);
    });
}

void Listener::accept() {
    // Each accepted socket goes to the next event loop.
    acceptor_.async_accept(asio::make_strand(bridge_.next_loop()), [this](beast::error_code ec,
                                                                          tcp::socket socket) {
        if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
        if (!ec) {
            // Small frames go out at once: with Nagle on, a frame written while
            // the previous one is unacknowledged waits for the peer's delayed
            // ACK (40 ms on Linux) -- measured as a 44 ms floor on every
            // request/answer exchange before this (docs/BENCHMARKS.md).
            beast::error_code nodelay_ec;
            socket.set_option(tcp::no_delay(true), nodelay_ec);
            // Bound sockets that have not upgraded yet too (slowloris, half-open handshakes).
            if (bridge_.live_sockets.load() >= bridge_.opt.connections_max + 1024) {
                beast::error_code ignored;
                socket.close(ignored);
            } else if (bridge_.tls) {
                start_http_session(
                    beast::ssl_stream<beast::tcp_stream>(std::move(socket), *bridge_.tls), bridge_);
            } else {
                start_http_session(beast::tcp_stream(std::move(socket)), bridge_);
            }
        }
        accept();
    });
}

}  // namespace tether::gateway
