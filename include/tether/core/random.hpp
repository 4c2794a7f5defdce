#pragma once
/// @file
/// The one pseudo-random generator tether uses.
///
/// xoshiro256** seeded through splitmix64. Every derived value (bounded
/// integers, unit doubles, chances) is computed here with integer arithmetic
/// rather than the standard library's distributions, whose output differs
/// between toolchains. The same seed therefore gives the same jitter, the same
/// simulated faults and the same trace on every compiler and platform.
///
/// @par Thread safety
/// Distinct objects: safe. Shared objects: unsafe.

#include <cstdint>

namespace tether {

/// The one random generator of the cores (see this file's description).
class Rng {
  public:
    /// Seeds the four words of state from `seed` with splitmix64.
    explicit Rng(std::uint64_t seed) noexcept;

    /// The next 64 raw bits.
    std::uint64_t next_u64() noexcept;

    /// A uniformly distributed integer in `[0, bound)`; `bound` must be > 0.
    /// Unbiased (Lemire's multiply-and-reject).
    std::uint64_t uniform(std::uint64_t bound) noexcept;

    /// A uniformly distributed integer in `[lo, hi]` (inclusive); requires lo <= hi.
    std::int64_t range(std::int64_t lo, std::int64_t hi) noexcept;

    /// A double in `[0, 1)` with 53 random bits.
    double unit() noexcept;

    /// True with probability `p` (clamped to [0, 1]).
    bool chance(double p) noexcept;

    /// An independent generator derived from this one (advances this one).
    Rng fork() noexcept;

  private:
    std::uint64_t s_[4] = {};
};

}  // namespace tether
