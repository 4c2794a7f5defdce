#pragma once
/// @file
/// Time types of the sans-I/O core. The core never reads a clock: every input
/// carries `now`, so the same code runs on a real clock and in virtual time.

#include <chrono>
#include <cstdint>

namespace tether {

/// Durations everywhere in tether are whole milliseconds.
using duration = std::chrono::milliseconds;

/// A point in time on a monotonic clock (real or simulated). Only differences
/// between time points are meaningful.
using time_point = std::chrono::time_point<std::chrono::steady_clock, duration>;

/// Milliseconds since the clock's epoch, for traces and wire timestamps.
inline std::int64_t to_ms(time_point t) noexcept {
    return t.time_since_epoch().count();
}

/// A time point `ms` milliseconds after the clock's epoch.
inline time_point from_ms(std::int64_t ms) noexcept {
    return time_point{duration{ms}};
}

}  // namespace tether
