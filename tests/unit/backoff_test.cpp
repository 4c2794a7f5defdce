#include <tether/core/backoff.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <vector>

using namespace std::chrono_literals;
using tether::Backoff;
using tether::BackoffPolicy;
using tether::BackoffStrategy;
using tether::duration;
using tether::Rng;

namespace {
std::vector<duration> delays(BackoffPolicy p, std::uint64_t seed, int n) {
    Backoff b{p};
    Rng rng{seed};
    std::vector<duration> out;
    for (int i = 0; i < n; ++i) {
        auto d = b.next_delay(rng);
        if (!d) break;
        out.push_back(*d);
    }
    return out;
}
}  // namespace

TEST(Backoff, DefaultsFollowSeed001) {
    BackoffPolicy p;
    EXPECT_EQ(p.strategy, BackoffStrategy::exponential);
    EXPECT_EQ(p.initial, 500ms);
    EXPECT_EQ(p.multiplier, 2.0);
    EXPECT_EQ(p.max, 15s);
    EXPECT_EQ(p.jitter_ratio, 0.25);
    EXPECT_FALSE(p.attempts_max.has_value());
    EXPECT_EQ(p.stable_period, 5s);
    EXPECT_TRUE(p.validate().has_value());
}

TEST(Backoff, ExponentialStaysWithinJitteredBoundsForEveryAttempt) {
    for (std::uint64_t seed = 1; seed <= 200; ++seed) {
        Backoff b{BackoffPolicy{}};
        Rng rng{seed};
        for (std::uint32_t n = 1; n <= 20; ++n) {
            const double base = std::min(500.0 * std::pow(2.0, n - 1), 15'000.0);
            const auto d = b.next_delay(rng);
            ASSERT_TRUE(d);
            EXPECT_GE(d->count(), std::llround(base * 0.75)) << "attempt " << n;
            EXPECT_LE(d->count(), std::llround(base * 1.25)) << "attempt " << n;
            EXPECT_EQ(b.attempt(), n);
        }
    }
}

// The known bug: jitter before the cap makes every capped client retry at
// exactly the cap, in lockstep. Our jitter comes after the cap.
TEST(Backoff, CappedDelaysStillSpread) {
    std::set<std::int64_t> capped;
    for (std::uint64_t seed = 1; seed <= 100; ++seed) {
        auto d = delays(BackoffPolicy{}, seed, 12);
        capped.insert(d.back().count());
        EXPECT_GE(d.back(), 11'250ms);
        EXPECT_LE(d.back(), 18'750ms);
    }
    EXPECT_GT(capped.size(), 90u);  // 100 clients at the cap: nearly all distinct
    EXPECT_LT(*capped.begin(), 12'500);
    EXPECT_GT(*capped.rbegin(), 17'500);
}

TEST(Backoff, SameSeedSameScheduleDifferentSeedDifferentSchedule) {
    EXPECT_EQ(delays(BackoffPolicy{}, 3, 30), delays(BackoffPolicy{}, 3, 30));
    EXPECT_NE(delays(BackoffPolicy{}, 3, 30), delays(BackoffPolicy{}, 4, 30));
}

TEST(Backoff, FullJitterIsUniformUpToTheGrowingBase) {
    BackoffPolicy p;
    p.strategy = BackoffStrategy::full_jitter;
    double sum_at_cap = 0;
    int samples = 0;
    for (std::uint64_t seed = 1; seed <= 300; ++seed) {
        auto d = delays(p, seed, 10);
        for (std::size_t i = 0; i < d.size(); ++i) {
            const double base = std::min(500.0 * std::pow(2.0, static_cast<double>(i)), 15'000.0);
            EXPECT_GE(d[i].count(), 0);
            EXPECT_LE(d[i].count(), std::llround(base));
        }
        sum_at_cap += static_cast<double>(d[9].count());
        ++samples;
    }
    EXPECT_NEAR(sum_at_cap / samples, 7'500, 1'000);  // mean of U[0, 15 s]
}

TEST(Backoff, DecorrelatedJitterBetweenInitialAndCap) {
    BackoffPolicy p;
    p.strategy = BackoffStrategy::decorrelated_jitter;
    p.initial = 200ms;
    p.max = 10s;
    for (std::uint64_t seed = 1; seed <= 100; ++seed) {
        auto d = delays(p, seed, 50);
        ASSERT_EQ(d.size(), 50u);
        duration prev = p.initial;
        for (auto x : d) {
            EXPECT_GE(x, p.initial);
            EXPECT_LE(x, p.max);
            EXPECT_LE(x.count(), std::max<std::int64_t>(prev.count() * 3, p.initial.count()) + 1);
            prev = x;
        }
    }
}

TEST(Backoff, FixedLinearImmediateNever) {
    BackoffPolicy fixed;
    fixed.strategy = BackoffStrategy::fixed;
    fixed.initial = 2s;
    fixed.jitter_ratio = 0;
    EXPECT_EQ(delays(fixed, 1, 3), (std::vector<duration>{2s, 2s, 2s}));

    BackoffPolicy linear;
    linear.strategy = BackoffStrategy::linear;
    linear.initial = 1s;
    linear.step = 500ms;
    linear.max = 2s;
    linear.jitter_ratio = 0;
    EXPECT_EQ(delays(linear, 1, 4), (std::vector<duration>{1000ms, 1500ms, 2000ms, 2000ms}));

    BackoffPolicy immediate;
    immediate.strategy = BackoffStrategy::immediate;
    immediate.attempts_max = 3;
    EXPECT_EQ(delays(immediate, 1, 10), (std::vector<duration>{0ms, 0ms, 0ms}));

    BackoffPolicy never;
    never.strategy = BackoffStrategy::never;
    Backoff b{never};
    Rng rng{1};
    EXPECT_FALSE(b.next_delay(rng));
    EXPECT_TRUE(b.exhausted());
}

TEST(Backoff, OffsetOnlyBeforeTheFirstRetry) {
    BackoffPolicy p;
    p.strategy = BackoffStrategy::fixed;
    p.initial = 1s;
    p.jitter_ratio = 0;
    p.first_retry_offset = 2s;
    EXPECT_EQ(delays(p, 1, 3), (std::vector<duration>{3s, 1s, 1s}));
}

TEST(Backoff, MaxAttemptsExhausts) {
    BackoffPolicy p;
    p.attempts_max = 4;
    Backoff b{p};
    Rng rng{1};
    for (int i = 0; i < 4; ++i)
        EXPECT_TRUE(b.next_delay(rng));
    EXPECT_TRUE(b.exhausted());
    EXPECT_FALSE(b.next_delay(rng));
    b.reset();
    EXPECT_TRUE(b.next_delay(rng));
}

TEST(Backoff, RetryAfterOverridesOnceAndIsCapped) {
    BackoffPolicy p;
    p.retry_after_max = 10s;
    Backoff b{p};
    Rng rng{1};
    b.set_retry_after(3s);
    EXPECT_EQ(*b.next_delay(rng), 3s);
    const auto normal = *b.next_delay(rng);  // attempt 2: 1 s +/- 25 %
    EXPECT_GE(normal, 750ms);
    EXPECT_LE(normal, 1250ms);
    b.set_retry_after(std::chrono::hours(1));  // an untrusted server value
    EXPECT_EQ(*b.next_delay(rng), 10s);
}

// The known bug: resetting the counter on open makes a flapping link retry
// fast forever. We reset only after the connection stayed up long enough.
TEST(Backoff, CounterResetsOnlyAfterStablePeriod) {
    Backoff b{BackoffPolicy{}};
    Rng rng{1};
    for (int i = 0; i < 5; ++i)
        b.next_delay(rng);
    const auto t0 = tether::from_ms(1'000);
    b.on_connected(t0);
    b.on_disconnected(t0 + 4'999ms);
    EXPECT_EQ(b.attempt(), 5u);  // flapped: keep backing off
    b.on_connected(t0 + 10s);
    b.on_disconnected(t0 + 15s);
    EXPECT_EQ(b.attempt(), 0u);  // stayed up 5 s: a new outage starts afresh
}

TEST(Backoff, HugeAttemptNumbersDoNotOverflow) {
    BackoffPolicy p;
    p.jitter_ratio = 0;
    Backoff b{p};
    Rng rng{1};
    for (int i = 0; i < 100'000; ++i)
        ASSERT_EQ(b.next_delay(rng)->count() <= 15'000, true);
    EXPECT_EQ(b.delay_bounds(4'000'000'000u).hi, 15s);
}

TEST(Backoff, ValidationRejectsNonsense) {
    auto bad = [](auto mutate) {
        BackoffPolicy p;
        mutate(p);
        auto r = p.validate();
        return !r && r.error().code == tether::error::invalid_config;
    };
    EXPECT_TRUE(bad([](BackoffPolicy& p) { p.initial = -1ms; }));
    EXPECT_TRUE(bad([](BackoffPolicy& p) { p.max = 100ms; }));
    EXPECT_TRUE(bad([](BackoffPolicy& p) { p.multiplier = 0.5; }));
    EXPECT_TRUE(bad([](BackoffPolicy& p) { p.jitter_ratio = 1.5; }));
    EXPECT_TRUE(bad([](BackoffPolicy& p) { p.attempts_max = 0; }));
    EXPECT_TRUE(bad([](BackoffPolicy& p) { p.retry_after_max = -1ms; }));
    EXPECT_FALSE(bad([](BackoffPolicy&) {}));
}

TEST(Backoff, StrategyNamesRoundTrip) {
    for (auto s : {BackoffStrategy::exponential, BackoffStrategy::full_jitter,
                   BackoffStrategy::decorrelated_jitter, BackoffStrategy::fixed,
                   BackoffStrategy::linear, BackoffStrategy::immediate, BackoffStrategy::never})
        EXPECT_EQ(tether::parse_backoff_strategy(tether::to_string(s)), s);
    EXPECT_FALSE(tether::parse_backoff_strategy("fibonacci"));
}
