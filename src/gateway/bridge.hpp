#pragma once
// The engine bridge: the engine's shards, each a ServerEngine on its own
// strand with the connections it writes to and its timer; the store's results
// and the shards' appends routed to the right shard in order; the control
// strand (admin rate limit, drain). Every member marked "shard strand" is
// touched on that shard's strand only; the sessions post to it and it posts
// back to theirs (docs/DESIGN.md, "Shards").

#include "gateway/connection.hpp"
#include "gateway/gateway.hpp"

#include <tether/core/server_engine.hpp>
#include <tether/core/store.hpp>
#include <tether/core/token_bucket.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <variant>
#include <vector>

namespace spdlog {
class logger;
}

namespace tether::gateway {

/// Events the gateway itself counts (the engine counts the protocol). Any thread.
struct GatewayCounters {
    std::atomic<std::uint64_t> slow_consumer_closes{0};
    std::atomic<std::uint64_t> connections_refused{0};
    std::atomic<std::uint64_t> invalid_version{0};
    std::atomic<std::uint64_t> binary_frames{0};
    std::atomic<std::uint64_t> http_requests{0};
    std::atomic<std::uint64_t> admin_unauthorized{0};
    std::atomic<std::uint64_t> admin_rate_limited{0};
    std::atomic<std::uint64_t> shard_moves{0};  ///< connections moved to their session's shard
};

/// One shard's engine state at one moment (the metrics page sums them).
struct EngineStats {
    ServerMetrics metrics;
    std::size_t connections = 0;
    std::size_t sessions = 0;
    std::size_t rooms = 0;
    std::size_t store_in_flight = 0;
    std::size_t appends_in_flight = 0;
    EngineStats& operator+=(const EngineStats& o);
};

struct Bridge;

/// Which rooms each shard tracks, as counters per hash bucket: the store's
/// commit reports go only to shards that may have a subscriber (a shared
/// bucket only costs a report that finds no room). Any thread.
class RoomInterest {
  public:
    static constexpr std::size_t kBuckets = 4096;
    explicit RoomInterest(std::size_t shards) : counts_(shards * kBuckets) {
        for (auto& c : counts_)
            c.store(0, std::memory_order_relaxed);
    }
    void track(std::size_t shard, std::string_view room, bool tracked) noexcept {
        auto& c = counts_[shard * kBuckets + bucket(room)];
        if (tracked)
            c.fetch_add(1);
        else
            c.fetch_sub(1);
    }
    [[nodiscard]] bool tracked(std::size_t shard, std::size_t bucket) const noexcept {
        return counts_[shard * kBuckets + bucket].load() != 0;
    }
    [[nodiscard]] static std::size_t bucket(std::string_view room) noexcept {
        return std::hash<std::string_view>{}(room) % kBuckets;
    }

  private:
    std::vector<std::atomic<std::uint32_t>> counts_;
};

/// One engine shard on its own strand.
class Shard {
  public:
    using Strand = boost::asio::strand<boost::asio::io_context::executor_type>;
    Shard(Bridge& bridge, std::size_t index, ServerConfig cfg);

    Bridge& bridge;
    const std::size_t index;
    Strand strand;
    // Shard strand only.
    ServerEngine engine;
    std::unordered_map<std::uint64_t, std::shared_ptr<Connection>> conns;

    template <class F>
    void post(F&& f) {
        boost::asio::post(strand, std::forward<F>(f));
    }
    /// Shard strand: carries out what the engine wants written and asks of
    /// the store, feeds it the store's results and the other shards'
    /// appends in the order they arrived, re-arms the timer.
    void flush();
    /// Any thread: a result of one of this shard's store requests.
    void store_done(StoreResult r);
    /// Any thread: an append of another shard or node (in commit order).
    void remote_append(std::shared_ptr<const RemoteAppend> a);
    /// Another node claimed a session of this shard (any thread).
    void session_claimed(SessionClaim claim);
    /// Any thread: a WebSocket connection of this shard ended.
    void connection_closed(std::uint64_t id);
    /// Shard strand: what the metrics page shows of this shard.
    [[nodiscard]] EngineStats stats() const;

