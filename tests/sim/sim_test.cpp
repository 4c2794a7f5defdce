#include "sim/simulator.hpp"

#include <gtest/gtest.h>

using tether::sim::Options;
using tether::sim::Sabotage;

TEST(Simulator, SeedsPassAndReplayIdentically) {
    for (std::uint64_t seed = 1; seed <= 300; ++seed) {
        Options o;
        o.seed = seed;
        const auto a = tether::sim::run(o);
        ASSERT_TRUE(a.ok) << "seed " << seed << ": " << a.failure
                          << "\nreplay: " << tether::sim::replay_command(seed);
        const auto b = tether::sim::run(o);
        ASSERT_EQ(a.trace_hash, b.trace_hash) << "seed " << seed << " is not deterministic";
        EXPECT_GE(a.stats.converged_after_ms, 0);
    }
}

TEST(Simulator, WorldsHaveSeveralClientsSharingRooms) {
    int several = 0;
    for (std::uint64_t seed = 1; seed <= 50; ++seed) {
        Options o;
        o.seed = seed;
        const auto r = tether::sim::run(o);
        ASSERT_TRUE(r.ok) << r.failure;
        if (r.stats.clients >= 3) ++several;
    }
    EXPECT_GE(several, 15);  // about 60 % of the worlds have three or four clients
}

TEST(Simulator, DifferentSeedsExploreDifferentRuns) {
    Options a, b;
    a.seed = 1;
    b.seed = 2;
    EXPECT_NE(tether::sim::run(a).trace_hash, tether::sim::run(b).trace_hash);
}

TEST(Simulator, FaultsActuallyHappen) {
    tether::sim::Stats total;
    for (std::uint64_t seed = 1; seed <= 50; ++seed) {
        Options o;
        o.seed = seed;
        const auto r = tether::sim::run(o);
        total.faults += r.stats.faults;
        total.attempts += r.stats.attempts;
        total.replayed += r.stats.replayed;
        total.history_lost += r.stats.history_lost;
        total.acked += r.stats.acked;
    }
    EXPECT_GT(total.faults, 500u);
    EXPECT_GT(total.attempts, 200u);     // reconnects happened
    EXPECT_GT(total.replayed, 1'000u);   // missed events were replayed
    EXPECT_GT(total.history_lost, 10u);  // and losses were reported
    EXPECT_GT(total.acked, 1'000u);
}

// A checker that cannot fail proves nothing: hide one delivery (loss) or show
// one twice (duplicate) and the run must fail -- identically on replay.
TEST(Simulator, BrokenInvariantsAreCaughtAndReplayFromTheSeed) {
    for (auto sabotage : {Sabotage::drop_delivery, Sabotage::duplicate_delivery}) {
        int caught = 0;
        for (std::uint64_t seed = 1; seed <= 20; ++seed) {
            Options o;
            o.seed = seed;
            o.sabotage = sabotage;
            o.keep_trace = true;
            const auto r = tether::sim::run(o);
            if (r.ok) continue;  // a seed may deliver nothing before the sabotage point
            ++caught;
            EXPECT_EQ(r.violation, tether::sim::Violation::delivery) << r.failure;
            const auto again = tether::sim::run(o);
            EXPECT_FALSE(again.ok);
            EXPECT_EQ(again.failure, r.failure);
            EXPECT_EQ(again.failed_at_ms, r.failed_at_ms);
            EXPECT_EQ(again.trace_hash, r.trace_hash);
            ASSERT_FALSE(r.trace.empty());
            EXPECT_NE(r.trace.back().find("FAILED"), std::string::npos);
        }
        EXPECT_GE(caught, 15);
    }
}

TEST(Simulator, TraceIsReadableAndHashCoversIt) {
    Options o;
    o.seed = 3;
    o.keep_trace = true;
    const auto r = tether::sim::run(o);
    ASSERT_TRUE(r.ok);
    ASSERT_GT(r.trace.size(), 20u);
    EXPECT_NE(r.trace.front().find("seed 3"), std::string::npos);
    EXPECT_NE(r.trace.back().find("converged"), std::string::npos);
    o.keep_trace = false;
    EXPECT_EQ(tether::sim::run(o).trace_hash,
              r.trace_hash);  // keeping lines does not change the run
}
