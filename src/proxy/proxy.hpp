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

class Proxy {
  public:
    explicit Proxy(ProxyOptions options);  // binds both listeners; throws with a clear message
    ~Proxy();
    std::uint16_t port() const;
    std::uint16_t control_port() const;
    void run();  // until SIGINT/SIGTERM

    struct Impl;

  private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace tether::proxy
