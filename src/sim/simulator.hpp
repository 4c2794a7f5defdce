#pragma once
// Deterministic simulation of tether clients (one to four, sharing rooms)
// against the real gateway engine on a store with seeded delays (or an
// at-least-once simulated server) over a faulty network, in virtual time
// (TigerBeetle VOPR / FoundationDB style). One seed drives everything:
// configuration, traffic, faults, store delays and the clients' own jitter.
// A run has a fault phase followed by a healing phase that must converge;
// invariants are checked after every step, and any failure replays exactly
// from its seed.
//
// Parts, each in its own file: scheduler (clock, queue, randomness, trace),
// network, delayed_store, backend, workload, faults, checker, world (the
// clients and the step loop).
//
// Internal to tether (not installed): used by `tether sim` and tests/sim.

#include <tether/core/time.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace tether::sim {

/// Deliberate bugs injected into the harness to prove the checker catches
/// them (a test that cannot fail proves nothing).
enum class Sabotage : std::uint8_t {
    none,
    drop_delivery,       ///< hide one delivered event from the checker: loss
    duplicate_delivery,  ///< show one delivered event twice: duplicate
};

/// What a failed run broke (tests compare these, the text is for people).
enum class Violation : std::uint8_t {
    none,
    delivery,      ///< an event lost, duplicated, reordered or altered
    history_lost,  ///< history loss reported wrongly (or not when it happened)
    publish,       ///< an ack or failure that is wrong, twice, or missing
    attempt,       ///< a connection attempt the rules forbid (offline, twice, storm, ...)
    status,        ///< the status does not tell the truth
    convergence,   ///< the world did not heal within the bound
    busy_loop,     ///< a core's deadline did not advance
    other,
};

struct Options {
    std::uint64_t seed = 1;
    bool keep_trace = false;        ///< keep the readable trace lines
    duration fault_phase{120'000};  ///< virtual time with faults and traffic
    duration heal_bound{150'000};   ///< convergence deadline after faults stop
    Sabotage sabotage = Sabotage::none;
};

struct Stats {
    std::uint64_t clients = 0;
    std::uint64_t steps = 0;
    std::uint64_t attempts = 0;
    std::uint64_t connects = 0;
    std::uint64_t faults = 0;
    std::uint64_t delivered = 0;
    std::uint64_t replayed = 0;
    std::uint64_t history_lost = 0;
    std::uint64_t published = 0;
    std::uint64_t acked = 0;
    std::uint64_t publish_failed = 0;
    std::int64_t converged_after_ms = -1;  ///< time from heal start to convergence
    std::int64_t virtual_ms = 0;
};

struct Result {
    bool ok = true;
    Violation violation = Violation::none;
    std::string failure;  ///< first invariant broken, with context
    std::int64_t failed_at_ms = -1;
    std::uint64_t trace_hash = 0;
    std::vector<std::string> trace;  ///< when Options::keep_trace
    Stats stats;
};

/// Runs one seed.
Result run(const Options& options);

/// The command that replays `seed` with its trace.
std::string replay_command(std::uint64_t seed);

}  // namespace tether::sim
