// The small shared pieces of the cores: the error category, the timer table,
// the close-reason cut, the token bucket.

#include <tether/core/error.hpp>
#include <tether/core/protocol.hpp>
#include <tether/core/timer_table.hpp>
#include <tether/core/token_bucket.hpp>

#include <gtest/gtest.h>

#include <set>
#include <vector>

using namespace std::chrono_literals;
using namespace tether;

TEST(Error, CodesHaveACategoryAndDistinctMessages) {
    const std::error_code a = error::outbox_full;
    EXPECT_EQ(a.category().name(), std::string{"tether"});
    EXPECT_EQ(a, error::outbox_full);
    EXPECT_NE(a, error::queue_full);
    std::set<std::string> messages;
    for (int v = static_cast<int>(error::invalid_room);
         v <= static_cast<int>(error::token_not_yet_valid); ++v) {
        const auto m = make_error_code(static_cast<error>(v)).message();
        EXPECT_NE(m, "unknown tether error") << v;
        messages.insert(m);
    }
    EXPECT_EQ(messages.size(),
              static_cast<std::size_t>(static_cast<int>(error::token_not_yet_valid)));
}

TEST(Error, ResultWithADetailedErrorThrowsSystemErrorOnValue) {
    result<int, Error> r = make_error(error::invalid_config, "open timeout must be > 0");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, error::invalid_config);
    EXPECT_THROW((void)r.value(), std::system_error);
}

TEST(TimerTable, NextIsTheMinimumAndExpiredRunInEnumOrder) {
    enum class T : std::uint8_t { a, b, c, count_ };
    TimerTable<T> t;
    EXPECT_FALSE(t.next());
    t.set(T::c, from_ms(10));
    t.set(T::a, from_ms(30));
    t.set(T::b, from_ms(20));
    EXPECT_EQ(t.next(), from_ms(10));
    std::vector<T> fired;
    t.for_each_expired(from_ms(25), [&](T x) {
        fired.push_back(x);
        if (x == T::b) t.set(T::a, from_ms(25));  // a slot already visited waits for next time
    });
    EXPECT_EQ(fired, (std::vector<T>{T::b, T::c}));
    EXPECT_EQ(t.next(), from_ms(25));
    EXPECT_FALSE(t.armed(T::b));
    t.clear(T::a);
    EXPECT_FALSE(t.next());
}

TEST(Protocol, CloseReasonsAreCutOnACharacterBoundary) {
    EXPECT_EQ(proto::truncate_close_reason("short"), "short");
    const std::string ascii(200, 'x');
    EXPECT_EQ(proto::truncate_close_reason(ascii).size(), proto::close_reason_bytes_max);
    // 61 two-byte characters (122 bytes) and one more: the cut must not split it.
    std::string utf8;
    for (int i = 0; i < 62; ++i)
        utf8 += "\xC3\xA9";  // é
    const auto cut = proto::truncate_close_reason(utf8);
    EXPECT_EQ(cut.size(), 122u);
    EXPECT_TRUE(proto::is_valid_utf8(cut));
    std::string four(121, 'a');
    four.append("\xF0\x9F\x98\x80");  // an emoji across the limit
    EXPECT_EQ(proto::truncate_close_reason(four), std::string(121, 'a'));
}

TEST(TokenBucket, RefillsAtTheRateUpToTheBurstAndSaysHowLongToWait) {
    const RateLimit limit{10.0, 2.0};
    TokenBucket b{limit, 0};
    EXPECT_TRUE(b.take(limit, 0));
    EXPECT_TRUE(b.take(limit, 0));
    std::int64_t wait = 0;
    EXPECT_FALSE(b.take(limit, 0, wait));
    EXPECT_EQ(wait, 100);
    EXPECT_TRUE(b.take(limit, 100));
    EXPECT_FALSE(b.take(limit, 50, wait));  // time going backwards refills nothing
    EXPECT_TRUE(b.take(limit, 10'000));
    EXPECT_TRUE(b.take(limit, 10'000));  // the burst, not more, after a long pause
    EXPECT_FALSE(b.take(limit, 10'000));
}
