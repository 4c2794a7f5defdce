#pragma once
// The gateway's network layer: drives a ServerEngine over Boost.Beast.
//
// - One port serves WebSocket (ws:// or, with a certificate, wss://) and HTTP:
//   GET /healthz, GET /metrics (Prometheus text), and the admin API under
//   /api/ (Authorization: Bearer <admin key>).
// - The engine runs on its own strand; every connection runs on its own
//   strand of an io_context pool. Inputs are posted to the engine strand,
//   transmits are posted back to the connection strands. No shared state
//   crosses strands without a post (TSan-clean by construction).
// - Each connection has a bounded outbound queue; a client that reads too
//   slowly is closed with 4010 (slow consumer) and keeps its session.
// - SIGTERM/SIGINT drain: RECONNECT to everyone, flush the store, close,
//   exit within `drain_timeout`.

#include <tether/core/server_engine.hpp>
#include <tether/core/store.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace spdlog {
class logger;
}

namespace tether::gateway {

struct GatewayOptions {
    std::string host = "127.0.0.1";
    std::uint16_t port = 8080;  ///< 0: pick a free port (tests)
    unsigned threads = 2;
    std::size_t connections_max = 10'000;
    std::size_t outbound_bytes_max = 4u << 20;  ///< per connection, then 4010
    duration handshake_timeout{10'000};         ///< TCP accept -> HTTP request/upgrade done
    std::optional<std::string> admin_key;       ///< unset: /api/ answers 403
    std::optional<std::string> tls_cert_file;
    std::optional<std::string> tls_key_file;
    duration drain_timeout{5'000};
    std::int64_t drain_retry_after_ms = 1'000;
    double admin_rate = 20.0;  ///< admin requests per second (token bucket)
    double admin_burst = 40.0;
    std::size_t http_body_bytes_max = 1u << 20;
};

class Gateway {
  public:
    /// Binds the listener (throws std::runtime_error with a clear message when
    /// it cannot). `engine_config` needs authenticate/random_bytes set.
    Gateway(GatewayOptions options, ServerConfig engine_config, Store& store,
            std::shared_ptr<spdlog::logger> log);
    ~Gateway();
    Gateway(const Gateway&) = delete;
    Gateway& operator=(const Gateway&) = delete;

    /// The bound port (after construction).
    std::uint16_t port() const noexcept;
    /// Serves until drained; returns after every thread stopped.
    void run();
    /// Starts a drain from any thread (what SIGTERM does).
    void drain();

    struct Impl;  ///< opaque; named here so the connection classes in gateway.cpp can use it

  private:
    std::unique_ptr<Impl> impl_;
};

/// Wall-clock milliseconds since the Unix epoch (the engine's `now`).
std::int64_t wall_ms();
/// Cryptographically secure random bytes (OpenSSL RAND_bytes; aborts on failure).
void secure_random(std::span<std::uint8_t> out);

}  // namespace tether::gateway
