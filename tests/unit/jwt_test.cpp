#include "wire/jwt.hpp"

#include <gtest/gtest.h>

using namespace tether::wire;

namespace {
constexpr std::int64_t kNow = 1'800'000'000;
std::string tamper(std::string token, std::size_t part, char c) {
    std::size_t start = 0;
    for (std::size_t i = 0; i < part; ++i)
        start = token.find('.', start) + 1;
    token[start + 3] = token[start + 3] == c ? static_cast<char>(c + 1) : c;
    return token;
}
}  // namespace

TEST(Jwt, Base64UrlRoundTripsEveryLength) {
    std::string bytes;
    for (int n = 0; n < 64; ++n) {
        EXPECT_EQ(base64url_decode(base64url_encode(bytes)), bytes);
        bytes += static_cast<char>(n * 37);
    }
    EXPECT_EQ(base64url_encode("\xfb\xff"), "-_8");  // url alphabet, no padding
    EXPECT_FALSE(base64url_decode("ab=c"));
    EXPECT_FALSE(base64url_decode("a"));  // a dangling sextet
}

TEST(Jwt, MintedTokenVerifies) {
    const auto t = jwt_mint("secret", "alice", kNow, 3600);
    const auto r = jwt_verify(t, "secret", kNow + 10);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->sub, "alice");
    EXPECT_EQ(r->exp, kNow + 3600);
}

TEST(Jwt, RefusesEveryForgery) {
    const auto t = jwt_mint("secret", "alice", kNow, 3600);
    EXPECT_EQ(jwt_verify(t, "other", kNow).error().code, tether::error::token_bad_signature);
    EXPECT_EQ(jwt_verify(tamper(t, 1, 'A'), "secret", kNow).error().code,
              tether::error::token_bad_signature);  // payload
    EXPECT_EQ(jwt_verify(tamper(t, 2, 'A'), "secret", kNow).error().code,
              tether::error::token_bad_signature);  // signature
    EXPECT_EQ(jwt_verify(t, "secret", kNow + 3600 + 31).error().code, tether::error::token_expired);
    EXPECT_TRUE(jwt_verify(t, "secret", kNow + 3600 + 29).has_value());  // within the 30 s leeway
    const std::string none = base64url_encode(R"({"alg":"none"})") + "." +
                             base64url_encode(R"({"sub":"x","exp":1900000000})") + ".";
    EXPECT_EQ(jwt_verify(none, "secret", kNow).error().code, tether::error::token_unsupported);
    const std::string hs512 =
        base64url_encode(R"({"alg":"HS512"})") + "." + base64url_encode("{}") + ".AAAA";
    EXPECT_EQ(jwt_verify(hs512, "secret", kNow).error().code, tether::error::token_unsupported);
    EXPECT_EQ(jwt_verify("a.b", "secret", kNow).error().code, tether::error::token_malformed);
    EXPECT_EQ(jwt_verify("a.b.c.d", "secret", kNow).error().code, tether::error::token_malformed);
    EXPECT_EQ(jwt_verify("", "secret", kNow).error().code, tether::error::token_malformed);
    EXPECT_EQ(jwt_verify(std::string(9000, 'a'), "secret", kNow).error().code,
              tether::error::token_malformed);
}

TEST(Jwt, RequiresSubAndExpAndHonoursNbf) {
    const auto future = jwt_mint("s", "bob", kNow + 1000, 60);  // iat in the future is fine...
    EXPECT_TRUE(jwt_verify(future, "s", kNow).has_value());
    const auto empty_sub = jwt_mint("s", "", kNow, 60);
    EXPECT_EQ(jwt_verify(empty_sub, "s", kNow).error().code, tether::error::token_malformed);
    const auto long_sub = jwt_mint("s", std::string(300, 'u'), kNow, 60);
    EXPECT_EQ(jwt_verify(long_sub, "s", kNow).error().code, tether::error::token_malformed);
}

TEST(Jwt, NeverThrowsOnGarbage) {
    const auto t = jwt_mint("secret", "alice", kNow, 3600);
    std::uint32_t x = 7;
    for (int i = 0; i < 20'000; ++i) {
        std::string s = t;
        x = x * 1664525u + 1013904223u;
        s[x % s.size()] = static_cast<char>(x >> 24);
        const auto r = jwt_verify(s, "secret", kNow);
        if (r) {
            EXPECT_EQ(r->sub, "alice");  // only a no-op flip may pass
        }
    }
}
