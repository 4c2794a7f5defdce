#pragma once
// The engine bridge: the ServerEngine on its strand, the connections it
// writes to, its timer, the durable-publish waiters of the admin API, drain.
// Every member marked "engine strand" is touched on that strand only; the
// sessions post to it (on_engine) and it posts back to theirs.

#include "gateway/connection.hpp"
#include "gateway/gateway.hpp"

#include <tether/core/server_engine.hpp>
#include <tether/core/store.hpp>
#include <tether/core/token_bucket.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

namespace spdlog {
class logger;
}

namespace tether::gateway {

/// Events the gateway itself counts (the engine counts the protocol).
struct GatewayCounters {
    std::uint64_t slow_consumer_closes = 0;
    std::uint64_t connections_refused = 0;
    std::uint64_t invalid_version = 0;
    std::uint64_t binary_frames = 0;
    std::uint64_t http_requests = 0;
    std::uint64_t admin_unauthorized = 0;
    std::uint64_t admin_rate_limited = 0;
};

struct Bridge {
    Bridge(GatewayOptions o, ServerConfig cfg, Store& s, std::shared_ptr<spdlog::logger> l);

    // Any thread.
    GatewayOptions opt;
    Store& store;
    std::shared_ptr<spdlog::logger> log;
    proto::Limits limits;
    std::size_t message_bytes_max = 0;  ///< the engine's PUBLISH payload limit
    std::size_t room_bytes_max = 128;   ///< the engine's room name limit
    std::atomic<std::uint64_t> next_conn{1};
    std::atomic<std::size_t> live_ws{0};       ///< upgraded WebSocket sessions
    std::atomic<std::size_t> live_sockets{0};  ///< HTTP sessions (not upgraded yet)

    // Declared before the io_context: handlers it destroys (sessions) use them.
    std::optional<boost::asio::ssl::context> tls;  ///< set before serving, then read-only
    boost::asio::io_context ioc;
    boost::asio::strand<boost::asio::io_context::executor_type> engine_strand;

    // Engine strand only.
    ServerEngine engine;
    std::unordered_map<std::uint64_t, std::shared_ptr<Connection>> conns;
    GatewayCounters counters;
    bool draining = false;
    bool drained = false;
    TokenBucket admin_bucket;
    std::function<void()> on_drain_started;  ///< closes the listener (its own strand)
    std::function<void()> on_ready;          ///< the engine finished start-up: accept
    bool ready_announced = false;

    template <class F>
    void on_engine(F&& f) {
        boost::asio::post(engine_strand, std::forward<F>(f));
    }
    /// Engine strand: carries out what the engine wants written and asks of
    /// the store, feeds it the store's results, re-arms the timer.
    void flush();
    /// Any thread: the store's sink (results are queued, the engine strand
    /// takes them).
    void store_done(StoreResult r);
    /// Engine strand: a WebSocket session ended.
    void connection_closed(std::uint64_t id);
    /// Any thread.
    void start_drain();
    /// Engine strand: the drain ends once every session wrote its last frames.
    void maybe_finish_drain();
    /// Engine strand: one admin request's worth of the admin rate limit.
    [[nodiscard]] bool take_admin_token();

  private:
    void arm_timer();
    void finish_drain();

    boost::asio::steady_timer timer_;
    std::optional<std::int64_t> timer_for_;
    std::mutex results_mu_;
    std::vector<StoreResult> results_;  // guarded: completed, not yet handed to the engine
    std::vector<StoreResult> taking_;   // engine strand: the batch being handed over
    boost::asio::steady_timer drain_timer_;
};

}  // namespace tether::gateway
