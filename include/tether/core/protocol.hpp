#pragma once
/// @file
/// Protocol v1: typed messages and the codec (see docs/PROTOCOL.md).
///
/// Every frame is a WebSocket text frame holding `{"op": "NAME", "d": {...}}`.
/// The version is negotiated with the WebSocket subprotocol `tether.v1`.
///
/// `decode` never throws and never crashes: it returns either a typed message
/// or a precise DecodeError (what was wrong, and in which field). Sizes and
/// nesting are bounded by `Limits`. Application payloads (`data`) are kept as
/// the raw JSON text they arrived as, so the core never re-encodes them.
///
/// @par Thread safety
/// All functions are pure; safe from any thread.

#include <tether/core/error.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace tether::proto {

/// WebSocket subprotocol naming this version.
inline constexpr std::string_view subprotocol = "tether.v1";

enum class Op : std::uint8_t {
    hello,
    identify,
    resume,
    ready,
    resumed,
    invalid_session,
    heartbeat,
    heartbeat_ack,
    join,
    joined,
    join_error,
    leave,
    publish,
    ack,
    nack,
    event,
    reconnect,
};

/// Wire name, e.g. "HEARTBEAT_ACK".
std::string_view to_string(Op op) noexcept;
std::optional<Op> parse_op(std::string_view name) noexcept;

/// A position in a room stream: the epoch and the last offset delivered.
/// Offsets start at 1; offset 0 means "nothing delivered yet".
struct StreamPosition {
    std::uint64_t epoch = 0;
    std::uint64_t offset = 0;
    friend bool operator==(const StreamPosition&, const StreamPosition&) = default;
};

struct ClientInfo {
    std::string name;
    std::string version;
    friend bool operator==(const ClientInfo&, const ClientInfo&) = default;
};

struct RoomPosition {
    std::string room;
    StreamPosition position;
    friend bool operator==(const RoomPosition&, const RoomPosition&) = default;
};

// ---- server -> client -------------------------------------------------------
struct Hello {
    std::int64_t heartbeat_ms = 0;
    std::int64_t session_ttl_ms = 0;
    std::string server_name;
    std::string server_version;
    std::string node_id;
    friend bool operator==(const Hello&, const Hello&) = default;
};
struct Ready {
    std::string session_id;
    std::string resume_token;
    std::string user;
    friend bool operator==(const Ready&, const Ready&) = default;
};
struct Resumed {
    std::string session_id;
    /// A fresh resume token replacing the one just used (one use per token:
    /// a replayed token is refused). Empty: the old one stays valid (older
    /// servers).
    std::string resume_token;
    friend bool operator==(const Resumed&, const Resumed&) = default;
};
struct InvalidSession {
    bool resumable = false;
    friend bool operator==(const InvalidSession&, const InvalidSession&) = default;
};
struct HeartbeatAck {
    std::int64_t ts = 0;  ///< the client timestamp echoed back
    friend bool operator==(const HeartbeatAck&, const HeartbeatAck&) = default;
};
struct Joined {
    std::string room;
    StreamPosition position;  ///< the room's head when the join took effect
    bool recovered = false;   ///< true: everything after `since` follows
    friend bool operator==(const Joined&, const Joined&) = default;
};
struct JoinError {
    std::string room;
    std::string code;
    std::string reason;
    bool fatal = false;
    friend bool operator==(const JoinError&, const JoinError&) = default;
};
struct Ack {
    std::string id;
    std::string room;
    std::uint64_t epoch = 0;
    std::uint64_t offset = 0;
    friend bool operator==(const Ack&, const Ack&) = default;
};
struct Nack {
    std::string id;
    std::string code;
    std::string reason;
    std::optional<std::int64_t> retry_after_ms;
    friend bool operator==(const Nack&, const Nack&) = default;
};
struct Event {
    std::string room;
    StreamPosition position;
    std::string data;  ///< raw JSON text
    friend bool operator==(const Event&, const Event&) = default;
};
struct Reconnect {
    std::string reason;
    std::optional<std::int64_t> retry_after_ms;
    friend bool operator==(const Reconnect&, const Reconnect&) = default;
};

