#pragma once
/// @file
/// A token bucket (sans-I/O: the caller passes the time), the one rate
/// limiter of tether: publishes and joins per connection in the engine, admin
/// requests in the gateway.
///
/// @par Example
/// @code
/// const tether::RateLimit limit{50.0, 100.0};    // 50/s, bursts of 100
/// tether::TokenBucket bucket{limit, now_ms};
/// std::int64_t wait_ms = 0;
/// if (!bucket.take(limit, now_ms, wait_ms)) refuse(wait_ms);
/// @endcode
///
/// @par Thread safety
/// Distinct objects: safe. Shared objects: unsafe.

#include <cstdint>

namespace tether {

/// The rate of a TokenBucket: tokens per second and the bucket's size. Kept
/// apart from the bucket so that many buckets share one limit (a bucket per
/// connection stays 16 bytes).
struct RateLimit {
    double per_second = 1.0;  ///< > 0
    double burst = 1.0;       ///< >= 1: tokens available after a quiet period
};

/// Tokens refill continuously at `per_second`, up to `burst`; each take()
/// spends one. Starts full.
class TokenBucket {
  public:
    TokenBucket() = default;
    /// A full bucket at `now_ms`.
    TokenBucket(const RateLimit& limit, std::int64_t now_ms) noexcept
        : tokens_(limit.burst), at_ms_(now_ms) {}

    /// Spends one token if there is one. Otherwise returns false and sets
    /// `retry_after_ms` to the wait until the next token (at least 1 ms).
    /// A clock that goes backwards refills nothing.
    [[nodiscard]] bool take(const RateLimit& limit, std::int64_t now_ms,
                            std::int64_t& retry_after_ms) noexcept;
    /// take() without the wait.
    [[nodiscard]] bool take(const RateLimit& limit, std::int64_t now_ms) noexcept {
        std::int64_t ignored = 0;
        return take(limit, now_ms, ignored);
    }
    /// Tokens now (for tests and metrics).
    [[nodiscard]] double tokens() const noexcept { return tokens_; }

  private:
    double tokens_ = 0;
    std::int64_t at_ms_ = 0;
};

}  // namespace tether
