#include <tether/core/close_codes.hpp>

#include <gtest/gtest.h>

#include <set>

namespace cc = tether::close_code;

TEST(CloseCodes, FatalSetIsSeed002s) {
    std::set<std::uint16_t> fatal;
    for (const auto& i : cc::table())
        if (i.fatal) fatal.insert(i.code);
    EXPECT_EQ(fatal, (std::set<std::uint16_t>{4003, 4004, 4012, 4013, 4014}));
}

TEST(CloseCodes, TableCoversTheProtocolAndIsConsistent) {
    for (int code_int : {1000, 1001, 1006, 1008, 1009, 1011, 1012, 1013, 4000, 4001, 4002,
                         4003, 4004, 4005, 4007, 4008, 4009, 4010, 4012, 4013, 4014}) {
        const auto code = static_cast<std::uint16_t>(code_int);
        const auto& i = cc::info(code);
        EXPECT_EQ(i.code, code);
        EXPECT_FALSE(i.client_action.empty());
        EXPECT_NE(i.fatal, i.reconnect) << code;  // fatal exactly when not reconnecting
        if (i.fatal) {
            EXPECT_FALSE(i.resume) << code;
        }
    }
    std::uint16_t prev = 0;
    for (const auto& i : cc::table()) {
        EXPECT_GT(i.code, prev);  // ascending, no duplicates
        prev = i.code;
    }
}

TEST(CloseCodes, SessionEndingCodesDoNotResume) {
    EXPECT_FALSE(cc::info(cc::session_timed_out).resume);
    EXPECT_FALSE(cc::info(cc::invalid_position).resume);
    EXPECT_TRUE(cc::info(cc::unknown_error).resume);  // heartbeat timeout keeps the session
    EXPECT_TRUE(cc::info(cc::slow_consumer).resume);
}

TEST(CloseCodes, UnknownCodesReconnect) {
    const auto& i = cc::info(4999);
    EXPECT_EQ(i.name, "unknown");
    EXPECT_TRUE(i.reconnect);
    EXPECT_FALSE(i.fatal);
}
