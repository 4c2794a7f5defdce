#include <tether/core/close_codes.hpp>
#include <tether/core/protocol.hpp>

#include <gtest/gtest.h>

using namespace tether::proto;

namespace {

Message roundtrip(const Message& m) {
    const auto text = encode(m);
    auto r = decode(text);
    EXPECT_TRUE(r) << text << " -> " << (r ? "" : r.error().message());
    return r ? (*r) : Message{};
}

DecodeError error_of(std::string_view text, const Limits& l = {}) {
    auto r = decode(text, l);
    EXPECT_FALSE(r) << text;
    return r ? DecodeError{} : r.error();
}

}  // namespace

TEST(Protocol, EveryMessageRoundTrips) {
    const std::vector<Message> all{
        Hello{30'000, 300'000, "tether", "0.1.0", "node-1"},
        Identify{"tok\"en", ClientInfo{"cli", "1.2"}},
        Resume{"s1", "rt", {RoomPosition{"a", {1, 5}}, RoomPosition{"b", {2, 0}}}},
        Resume{"s1", "rt", {}},
        Ready{"s1", "rt", "alice"},
        Resumed{"s1", "rt-next"},
        Resumed{"s1", {}},
        InvalidSession{true},
        InvalidSession{false},
        Heartbeat{-5},
        HeartbeatAck{123456789},
        Join{"lobby", std::nullopt},
        Join{"lobby", StreamPosition{3, 42}},
        Joined{"lobby", {3, 42}, true},
        JoinError{"vip", "not_permitted", "members only", true},
        Leave{"lobby"},
        Publish{"lobby", "id-1", R"({"text":"hi","n":[1,2,{"x":null}]})"},
        Publish{"lobby", "id-2", R"("just a string")"},
        Ack{"id-1", "lobby", 3, 43},
        Nack{"id-1", "rate_limited", "slow down", 250},
        Nack{"id-1", "too_large", "", std::nullopt},
        Event{"lobby", {3, 43}, R"({"text":"hi"})"},
        Reconnect{"draining", 1'500},
        Reconnect{"", std::nullopt},
    };
    for (const auto& m : all)
        EXPECT_EQ(roundtrip(m), m) << encode(m);
}

TEST(Protocol, OpNamesAreUniqueAndParse) {
    for (int i = 0; i <= static_cast<int>(Op::reconnect); ++i) {
        const auto op = static_cast<Op>(i);
        EXPECT_EQ(parse_op(to_string(op)), op);
    }
    EXPECT_FALSE(parse_op("hello"));  // case-sensitive
}

TEST(Protocol, EnvelopeShapeIsOpAndD) {
    EXPECT_EQ(encode(Leave{"x"}), R"({"op":"LEAVE","d":{"room":"x"}})");
    EXPECT_EQ(encode(Heartbeat{7}), R"({"op":"HEARTBEAT","d":{"ts":7}})");
}

TEST(Protocol, EncodeEscapesStrings) {
    const std::string nasty = std::string{"q\"b\\n\nt\tc"} + '\x01' + "é";
    auto m = roundtrip(Leave{nasty});
    EXPECT_EQ(std::get<Leave>(m).room, nasty);
    EXPECT_NE(encode(Leave{nasty}).find("\\u0001"), std::string::npos);
}

TEST(Protocol, AcceptsMembersInAnyOrderAndIgnoresUnknownOnes) {
    auto r = decode(
        R"({"d":{"offset":2,"extra":[1],"epoch":1,"room":"r","data":7},"op":"EVENT","v":9})");
    ASSERT_TRUE(r);
    EXPECT_EQ(std::get<Event>((*r)), (Event{"r", {1, 2}, "7"}));
}

TEST(Protocol, MissingDIsAnEmptyPayload) {
    auto e = error_of(R"({"op":"LEAVE"})");
    EXPECT_EQ(e.code, DecodeErrc::missing_field);
    EXPECT_EQ(e.field, "d.room");
}

// ---- one test per error path ----

TEST(ProtocolErrors, FrameTooLarge) {
    Limits l;
    l.frame_bytes_max = 16;
    auto e = error_of(R"({"op":"LEAVE","d":{"room":"abc"}})", l);
    EXPECT_EQ(e.code, DecodeErrc::frame_too_large);
    EXPECT_EQ(e.close_code(), 1009);
}

TEST(ProtocolErrors, InvalidJson) {
    for (auto text : {"", "{", "nope", R"({"op":"LEAVE",})", "{\"op\":\"LEAVE\"}garbage"})
        EXPECT_EQ(error_of(text).code, DecodeErrc::invalid_json) << text;
    EXPECT_EQ(error_of("{}x").close_code(), 4002);
}

TEST(ProtocolErrors, InvalidUtf8) {
    const std::string bad = std::string{R"({"op":"LEAVE","d":{"room":")"} + "\xC3\x28" + "\"}}";
    EXPECT_EQ(error_of(bad).code, DecodeErrc::invalid_json);
}

TEST(ProtocolErrors, TooDeep) {
    std::string data;
    for (int i = 0; i < 40; ++i)
        data += "[";
    for (int i = 0; i < 40; ++i)
        data += "]";
    auto e = error_of(R"({"op":"PUBLISH","d":{"room":"r","id":"i","data":)" + data + "}}");
    EXPECT_EQ(e.code, DecodeErrc::too_deep);
    Limits l;
    l.depth_max = 64;
    EXPECT_TRUE(decode(R"({"op":"PUBLISH","d":{"room":"r","id":"i","data":)" + data + "}}", l));
}

TEST(ProtocolErrors, NotAnObject) {
    EXPECT_EQ(error_of("[1,2]").code, DecodeErrc::not_an_object);
    EXPECT_EQ(error_of("42").code, DecodeErrc::not_an_object);
    auto e = error_of(R"({"op":"LEAVE","d":[1]})");
    EXPECT_EQ(e.code, DecodeErrc::not_an_object);
    EXPECT_EQ(e.field, "d");
}

TEST(ProtocolErrors, MissingOp) {
    EXPECT_EQ(error_of(R"({"d":{}})").code, DecodeErrc::missing_op);
    EXPECT_EQ(error_of(R"({"op":7,"d":{}})").code, DecodeErrc::missing_op);
}

TEST(ProtocolErrors, UnknownOp) {
    auto e = error_of(R"({"op":"SUBSCRIBE","d":{}})");
    EXPECT_EQ(e.code, DecodeErrc::unknown_op);
    EXPECT_EQ(e.close_code(), 4001);
    EXPECT_NE(e.message().find("SUBSCRIBE"), std::string::npos);
}

TEST(ProtocolErrors, MissingField) {
    auto e = error_of(R"({"op":"ACK","d":{"id":"x","room":"r","epoch":1}})");
    EXPECT_EQ(e.code, DecodeErrc::missing_field);
    EXPECT_EQ(e.field, "d.offset");
    EXPECT_EQ(e.message(), "missing_field at d.offset: required");
    EXPECT_EQ(error_of(R"({"op":"PUBLISH","d":{"room":"r","id":"i"}})").field, "d.data");
    EXPECT_EQ(error_of(R"({"op":"JOIN","d":{"room":"r","since":{"epoch":1}}})").field,
              "d.since.offset");
}

TEST(ProtocolErrors, WrongType) {
    struct Case {
        const char* text;
        const char* field;
    };
    for (auto c :
         {Case{R"({"op":"LEAVE","d":{"room":5}})", "d.room"},
          Case{R"({"op":"EVENT","d":{"room":"r","epoch":"1","offset":1,"data":0}})", "d.epoch"},
          Case{R"({"op":"INVALID_SESSION","d":{"resumable":"yes"}})", "d.resumable"},
          Case{R"({"op":"HEARTBEAT","d":{"ts":1.5}})", "d.ts"},
          Case{R"({"op":"RESUME","d":{"session_id":"s","resume_token":"t","rooms":{}}})",
               "d.rooms"},
          Case{R"({"op":"RESUME","d":{"session_id":"s","resume_token":"t","rooms":[1]}})",
               "d.rooms[0]"},
          Case{R"({"op":"JOIN","d":{"room":"r","since":3}})", "d.since"},
          Case{R"({"op":"IDENTIFY","d":{"token":"t","client":"x"}})", "d.client"}}) {
        auto e = error_of(c.text);
        EXPECT_EQ(e.code, DecodeErrc::wrong_type) << c.text;
        EXPECT_EQ(e.field, c.field) << c.text;
    }
}

TEST(ProtocolErrors, FieldTooLarge) {
    Limits l;
    l.room_bytes_max = 4;
    EXPECT_EQ(error_of(R"({"op":"LEAVE","d":{"room":"abcde"}})", l).code,
              DecodeErrc::field_too_large);
    l = Limits{};
    l.rooms_max = 1;
    auto e = error_of(R"({"op":"RESUME","d":{"session_id":"s","resume_token":"t","rooms":[)"
                      R"({"room":"a","epoch":1,"offset":1},{"room":"b","epoch":1,"offset":1}]}})",
                      l);
    EXPECT_EQ(e.code, DecodeErrc::field_too_large);
    EXPECT_EQ(e.field, "d.rooms");
    l = Limits{};
    l.token_bytes_max = 3;
    EXPECT_EQ(error_of(R"({"op":"IDENTIFY","d":{"token":"abcd"}})", l).code,
              DecodeErrc::field_too_large);
}

TEST(ProtocolErrors, OutOfRange) {
    EXPECT_EQ(error_of(R"({"op":"ACK","d":{"id":"x","room":"r","epoch":1,"offset":-1}})").code,
              DecodeErrc::out_of_range);
    EXPECT_EQ(error_of(R"({"op":"EVENT","d":{"room":"r","epoch":1,"offset":0,"data":1}})").code,
              DecodeErrc::out_of_range);  // offsets start at 1
    EXPECT_EQ(error_of(R"({"op":"LEAVE","d":{"room":""}})").code, DecodeErrc::out_of_range);
    EXPECT_EQ(error_of(R"({"op":"HELLO","d":{"heartbeat_ms":0,"session_ttl_ms":1}})").code,
              DecodeErrc::out_of_range);
    EXPECT_EQ(error_of(R"({"op":"NACK","d":{"id":"x","code":"c","retry_after_ms":-5}})").code,
              DecodeErrc::out_of_range);
    EXPECT_EQ(error_of(R"({"op":"HEARTBEAT","d":{"ts":18446744073709551615}})").code,
              DecodeErrc::out_of_range);
}

TEST(ProtocolErrors, NeverThrowsOnArbitraryBytes) {
    // A cheap deterministic fuzz: truncations and byte flips of valid frames.
    const std::string base = encode(Resume{"s1", "rt", {RoomPosition{"a", {1, 5}}}});
    for (std::size_t cut = 0; cut <= base.size(); ++cut)
        (void)decode(base.substr(0, cut));
    std::uint32_t x = 12345;
    for (int i = 0; i < 20'000; ++i) {
        std::string s = base;
        x = x * 1664525u + 1013904223u;
        s[x % s.size()] = static_cast<char>(x >> 24);
        (void)decode(s);
    }
    SUCCEED();
}

TEST(Protocol, ValidateData) {
    EXPECT_TRUE(validate_data(R"({"a":[1,2]})"));
    EXPECT_TRUE(validate_data("null"));
    EXPECT_FALSE(validate_data("{"));
    EXPECT_FALSE(validate_data("1 2"));
    std::string deep(40, '[');
    deep += std::string(40, ']');
    EXPECT_EQ(validate_data(deep).error().code, DecodeErrc::too_deep);
}

TEST(Protocol, Utf8Validation) {
    EXPECT_TRUE(is_valid_utf8("plain"));
    EXPECT_TRUE(is_valid_utf8("é€😀"));
    EXPECT_FALSE(is_valid_utf8("\xC3\x28"));          // bad continuation
    EXPECT_FALSE(is_valid_utf8("\xC0\xAF"));          // overlong
    EXPECT_FALSE(is_valid_utf8("\xED\xA0\x80"));      // surrogate
    EXPECT_FALSE(is_valid_utf8("\xF4\x90\x80\x80"));  // > U+10FFFF
    EXPECT_FALSE(is_valid_utf8("\xE2\x82"));          // truncated
}

TEST(Protocol, RetryableCodes) {
    EXPECT_TRUE(codes::retryable(codes::rate_limited));
    EXPECT_TRUE(codes::retryable(codes::internal));
    EXPECT_FALSE(codes::retryable(codes::not_permitted));
    EXPECT_FALSE(codes::retryable(codes::bad_room));
    EXPECT_FALSE(codes::retryable(codes::too_large));
}

TEST(Protocol, DataWithImpreciseDoublesIsStableAcrossHops) {
    // Found by fuzz_protocol: Boost.JSON 1.81 does not always parse long
    // decimals to the nearest double, so a payload could change on every hop.
    for (const char* data : {"88888888888888888888888888888888888888888888888888881",
                             R"({"ep":2.6666666666644447E41})", "[1e400, -0.0, 5e-324]"}) {
        const std::string frame =
            std::string{R"({"op":"PUBLISH","d":{"room":"a","id":"x","data":)"} + data + "}}";
        auto first = tether::proto::decode(frame);
        if (!first) continue;  // out of range for a double: refused, which is fine
        auto second = tether::proto::decode(tether::proto::encode((*first)));
        ASSERT_TRUE(second);
        EXPECT_EQ(std::get<tether::proto::Publish>((*second)).data,
                  std::get<tether::proto::Publish>((*first)).data)
            << data;
    }
}
