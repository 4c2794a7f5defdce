#pragma once
// What the gateway takes from the operating system for its engine: the wall
// clock (the engine's `now`) and a cryptographically secure random source.

#include <cstdint>
#include <span>

namespace tether::gateway {

/// Wall-clock milliseconds since the Unix epoch (the engine's `now`).
std::int64_t wall_ms();
/// Cryptographically secure random bytes (OpenSSL RAND_bytes; aborts on failure).
void secure_random(std::span<std::uint8_t> out);

}  // namespace tether::gateway
