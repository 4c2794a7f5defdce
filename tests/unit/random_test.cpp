#include <tether/core/random.hpp>

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <set>

using tether::Rng;

// The generator must produce the same stream on every toolchain. The first
// state word comes straight from splitmix64, whose reference output for seed
// 0 is published (0xE220A8397B1DCDAF); xoshiro256**'s first output is
// rotl(s1 * 5, 7) * 9, computed here independently from the reference
// formula rather than copied from our own output.
TEST(Rng, FirstOutputMatchesReferenceConstruction) {
    std::uint64_t x = 0;
    auto splitmix = [&x] {
        std::uint64_t z = (x += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    };
    const std::uint64_t s0 = splitmix();
    EXPECT_EQ(s0, 0xE220A8397B1DCDAFull);
    const std::uint64_t s1 = splitmix();
    const std::uint64_t t = s1 * 5;
    const std::uint64_t expected = ((t << 7) | (t >> 57)) * 9;
    Rng rng{0};
    EXPECT_EQ(rng.next_u64(), expected);
}

TEST(Rng, SameSeedSameStreamDifferentSeedDifferentStream) {
    Rng a{42}, b{42}, c{43};
    bool differs = false;
    for (int i = 0; i < 1000; ++i) {
        const auto va = a.next_u64();
        EXPECT_EQ(va, b.next_u64());
        differs |= va != c.next_u64();
    }
    EXPECT_TRUE(differs);
}

TEST(Rng, UniformStaysInBoundsAndCoversThem) {
    Rng rng{7};
    std::array<int, 10> counts{};
    for (int i = 0; i < 100'000; ++i) {
        const auto v = rng.uniform(10);
        ASSERT_LT(v, 10u);
        ++counts[v];
    }
    for (int c : counts) {  // each bucket expects 10,000; allow 5 %
        EXPECT_GT(c, 9'500);
        EXPECT_LT(c, 10'500);
    }
    EXPECT_EQ(rng.uniform(0), 0u);
    EXPECT_EQ(rng.uniform(1), 0u);
}

TEST(Rng, RangeIsInclusiveAndHandlesNegatives) {
    Rng rng{9};
    std::set<std::int64_t> seen;
    for (int i = 0; i < 10'000; ++i) {
        const auto v = rng.range(-3, 3);
        ASSERT_GE(v, -3);
        ASSERT_LE(v, 3);
        seen.insert(v);
    }
    EXPECT_EQ(seen.size(), 7u);
    EXPECT_EQ(rng.range(5, 5), 5);
}

TEST(Rng, UnitIsInHalfOpenIntervalWithMeanNearHalf) {
    Rng rng{11};
    double sum = 0;
    for (int i = 0; i < 100'000; ++i) {
        const double u = rng.unit();
        ASSERT_GE(u, 0.0);
        ASSERT_LT(u, 1.0);
        sum += u;
    }
    EXPECT_NEAR(sum / 100'000, 0.5, 0.01);
}

TEST(Rng, ChanceExtremesAndRate) {
    Rng rng{13};
    int hits = 0;
    for (int i = 0; i < 100'000; ++i) {
        EXPECT_FALSE(rng.chance(0.0));
        EXPECT_TRUE(rng.chance(1.0));
        hits += rng.chance(0.25) ? 1 : 0;
    }
    EXPECT_NEAR(hits / 100'000.0, 0.25, 0.01);
}

TEST(Rng, ForkIsIndependentOfParentStream) {
    Rng parent{5};
    Rng child = parent.fork();
    int equal = 0;
    for (int i = 0; i < 1000; ++i)
        equal += parent.next_u64() == child.next_u64();
    EXPECT_EQ(equal, 0);
}
