#include <tether/core/assert.hpp>
#include <tether/core/backoff.hpp>

#include <algorithm>
#include <array>
#include <cmath>

namespace tether {
namespace {

struct StrategyName {
    BackoffStrategy strategy;
    std::string_view name;
};
constexpr std::array<StrategyName, 7> kStrategyNames{{
    {BackoffStrategy::exponential, "exponential"},
    {BackoffStrategy::full_jitter, "full-jitter"},
    {BackoffStrategy::decorrelated_jitter, "decorrelated-jitter"},
    {BackoffStrategy::fixed, "fixed"},
    {BackoffStrategy::linear, "linear"},
    {BackoffStrategy::immediate, "immediate"},
    {BackoffStrategy::never, "never"},
}};

duration to_duration(double ms) noexcept {
    return duration{static_cast<duration::rep>(std::llround(std::max(0.0, ms)))};
}

}  // namespace

std::string_view to_string(BackoffStrategy s) noexcept {
    for (const auto& e : kStrategyNames)
        if (e.strategy == s) return e.name;
    return "unknown";
}

std::optional<BackoffStrategy> parse_backoff_strategy(std::string_view name) noexcept {
    for (const auto& e : kStrategyNames)
        if (e.name == name) return e.strategy;
    return std::nullopt;
}

result<void, Error> BackoffPolicy::validate() const {
    auto bad = [](const char* what) { return make_error(error::invalid_config, what); };
    if (initial.count() < 0) return bad("backoff initial delay must not be negative");
    if (max.count() < 0) return bad("backoff max delay must not be negative");
    if (max < initial && strategy != BackoffStrategy::immediate &&
        strategy != BackoffStrategy::never)
        return bad("backoff max delay must be >= the initial delay");
    if (!(multiplier >= 1.0) || multiplier > 1000.0)
        return bad("backoff multiplier must be in [1, 1000]");
    if (!(jitter_ratio >= 0.0) || jitter_ratio > 1.0)
        return bad("backoff jitter ratio must be in [0, 1]");
    if (step.count() < 0) return bad("backoff step must not be negative");
    if (first_retry_offset.count() < 0)
        return bad("backoff first retry offset must not be negative");
    if (stable_period.count() < 0) return bad("backoff stable period must not be negative");
    if (retry_after_max.count() < 0) return bad("retry_after cap must not be negative");
    if (attempts_max && *attempts_max == 0) return bad("max attempts must be >= 1 (or unlimited)");
    return {};
}

Backoff::Backoff(BackoffPolicy policy) : policy_(policy) {
    TETHER_ASSERT(policy_.validate().has_value());
}

double Backoff::base_ms(std::uint32_t n) const noexcept {
    const auto initial = static_cast<double>(policy_.initial.count());
    const auto cap = static_cast<double>(policy_.max.count());
    switch (policy_.strategy) {
        case BackoffStrategy::exponential:
        case BackoffStrategy::full_jitter: {
            // Grow in a loop and stop at the cap: no overflow for huge n.
            double d = initial;
            for (std::uint32_t i = 1; i < n && d < cap; ++i)
                d *= policy_.multiplier;
            return std::min(d, cap);
        }
        case BackoffStrategy::linear:
            return std::min(
                initial + static_cast<double>(policy_.step.count()) * static_cast<double>(n - 1),
                cap);
        case BackoffStrategy::fixed:
            return initial;
        case BackoffStrategy::decorrelated_jitter:
            return cap;
        case BackoffStrategy::immediate:
        case BackoffStrategy::never:
            return 0;
    }
    return 0;
}

double Backoff::jittered(double ms, Rng& rng) const noexcept {
    const double r = policy_.jitter_ratio;
    if (r <= 0.0) return ms;
    return ms * (1.0 + r * (2.0 * rng.unit() - 1.0));
}

std::optional<duration> Backoff::next_delay(Rng& rng) {
    if (exhausted()) return std::nullopt;
    ++attempt_;
    const double offset =
        attempt_ == 1 ? static_cast<double>(policy_.first_retry_offset.count()) : 0.0;
    if (retry_after_) {
        const auto d = std::min(*retry_after_, policy_.retry_after_max);
        retry_after_.reset();
        return d;
    }
    double d = 0;
    switch (policy_.strategy) {
        case BackoffStrategy::exponential:
        case BackoffStrategy::fixed:
        case BackoffStrategy::linear:
            d = jittered(base_ms(attempt_), rng);
            break;
        case BackoffStrategy::full_jitter:
            d = base_ms(attempt_) * rng.unit();
            break;
        case BackoffStrategy::decorrelated_jitter: {
            const auto lo = static_cast<double>(policy_.initial.count());
            const double prev = std::max(previous_ms_, lo);
            const double hi = std::max(lo, prev * 3.0);
            d = std::min(static_cast<double>(policy_.max.count()), lo + (hi - lo) * rng.unit());
            previous_ms_ = d;
            break;
        }
        case BackoffStrategy::immediate:
            d = 0;
            break;
        case BackoffStrategy::never:
            TETHER_ASSERT(false);  // exhausted() is always true
    }
    return to_duration(d + offset);
}

void Backoff::set_retry_after(duration retry_after) noexcept {
    retry_after_ = std::max(duration{0}, retry_after);
}

void Backoff::on_connected(time_point now) noexcept {
    connected_at_ = now;
}

void Backoff::on_disconnected(time_point now) noexcept {
    if (connected_at_ && now - *connected_at_ >= policy_.stable_period) reset();
    connected_at_.reset();
}

void Backoff::reset() noexcept {
    attempt_ = 0;
    previous_ms_ = 0;
    retry_after_.reset();
}

bool Backoff::exhausted() const noexcept {
    if (policy_.strategy == BackoffStrategy::never) return true;
    return policy_.attempts_max && attempt_ >= *policy_.attempts_max;
}

Backoff::Bounds Backoff::delay_bounds(std::uint32_t n) const noexcept {
    TETHER_ASSERT(n >= 1);
    const double offset = n == 1 ? static_cast<double>(policy_.first_retry_offset.count()) : 0.0;
    const double base = base_ms(n);
    const double r = policy_.jitter_ratio;
    switch (policy_.strategy) {
        case BackoffStrategy::exponential:
        case BackoffStrategy::fixed:
        case BackoffStrategy::linear:
            return {to_duration(base * (1.0 - r) + offset), to_duration(base * (1.0 + r) + offset)};
        case BackoffStrategy::full_jitter:
            return {to_duration(offset), to_duration(base + offset)};
        case BackoffStrategy::decorrelated_jitter:
            return {
                to_duration(std::min(static_cast<double>(policy_.initial.count()), base) + offset),
                to_duration(base + offset)};
        case BackoffStrategy::immediate:
        case BackoffStrategy::never:
            return {to_duration(offset), to_duration(offset)};
    }
    return {};
}

}  // namespace tether
