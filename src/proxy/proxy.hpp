#pragma once
// `tether proxy`: a fault-injecting TCP proxy in the spirit of toxiproxy.
//
// Every accepted connection is paired with a connection to the upstream and
// bytes are pumped both ways. Faults apply per direction ("up" = client to
// upstream, "down" = upstream to client) to existing and new connections:
// latency with jitter, a bandwidth limit, blackhole (both sockets stay open,
// nothing is forwarded: a half-open link), and cut after N bytes. One-shot
// actions close (FIN) or reset (RST) every open connection; `down` refuses
// new connections. Controlled over HTTP (docs/CLI.md).

#include <boost/asio/io_context.hpp>

#include <cstdint>
#include <memory>
#include <string>

namespace tether::proxy {

struct ProxyOptions {
    std::string listen_host = "127.0.0.1";
    std::uint16_t listen_port = 0;
    std::string upstream_host = "127.0.0.1";
    std::uint16_t upstream_port = 0;
    std::string control_host = "127.0.0.1";
    std::uint16_t control_port = 0;
    std::uint64_t seed = 1;  ///< jitter
};

/// Single-threaded: everything runs on the io_context given, which must be
/// run by one thread (tools/proxy_command.cpp runs it and handles signals).
class Proxy {
  public:
    /// Binds both listeners; throws std::runtime_error with a clear message.
    Proxy(boost::asio::io_context& ioc, ProxyOptions options);
    ~Proxy();
    Proxy(const Proxy&) = delete;
    Proxy& operator=(const Proxy&) = delete;
    std::uint16_t port() const;
    std::uint16_t control_port() const;
    /// Starts accepting (on the io_context).
    void start();

    struct Impl;

  private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace tether::proxy
