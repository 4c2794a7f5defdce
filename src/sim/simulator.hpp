#pragma once
// Deterministic simulation of one tether client against a simulated server
// over a faulty network, in virtual time (TigerBeetle VOPR / FoundationDB
// style). One seed drives everything: configuration, traffic, faults and the
// client's own jitter. A run has a fault phase followed by a healing phase
// that must converge; invariants are checked after every step, and any
// failure replays exactly from its seed.
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

struct Options {
    std::uint64_t seed = 1;
    bool keep_trace = false;        ///< keep the readable trace lines
    duration fault_phase{120'000};  ///< virtual time with faults and traffic
    duration heal_bound{150'000};   ///< convergence deadline after faults stop
    Sabotage sabotage = Sabotage::none;
};

struct Stats {
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
