#pragma once
// The listening socket and the TLS server context: accepts connections
// (TCP_NODELAY, a bound on sockets not upgraded yet) and starts an HTTP
// session for each.

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/strand.hpp>

#include <cstdint>

namespace tether::gateway {

struct Bridge;

/// Loads the certificate chain and key named in the bridge's options into
/// bridge.tls (nothing without them). Throws std::runtime_error.
void load_tls(Bridge& bridge);

class Listener {
  public:
    /// Binds host:port of the bridge's options; throws std::runtime_error.
    explicit Listener(Bridge& bridge);
    std::uint16_t port() const;
    /// Accepts until close().
    void start();
    /// Any thread: stops accepting (the acceptor's own strand closes it).
    void close();

  private:
    void accept();

    Bridge& bridge_;
    // On its own strand: accept handlers and close() never overlap.
    boost::asio::ip::tcp::acceptor acceptor_;
};

}  // namespace tether::gateway
