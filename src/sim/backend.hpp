#pragma once
// What the simulated client talks to: the real ServerEngine on a memory
// store (most seeds), or the at-least-once SimServer (the rest), behind one
// interface so that the world, the faults and the checker do not care.

#include "sim/sim_server.hpp"

#include <tether/core/store.hpp>
#include <tether/core/time.hpp>

#include <memory>
#include <set>

namespace tether::sim {

/// Everything ever appended, per (room, epoch), for the checker.
using Archive = std::map<std::pair<std::string, std::uint64_t>, std::vector<SimServer::Entry>>;

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

/// The real gateway engine. `publish_rate`/`burst` come from the seed, so
/// low rates produce genuine NACK rate_limited and JOIN_ERROR rate_limited.
std::unique_ptr<Backend> make_engine_backend(std::size_t history_size, duration heartbeat,
                                             duration session_ttl, double publish_rate,
                                             double publish_burst, std::size_t page_events,
                                             std::uint64_t seed);

/// The simulated at-least-once server (overlapping replays, duplicate live
/// events) with its own fault knobs.
std::unique_ptr<Backend> make_sim_backend(SimServer::Config config, std::uint64_t sloppy_overlap);

}  // namespace tether::sim
