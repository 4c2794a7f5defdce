#pragma once
// What the simulated clients talk to: the real ServerEngine on a delayed,
// reordering store (most seeds), or the at-least-once SimServer (the rest),
// behind one interface so that the world, the faults and the checker do not
// care which.

#include "sim/delayed_store.hpp"
#include "sim/scheduler.hpp"
#include "sim/sim_server.hpp"

#include <tether/core/store.hpp>
#include <tether/core/time.hpp>

#include <functional>
#include <memory>
#include <set>

namespace tether::sim {

class Backend {
  public:
    virtual ~Backend() = default;
    virtual const char* name() const = 0;

    virtual void on_open(time_point now, std::uint64_t conn) = 0;
    virtual void on_frame(time_point now, std::uint64_t conn, std::string_view text) = 0;
    virtual void on_disconnect(time_point now, std::uint64_t conn) = 0;
    virtual void on_writable(time_point now, std::uint64_t conn) = 0;
    virtual std::optional<time_point> next_tick() const = 0;
    virtual void on_tick(time_point now) = 0;
    virtual std::vector<ServerOutput> take_outputs() = 0;
    /// Called when the backend has outputs without an input (a store result
    /// arrived): the world drains them.
    std::function<void()> on_output;

    virtual void publish_backend(time_point now, std::string_view room, std::string data) = 0;
    virtual void lose_history(time_point now, std::string_view room) = 0;
    /// The process dies: every connection is gone. Sessions survive unless
    /// `lose_sessions`; history survives (durable) unless `lose_store`.
    virtual std::vector<std::uint64_t> restart(time_point now, bool lose_sessions,
                                               bool lose_store) = 0;
    virtual void drain(time_point now, std::int64_t retry_after_ms) = 0;
    /// The server closes one connection with a code (auth revoked, ...).
    virtual void close_conn(time_point now, std::uint64_t conn, std::uint16_t code,
                            std::string reason) = 0;
    virtual std::vector<std::uint64_t> connections() const = 0;

    virtual StreamInfo stream(std::string_view room) const = 0;
    virtual const Archive& archive() const = 0;

    // Fault knobs honoured by both backends.
    bool reject_identify = false;
    std::set<std::string, std::less<>> forbidden_rooms;
    // Knobs only the simulated server has (the engine's limits come from its
    // configuration instead).
    virtual void set_rate_limit(bool /*on*/, std::int64_t /*retry_after_ms*/) {}
    virtual void add_join_errors(std::uint32_t /*count*/) {}
};

/// The engine's configuration drawn by the world.
struct EngineSetup {
    std::size_t history_size = 200;
    duration heartbeat{5'000};
    duration session_ttl{60'000};
    double publish_rate = 50.0;
    double publish_burst = 100.0;
    std::size_t page_events = 256;
    StoreDelays store;
    std::uint64_t seed = 1;
    /// Engine shards (ServerConfig::shard_count); 0: one to three, by the seed.
    std::size_t shards = 0;
    /// Gateway nodes on the one store (ServerConfig::shared_store, as with
    /// Redis); more than one: each engine is a node of one shard, and
    /// `shards` is ignored. Between nodes, an append's notification (and a
    /// session claim's) arrives after a seeded delay, is lost with
    /// `notify_loss`, and comes twice with `notify_dup`; every `head_check`
    /// each node hears of the head of every room it tracks (the Redis
    /// store's head check); `lose_history` then sometimes loses only a
    /// room's newest entries, with a new epoch (a failover to a lagging
    /// replica and the term rule).
    std::size_t nodes = 1;
    double notify_loss = 0.0;
    double notify_dup = 0.0;
    duration head_check{2'000};
};

/// The real gateway engine on a DelayedStore. Tokens "tok-<client>-..." are
/// user "user-<client>"; low publish rates produce genuine NACK rate_limited
/// and JOIN_ERROR rate_limited.
std::unique_ptr<Backend> make_engine_backend(Scheduler& sched, const EngineSetup& setup);

/// The simulated at-least-once server (overlapping replays, duplicate live
/// events) with its own fault knobs.
std::unique_ptr<Backend> make_sim_backend(SimServer::Config config, std::uint64_t sloppy_overlap);

}  // namespace tether::sim
