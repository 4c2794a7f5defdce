#pragma once
// The server side of RFC 6455 framing, without I/O: a parser for what clients
// send and the writers of what the gateway sends. The gateway keeps Beast for
// HTTP (the upgrade request) and frames the WebSocket itself, so that it can
// write every queued frame of a connection in one system call and hold no
// per-connection read buffer while the connection is idle (docs/DESIGN.md,
// "Own WebSocket framing"). Fuzzed by tests/fuzz/fuzz_ws_frame.cpp.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tether::wire::ws {

enum class Opcode : std::uint8_t {
    continuation = 0x0,
    text = 0x1,
    binary = 0x2,
    close = 0x8,
    ping = 0x9,
    pong = 0xA,
};

/// RFC 6455 close codes the framing itself uses.
inline constexpr std::uint16_t kCloseNormal = 1000;
inline constexpr std::uint16_t kCloseProtocolError = 1002;
inline constexpr std::uint16_t kCloseInvalidPayload = 1007;
inline constexpr std::uint16_t kCloseTooBig = 1009;

/// One complete unit read from a client.
struct Event {
    enum class Kind : std::uint8_t {
        text,    ///< a complete text message (valid UTF-8), in `data`
        binary,  ///< a complete binary message, in `data`
        ping,    ///< `data` = payload (answer with a pong carrying it)
        pong,
        close,  ///< the client's close frame: `code` (0: none given) and `data` = reason
        error,  ///< a framing error: close with `code`, `data` = reason; nothing follows
    };
    Kind kind = Kind::text;
    std::string data;
    std::uint16_t code = 0;
};

/// Incremental parser of client-to-server frames. Enforces: frames masked,
/// no reserved bits (no extensions are negotiated), known opcodes, control
/// frames unfragmented and at most 125 bytes, continuation only inside a
/// fragmented message, messages at most `message_bytes_max` (1009, checked on
/// each frame header before buffering), text and close reasons valid UTF-8
/// (1007), well-formed close payloads (1002). After a close or an error
/// event it ignores all further input.
class ServerParser {
  public:
    explicit ServerParser(std::size_t message_bytes_max) : message_max_(message_bytes_max) {}

    /// Consumes `bytes`, appending every complete event to `out`.
    void feed(std::string_view bytes, std::vector<Event>& out);
    /// True after a close or error event.
    bool done() const noexcept { return done_; }

  private:
    void fail(std::vector<Event>& out, std::uint16_t code, std::string reason);
    bool header_complete(std::vector<Event>& out);
    void frame_complete(std::vector<Event>& out);

    std::size_t message_max_;
    bool done_ = false;
    // The frame being read.
    unsigned char header_[14] = {};
    std::size_t header_have_ = 0;
    bool in_payload_ = false;
    bool fin_ = false;
    Opcode op_ = Opcode::text;
    std::uint64_t remaining_ = 0;
    unsigned char mask_[4] = {};
    std::size_t mask_at_ = 0;
    std::string control_;  // payload of the control frame being read
    // The data message being assembled (across fragments).
    bool in_message_ = false;
    Opcode message_op_ = Opcode::text;
    std::string message_;
};

/// The header of an unmasked server frame (2, 4 or 10 bytes) into `out`;
/// returns its length.
std::size_t write_header(unsigned char (&out)[10], Opcode op, std::size_t payload_bytes) noexcept;

/// The payload of a close frame: the code, then the reason cut to fit the
/// 125-byte control frame limit on a UTF-8 boundary.
std::string close_payload(std::uint16_t code, std::string_view reason);

}  // namespace tether::wire::ws