  private:
    using Input = std::variant<StoreResult, std::shared_ptr<const RemoteAppend>, SessionClaim>;
    void arm_timer();
    void push(Input in);

    boost::asio::steady_timer timer_;
    std::optional<std::int64_t> timer_for_;
    bool ready_announced_ = false;
    std::mutex inbox_mu_;
    std::vector<Input> inbox_;   // guarded: arrived, not yet handed to the engine
    std::vector<Input> taking_;  // shard strand: the batch being handed over
};

struct Bridge {
    Bridge(GatewayOptions o, const ServerConfig& cfg, Store& s, std::shared_ptr<spdlog::logger> l);

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
    std::atomic<bool> draining{false};
    std::atomic<std::size_t> shards_ready{0};
    GatewayCounters counters;

    // Declared before the io_contexts: handlers they destroy (sessions) use them.
    std::optional<boost::asio::ssl::context> tls;  ///< set before serving, then read-only
    /// One event loop per thread (GatewayOptions::concurrency_hint): shard k
    /// and the connections that open on it share loop k % N, so a
    /// connection's frames reach its shard, and its transmits come back,
    /// without waking another thread (docs/DESIGN.md, "Shards").
    std::vector<std::unique_ptr<boost::asio::io_context>> contexts;
    std::vector<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> busy;
    std::atomic<std::size_t> next_context{0};  ///< accepted sockets, round robin
    std::atomic<std::size_t> next_runner{0};   ///< Gateway::run() calls so far
    /// Admin rate limit, drain, readiness (loop 0).
    boost::asio::strand<boost::asio::io_context::executor_type> control;
    RoomInterest interest;                       ///< before the shards: their engines report to it
    std::vector<std::unique_ptr<Shard>> shards;  ///< fixed after construction

    // Control strand only.
    bool drained = false;
    TokenBucket admin_bucket;
    std::function<void()> on_drain_started;  ///< closes the listener (its own strand)
    std::function<void()> on_ready;          ///< every shard finished start-up: accept

    /// The loop an accepted socket runs on (round robin).
    boost::asio::io_context& next_loop() {
        return *contexts[next_context.fetch_add(1) % contexts.size()];
    }
    /// The shard a new connection opens on: one on the connection's own
    /// loop when there is one (it moves to its session's shard on RESUME).
    Shard& shard_for_connection(std::uint64_t id, const boost::asio::execution_context& loop);
    /// The shard that owns a session.
    Shard& shard_for_session(std::string_view id) {
        return *shards[session_shard(id, shards.size())];
    }
    /// The shard that answers the admin API's publish and history of a room.
    Shard& shard_for_room(std::string_view room) {
        return *shards[session_shard(room, shards.size())];
    }
    template <class F>
    void on_control(F&& f) {
        boost::asio::post(control, std::forward<F>(f));
    }
    /// Runs `each(shard)` on every shard's strand, then `done(results)` (on
    /// the strand of the shard that answered last), results in shard order.
    template <class T, class Each, class Done>
    void gather(Each each, Done done) {
        struct State {
            State(std::size_t n, Done d) : parts(n), left(n), done(std::move(d)) {}
            std::mutex mu;
            std::vector<T> parts;
            std::size_t left;
            Done done;
        };
        auto st = std::make_shared<State>(shards.size(), std::move(done));
        for (auto& sh : shards) {
            sh->post([st, each, s = sh.get()] {
                T part = each(*s);
                bool last = false;
                {
                    std::lock_guard lock{st->mu};
                    st->parts[s->index] = std::move(part);
                    last = --st->left == 0;
                }
                if (last) st->done(std::move(st->parts));
            });
        }
    }
    /// Shard strand: a shard finished start-up; the last one starts accepting.
    void shard_ready(Shard& s);
    /// Any thread.
    void start_drain();
    /// Any thread: the drain ends once every session wrote its last frames.
    void maybe_finish_drain();
    /// Control strand: one admin request's worth of the admin rate limit.
    [[nodiscard]] bool take_admin_token();

  private:
    void finish_drain();
    boost::asio::steady_timer drain_timer_;
};

}  // namespace tether::gateway
