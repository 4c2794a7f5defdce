// The gateway's own RFC 6455 framing (src/wire/ws_frame.hpp): every rule the
// parser enforces, byte-at-a-time feeding, and the writers.
#include "wire/ws_frame.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ws = tether::wire::ws;
using Kind = ws::Event::Kind;

namespace {

/// A client frame: masked with `key`, `len_form` forcing the length encoding
/// (0: minimal, 126/127: extended even when not needed).
std::string client_frame(unsigned op, std::string_view payload, bool fin = true, bool masked = true,
                         unsigned rsv = 0, unsigned len_form = 0) {
    std::string f;
    f += static_cast<char>((fin ? 0x80 : 0) | rsv | op);
    const auto n = payload.size();
    const char m = masked ? static_cast<char>(0x80) : 0;
    if (len_form == 0 && n < 126) {
        f += static_cast<char>(m | static_cast<char>(n));
    } else if (len_form == 126 || (len_form == 0 && n < 65536)) {
        f += static_cast<char>(m | 126);
        f += static_cast<char>(n >> 8);
        f += static_cast<char>(n & 0xff);
    } else {
        f += static_cast<char>(m | 127);
        for (int k = 7; k >= 0; --k)
            f += static_cast<char>((static_cast<std::uint64_t>(n) >> (8 * k)) & 0xff);
    }
    const unsigned char key[4] = {0x12, 0x34, 0x56, 0x78};
    if (masked) f.append(reinterpret_cast<const char*>(key), 4);
    for (std::size_t i = 0; i < n; ++i)
        f += masked ? static_cast<char>(static_cast<unsigned char>(payload[i]) ^ key[i & 3])
                    : payload[i];
    return f;
}

std::vector<ws::Event> parse(const std::string& bytes, std::size_t max = 1024,
                             bool one_byte_at_a_time = false) {
    ws::ServerParser p{max};
    std::vector<ws::Event> out;
    if (one_byte_at_a_time) {
        for (char c : bytes)
            p.feed(std::string_view{&c, 1}, out);
    } else {
        p.feed(bytes, out);
    }
    return out;
}

std::uint16_t error_code(const std::string& bytes, std::size_t max = 1024) {
    const auto ev = parse(bytes, max);
    if (ev.empty() || ev.back().kind != Kind::error) return 0;
    return ev.back().code;
}

}  // namespace

