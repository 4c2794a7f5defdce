#pragma once
// The gateway's network layer: drives a ServerEngine over Asio/Beast.
//
// - One port serves WebSocket (ws:// or, with a certificate, wss://) and HTTP:
//   GET /healthz, GET /metrics (Prometheus text), and the admin API under
//   /api/ (Authorization: Bearer <admin key>).
// - The engine runs as `shards` engines, each on its own strand, sharing the
//   store; every connection runs on its own strand. Inputs are posted to the engine strand,
//   transmits handed back to the connection strands. No shared state crosses strands without a post
//   or a documented lock (docs/DESIGN.md).
// - Each connection has a bounded outbound queue; a client that reads too
//   slowly is closed with 4010 (slow consumer) and keeps its session.
// - drain(): RECONNECT to everyone, flush the store, close, and stop within
//   `drain_timeout`.
//
// Process policy is the caller's: which threads run the gateway (run() on
// each), and which signals start a drain (tools/serve_command.cpp).
//
// Files: bridge (shards, control strand), ws_session, http_session, admin_api,
// metrics, listener (and TLS), http_util, system (clock and randomness).

#include <tether/core/server_engine.hpp>
#include <tether/core/store.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace spdlog {
class logger;
}

namespace tether::gateway {

struct GatewayOptions {
    std::string host = "127.0.0.1";
    std::uint16_t port = 8080;  ///< 0: pick a free port (tests)
    /// The number of threads that will call run(): one event loop each.
    unsigned concurrency_hint = 2;
    /// Engine shards, each on its own strand (1..256; docs/DESIGN.md, "Shards").
    std::size_t shards = 1;
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
    /// Why this node should not get traffic now (e.g. its Redis is out of
    /// reach), or an empty string: /healthz answers 503 with it. Called on
    /// an event loop, must be thread-safe and quick. Unset: healthy.
    std::function<std::string()> health_problem;
    /// More Prometheus text for /metrics (the store's counters). Unset: none.
    std::function<std::string()> extra_metrics;
};

struct Bridge;
class Listener;

class Gateway {
  public:
    /// Binds the listener (throws std::runtime_error with a clear message when
    /// it cannot). `engine_config` needs authenticate/random_bytes set.
    Gateway(GatewayOptions options, const ServerConfig& engine_config, Store& store,
            std::shared_ptr<spdlog::logger> log);
    ~Gateway();
    Gateway(const Gateway&) = delete;
    Gateway& operator=(const Gateway&) = delete;

    /// The bound port (after construction).
    std::uint16_t port() const noexcept;
    /// Serves on the calling thread until the gateway stopped (a drain
    /// finished). Call it from `concurrency_hint` threads at once: each
    /// call runs one of the gateway's event loops, and a loop nobody runs
    /// would never serve its connections.
    void run();
    /// Starts a drain, from any thread (what SIGTERM does in `tether serve`).
    void drain();
    /// The gateway's executor, for the process's own handlers (signals).
    boost::asio::any_io_executor executor();

  private:
    std::unique_ptr<Bridge> bridge_;
    std::unique_ptr<Listener> listener_;
    std::once_flag started_;
};

}  // namespace tether::gateway