// ---- client -> server -------------------------------------------------------
struct Identify {
    std::string token;
    ClientInfo client;
    friend bool operator==(const Identify&, const Identify&) = default;
};
struct Resume {
    std::string session_id;
    std::string resume_token;
    std::vector<RoomPosition> rooms;
    friend bool operator==(const Resume&, const Resume&) = default;
};
struct Heartbeat {
    std::int64_t ts = 0;  ///< client clock, echoed in HEARTBEAT_ACK for RTT
    friend bool operator==(const Heartbeat&, const Heartbeat&) = default;
};
struct Join {
    std::string room;
    std::optional<StreamPosition> since;
    friend bool operator==(const Join&, const Join&) = default;
};
struct Leave {
    std::string room;
    friend bool operator==(const Leave&, const Leave&) = default;
};
struct Publish {
    std::string room;
    std::string id;
    std::string data;  ///< raw JSON text
    friend bool operator==(const Publish&, const Publish&) = default;
};

using Message =
    std::variant<Hello, Identify, Resume, Ready, Resumed, InvalidSession, Heartbeat, HeartbeatAck,
                 Join, Joined, JoinError, Leave, Publish, Ack, Nack, Event, Reconnect>;

/// The op of a message.
Op op_of(const Message& m) noexcept;

/// NACK and JOIN_ERROR codes.
namespace codes {
inline constexpr std::string_view bad_room = "bad_room";
inline constexpr std::string_view not_permitted = "not_permitted";
inline constexpr std::string_view too_large = "too_large";
inline constexpr std::string_view rate_limited = "rate_limited";
inline constexpr std::string_view too_many_rooms = "too_many_rooms";
inline constexpr std::string_view internal = "internal";
/// The server cannot store it now (draining, its store is down): retry.
inline constexpr std::string_view unavailable = "unavailable";
/// True for codes after which the same request may succeed later.
bool retryable(std::string_view code) noexcept;
}  // namespace codes

/// Bounds enforced by decode (and by the client before it sends).
struct Limits {
    std::size_t frame_bytes_max = 1u << 20;  ///< whole frame (1 MiB)
    std::size_t depth_max = 32;              ///< JSON nesting, envelope included
    std::size_t room_bytes_max = 200;        ///< room names
    std::size_t id_bytes_max = 128;          ///< publish ids, session ids
    std::size_t token_bytes_max = 8192;      ///< access and resume tokens
    std::size_t text_bytes_max = 1024;       ///< reasons, names, versions, codes
    std::size_t rooms_max = 1024;            ///< positions in one RESUME
};

enum class DecodeErrc : std::uint8_t {
    frame_too_large,  ///< frame_bytes_max exceeded (close 1009)
    invalid_json,     ///< not JSON, or invalid UTF-8
    too_deep,         ///< depth_max exceeded
    not_an_object,    ///< the frame or `d` is not an object
    missing_op,       ///< no "op" member, or not a string
    unknown_op,       ///< "op" names no v1 operation (close 4001)
    missing_field,    ///< a required member is absent
    wrong_type,       ///< a member has the wrong JSON type
    field_too_large,  ///< a string or list exceeds its limit
    out_of_range,     ///< a number is negative or too large
};

std::string_view to_string(DecodeErrc e) noexcept;

struct DecodeError {
    DecodeErrc code = DecodeErrc::invalid_json;
    std::string field;   ///< JSON path of the offending member, e.g. "d.room"
    std::string detail;  ///< human-readable explanation
    /// "wrong_type at d.offset: expected a non-negative integer"
    std::string message() const;
    /// The close code a peer must use when it receives this frame.
    std::uint16_t close_code() const noexcept;
};

/// Thrown by DecodeResult::value() on an error: std::invalid_argument with message().
[[noreturn]] void throw_exception_from_error(const DecodeError& e,
                                             const boost::source_location& loc);

/// A decoded message, or why the frame is not one.
using DecodeResult = result<Message, DecodeError>;

/// Parses one text frame. Never throws.
[[nodiscard]] DecodeResult decode(std::string_view frame, const Limits& limits = {}) noexcept;

/// Serialises a message. Strings must be valid UTF-8 and `data` members valid
/// JSON (check with validate_data()); encode does not re-validate them.
std::string encode(const Message& m);

/// Checks that `data` is a single JSON value within the limits (depth counted
/// as it will be inside the envelope).
[[nodiscard]] result<void, DecodeError> validate_data(std::string_view data,
                                                      const Limits& limits = {}) noexcept;

/// True when `s` is well-formed UTF-8.
[[nodiscard]] bool is_valid_utf8(std::string_view s) noexcept;

/// The longest close reason a close frame can carry (RFC 6455 5.5: a control
/// payload is at most 125 bytes, two of them the code).
inline constexpr std::size_t close_reason_bytes_max = 123;

/// `reason` cut to at most close_reason_bytes_max bytes, never inside a
/// UTF-8 sequence: the one place where tether shortens a close reason.
[[nodiscard]] std::string truncate_close_reason(std::string_view reason);

}  // namespace tether::proto
