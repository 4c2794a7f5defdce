#pragma once
/// @file
/// Reconnect delay policies (sans-I/O).
///
/// A `Backoff` hands out the delay before each reconnect attempt. It never
/// reads a clock; the caller passes `now` where stability matters.
///
/// @par Defaults
/// Exponential from 500 ms, x2, capped at 15 s, then +/-25 % ratio jitter
/// applied *after* the cap, so clients that all reached the cap still spread
/// out instead of retrying in lockstep. Unlimited attempts. The attempt counter
/// resets only after a connection stayed up for 5 s (a flapping link keeps
/// backing off). A server-given `retry_after` overrides the next delay, capped
/// at 60 s.
///
/// @par Example
/// @code
/// tether::Rng rng{seed};
/// tether::Backoff b{tether::BackoffPolicy{}};
/// auto d = b.next_delay(rng);   // ~500 ms +/- 25 %
/// @endcode
///
/// @par Thread safety
/// Distinct objects: safe. Shared objects: unsafe.

#include <tether/core/error.hpp>
#include <tether/core/random.hpp>
#include <tether/core/time.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tether {

/// How the delay grows from one attempt to the next.
enum class BackoffStrategy : std::uint8_t {
    exponential,          ///< initial * multiplier^(n-1), capped, then ratio jitter
    full_jitter,          ///< uniform [0, min(cap, initial * multiplier^(n-1))]
    decorrelated_jitter,  ///< min(cap, uniform [initial, previous * 3])
    fixed,                ///< initial, with ratio jitter
    linear,               ///< initial + step * (n-1), capped, with ratio jitter
    immediate,            ///< 0 ms every time (bounded by attempts_max only)
    never,                ///< no automatic retry: manual reconnect only
};

/// Name as used in configuration ("exponential", "full-jitter", ...).
std::string_view to_string(BackoffStrategy s) noexcept;
/// Parses a strategy name; nullopt for unknown names.
std::optional<BackoffStrategy> parse_backoff_strategy(std::string_view name) noexcept;

/// A reconnect delay policy (defaults: see this file's description).
struct BackoffPolicy {
    BackoffStrategy strategy = BackoffStrategy::exponential;  ///< how delays grow
    duration initial{500};           ///< first delay (exponential, fixed, linear, jitters)
    double multiplier = 2.0;         ///< growth factor (exponential, full jitter)
    duration max{15'000};            ///< cap on the delay before jitter
    double jitter_ratio = 0.25;      ///< +/- ratio applied after the cap (0 disables)
    duration step{500};              ///< increment per attempt (linear)
    duration first_retry_offset{0};  ///< extra wait before the first retry
    std::optional<std::uint32_t> attempts_max;  ///< nullopt = unlimited
    duration stable_period{5'000};              ///< uptime after which the attempt counter resets
    duration retry_after_max{60'000};           ///< cap on server-given retry_after

    /// The first invalid field (error::invalid_config), or success.
    [[nodiscard]] result<void, Error> validate() const;
};

/// Stateful delay generator for one reconnecting endpoint.
class Backoff {
  public:
    /// `policy` must validate().
    explicit Backoff(BackoffPolicy policy);

    /// The policy in use.
    const BackoffPolicy& policy() const noexcept { return policy_; }

    /// Delay before the next attempt, and counts that attempt. nullopt when the
    /// strategy is `never` or `attempts_max` attempts were already handed out.
    std::optional<duration> next_delay(Rng& rng);

    /// The next call to next_delay() returns `min(retry_after, retry_after_max)`
    /// instead of the strategy's delay (NACK / RECONNECT hints).
    void set_retry_after(duration retry_after) noexcept;

    /// A connection became fully established at `now`.
    void on_connected(time_point now) noexcept;

    /// The established connection was lost at `now`. Resets the attempt
    /// counter only if it had stayed up for at least `stable_period`.
    void on_disconnected(time_point now) noexcept;

    /// Forget all attempts (manual connect with reset, coming back online).
    void reset() noexcept;

    /// Attempts handed out since the last reset (1 after the first next_delay()).
    std::uint32_t attempt() const noexcept { return attempt_; }

    /// True when next_delay() would return nullopt.
    bool exhausted() const noexcept;

    /// A closed interval of delays.
    struct Bounds {
        duration lo;  ///< at least
        duration hi;  ///< at most
    };
    /// The closed interval in which the strategy's delay for attempt `n`
    /// (1-based) must fall, ignoring retry_after. For decorrelated jitter the
    /// upper bound is the cap. Used by tests and the simulator's checker.
    [[nodiscard]] Bounds delay_bounds(std::uint32_t n) const noexcept;

  private:
    double base_ms(std::uint32_t n) const noexcept;
    double jittered(double ms, Rng& rng) const noexcept;

    BackoffPolicy policy_;
    std::uint32_t attempt_ = 0;
    double previous_ms_ = 0;  ///< decorrelated jitter state
    std::optional<duration> retry_after_;
    std::optional<time_point> connected_at_;
};

}  // namespace tether