TEST(WsFrame, TextMessagesInOneChunkAndByteByByte) {
    const std::string bytes = client_frame(1, "hello") + client_frame(1, "") +
                              client_frame(1, std::string(300, 'x')) +
                              client_frame(1, std::string(70'000, 'y'), true, true, 0, 127);
    for (bool slow : {false, true}) {
        const auto ev = parse(bytes, 100'000, slow);
        ASSERT_EQ(ev.size(), 4u);
        EXPECT_EQ(ev[0].data, "hello");
        EXPECT_EQ(ev[1].data, "");
        EXPECT_EQ(ev[2].data, std::string(300, 'x'));
        EXPECT_EQ(ev[3].data, std::string(70'000, 'y'));
        for (const auto& e : ev)
            EXPECT_EQ(e.kind, Kind::text);
    }
}

TEST(WsFrame, FragmentsWithControlFramesInBetween) {
    const std::string bytes = client_frame(1, "he", false) + client_frame(9, "p") +
                              client_frame(0, "ll", false) + client_frame(0, "o");
    const auto ev = parse(bytes);
    ASSERT_EQ(ev.size(), 2u);
    EXPECT_EQ(ev[0].kind, Kind::ping);
    EXPECT_EQ(ev[0].data, "p");
    EXPECT_EQ(ev[1].kind, Kind::text);
    EXPECT_EQ(ev[1].data, "hello");
}

TEST(WsFrame, BinaryPongAndClose) {
    const std::string close = client_frame(8, std::string{"\x0f\xa0", 2} + "bye");  // 4000
    const auto ev = parse(client_frame(2, "\x01\x02") + client_frame(10, "") + close +
                          client_frame(1, "after close is ignored"));
    ASSERT_EQ(ev.size(), 3u);
    EXPECT_EQ(ev[0].kind, Kind::binary);
    EXPECT_EQ(ev[1].kind, Kind::pong);
    EXPECT_EQ(ev[2].kind, Kind::close);
    EXPECT_EQ(ev[2].code, 4000);
    EXPECT_EQ(ev[2].data, "bye");
    const auto empty = parse(client_frame(8, ""));
    ASSERT_EQ(empty.size(), 1u);
    EXPECT_EQ(empty[0].code, 0);
}

TEST(WsFrame, ProtocolErrorsClose1002) {
    EXPECT_EQ(error_code(client_frame(1, "x", true, false)), 1002);       // not masked
    EXPECT_EQ(error_code(client_frame(1, "x", true, true, 0x40)), 1002);  // RSV1 (no deflate)
    EXPECT_EQ(error_code(client_frame(3, "x")), 1002);                    // reserved opcode
    EXPECT_EQ(error_code(client_frame(0xB, "x")), 1002);                  // reserved control
    EXPECT_EQ(error_code(client_frame(0, "x")), 1002);                    // stray continuation
    EXPECT_EQ(error_code(client_frame(1, "a", false) + client_frame(1, "b")), 1002);  // nested
    EXPECT_EQ(error_code(client_frame(9, "p", false)), 1002);                  // fragmented ping
    EXPECT_EQ(error_code(client_frame(9, std::string(126, 'p'))), 1002);       // long ping
    EXPECT_EQ(error_code(client_frame(8, "x")), 1002);                         // 1-byte close
    EXPECT_EQ(error_code(client_frame(8, std::string{"\x03\xed", 2})), 1002);  // 1005 on the wire
    EXPECT_EQ(error_code(client_frame(8, std::string{"\x03\xe7", 2})), 1002);  // 999
    EXPECT_EQ(error_code(client_frame(1, "x", true, true, 0, 126)), 1002);     // non-minimal 16-bit
    EXPECT_EQ(error_code(client_frame(1, std::string(200, 'x'), true, true, 0, 127)), 1002);
}

TEST(WsFrame, TooBigIsRefusedAtTheHeader) {
    // The header alone announces 2 MiB: refused before any payload arrives.
    std::string header = client_frame(1, std::string(2u << 20, 'x')).substr(0, 14);
    EXPECT_EQ(error_code(header, 1u << 20), 1009);
    // Fragments add up.
    std::string frags;
    for (int i = 0; i < 3; ++i)
        frags += client_frame(i == 0 ? 1 : 0, std::string(400, 'x'), false);
    EXPECT_EQ(error_code(frags, 1000), 1009);
    EXPECT_EQ(error_code(client_frame(1, std::string(1000, 'x')), 1000), 0);  // exactly the limit
}

TEST(WsFrame, InvalidUtf8Closes1007) {
    EXPECT_EQ(error_code(client_frame(1, "\xff\xfe")), 1007);
    EXPECT_EQ(error_code(client_frame(1, "\xed\xa0\x80")), 1007);  // a surrogate
    // A sequence split across fragments is fine once the message is whole.
    const auto ev = parse(client_frame(1, "\xe2\x82", false) + client_frame(0, "\xac"));
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(ev[0].data, "\xe2\x82\xac");
    EXPECT_EQ(error_code(client_frame(8, std::string{"\x03\xe8", 2} + "\xff")), 1007);
}

TEST(WsFrame, HeadersAndClosePayload) {
    unsigned char h[10];
    EXPECT_EQ(ws::write_header(h, ws::Opcode::text, 125), 2u);
    EXPECT_EQ(h[0], 0x81);
    EXPECT_EQ(h[1], 125);
    EXPECT_EQ(ws::write_header(h, ws::Opcode::text, 126), 4u);
    EXPECT_EQ(h[1], 126);
    EXPECT_EQ(h[2], 0);
    EXPECT_EQ(h[3], 126);
    EXPECT_EQ(ws::write_header(h, ws::Opcode::close, 65536), 10u);
    EXPECT_EQ(h[0], 0x88);
    EXPECT_EQ(h[1], 127);
    EXPECT_EQ(h[7], 1);
    const auto p = ws::close_payload(4010, "slow");
    EXPECT_EQ(p, std::string("\x0f\xaa", 2) + "slow");
    // A long reason is cut to the 125-byte control frame limit, on a UTF-8 boundary.
    std::string euros;
    for (int i = 0; i < 60; ++i)
        euros += "\xe2\x82\xac";
    const auto cut = ws::close_payload(1000, euros);
    EXPECT_LE(cut.size(), 125u);
    EXPECT_EQ((cut.size() - 2) % 3, 0u);
}
