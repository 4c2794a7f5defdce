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

/// The operations of protocol v1 (docs/PROTOCOL.md, "Operations").
enum class Op : std::uint8_t {
    hello,            ///< server: heartbeat interval, session TTL, server name and node
    identify,         ///< client: start a new session with an access token
    resume,           ///< client: resume a session with its secret token and room positions
    ready,            ///< server: the new session (id, resume token, user)
    resumed,          ///< server: the session resumed (and a fresh resume token)
    invalid_session,  ///< server: the session cannot be resumed
    heartbeat,        ///< client: liveness probe with its timestamp
    heartbeat_ack,    ///< server: the timestamp echoed
    join,             ///< client: join a room, optionally from a position
    joined,           ///< server: joined at the room's head; replay follows when recovered
    join_error,       ///< server: the join was refused
    leave,            ///< client: leave a room
    publish,          ///< client: publish one JSON value with a client-chosen id
    ack,              ///< server: stored durably at this position
    nack,             ///< server: refused (with a code, maybe retry_after_ms)
    event,            ///< server: one event of a room, in offset order
    reconnect,        ///< server: reconnect (to another node), after retry_after_ms
};

/// Wire name, e.g. "HEARTBEAT_ACK".
[[nodiscard]] std::string_view to_string(Op op) noexcept;
/// The op named `name` on the wire; nullopt for names not in v1.
[[nodiscard]] std::optional<Op> parse_op(std::string_view name) noexcept;

/// A position in a room stream: the epoch and the last offset delivered.
/// Offsets start at 1; offset 0 means "nothing delivered yet".
struct StreamPosition {
    std::uint64_t epoch = 0;   ///< which stream: changes when the store lost the history
    std::uint64_t offset = 0;  ///< the last offset (0: none)
    friend bool operator==(const StreamPosition&, const StreamPosition&) = default;
};

/// The client's name and version, sent in IDENTIFY.
struct ClientInfo {
    std::string name;     ///< e.g. "tether-cpp"
    std::string version;  ///< e.g. "0.1.0"
    friend bool operator==(const ClientInfo&, const ClientInfo&) = default;
};

/// A room and the last position delivered in it (RESUME).
struct RoomPosition {
    std::string room;         ///< the room's name
    StreamPosition position;  ///< the last event delivered there
    friend bool operator==(const RoomPosition&, const RoomPosition&) = default;
};

// ---- server -> client -------------------------------------------------------
/// HELLO: the first frame of every connection.
struct Hello {
    std::int64_t heartbeat_ms = 0;    ///< send a HEARTBEAT at least this often
    std::int64_t session_ttl_ms = 0;  ///< how long a session outlives its connection
    std::string server_name;          ///< e.g. "tether"
    std::string server_version;       ///< e.g. "0.1.0"
    std::string node_id;              ///< which gateway node answered
    friend bool operator==(const Hello&, const Hello&) = default;
};
/// READY: IDENTIFY succeeded; a new session.
struct Ready {
    std::string session_id;    ///< names the session in RESUME
    std::string resume_token;  ///< the secret that resumes it (bound to the user)
    std::string user;          ///< the authenticated user
    friend bool operator==(const Ready&, const Ready&) = default;
};
/// RESUMED: RESUME succeeded.
struct Resumed {
    std::string session_id;  ///< the session resumed
    /// A fresh resume token replacing the one just used (one use per token:
    /// a replayed token is refused). Empty: the old one stays valid (older
    /// servers).
    std::string resume_token;
    friend bool operator==(const Resumed&, const Resumed&) = default;
};
/// INVALID_SESSION: the session cannot be resumed (unknown, expired, not yours).
struct InvalidSession {
    bool resumable = false;  ///< true: try RESUME again later; false: IDENTIFY
    friend bool operator==(const InvalidSession&, const InvalidSession&) = default;
};
/// HEARTBEAT_ACK: the answer to a HEARTBEAT.
struct HeartbeatAck {
    std::int64_t ts = 0;  ///< the client timestamp echoed back
    friend bool operator==(const HeartbeatAck&, const HeartbeatAck&) = default;
};
/// JOINED: the join took effect.
struct Joined {
    std::string room;         ///< the room joined
    StreamPosition position;  ///< the room's head when the join took effect
    bool recovered = false;   ///< true: everything after `since` follows
    friend bool operator==(const Joined&, const Joined&) = default;
};
/// JOIN_ERROR: the join was refused.
struct JoinError {
    std::string room;    ///< the room refused
    std::string code;    ///< a codes:: value
    std::string reason;  ///< for humans
    bool fatal = false;  ///< true: do not retry this room
    friend bool operator==(const JoinError&, const JoinError&) = default;
};
/// ACK: the publish is stored durably.
struct Ack {
    std::string id;            ///< the publish id
    std::string room;          ///< where it was stored
    std::uint64_t epoch = 0;   ///< the stream's epoch
    std::uint64_t offset = 0;  ///< its offset (a retried publish gets the original)
    friend bool operator==(const Ack&, const Ack&) = default;
};
/// NACK: the publish was refused.
struct Nack {
    std::string id;                              ///< the publish id
    std::string code;                            ///< a codes:: value
    std::string reason;                          ///< for humans
    std::optional<std::int64_t> retry_after_ms;  ///< when a retryable code may succeed
    friend bool operator==(const Nack&, const Nack&) = default;
};
/// EVENT: one event of a room, delivered in offset order.
struct Event {
    std::string room;         ///< the room
    StreamPosition position;  ///< its epoch and offset
    std::string data;         ///< raw JSON text
    friend bool operator==(const Event&, const Event&) = default;
};
/// RECONNECT: the server asks the client to reconnect (a drain).
struct Reconnect {
    std::string reason;                          ///< for humans
    std::optional<std::int64_t> retry_after_ms;  ///< wait this long first
    friend bool operator==(const Reconnect&, const Reconnect&) = default;
};

// ---- client -> server -------------------------------------------------------
/// IDENTIFY: start a new session.
struct Identify {
    std::string token;  ///< the access token
    ClientInfo client;  ///< who is asking
    friend bool operator==(const Identify&, const Identify&) = default;
};
/// RESUME: resume a session after a reconnect.
struct Resume {
    std::string session_id;           ///< from READY
    std::string resume_token;         ///< from READY or the last RESUMED
    std::vector<RoomPosition> rooms;  ///< rooms to rejoin, with the last positions delivered
    friend bool operator==(const Resume&, const Resume&) = default;
};
/// HEARTBEAT: liveness, and the round-trip time.
struct Heartbeat {
    std::int64_t ts = 0;  ///< client clock, echoed in HEARTBEAT_ACK for RTT
    friend bool operator==(const Heartbeat&, const Heartbeat&) = default;
};
/// JOIN: join a room.
struct Join {
    std::string room;                     ///< the room
    std::optional<StreamPosition> since;  ///< replay what follows this position
    friend bool operator==(const Join&, const Join&) = default;
};
/// LEAVE: leave a room.
struct Leave {
    std::string room;  ///< the room
    friend bool operator==(const Leave&, const Leave&) = default;
};
/// PUBLISH: append one JSON value to a room.
struct Publish {
    std::string room;  ///< the room
    std::string id;    ///< client-chosen, unique per user: a retry is deduplicated
    std::string data;  ///< raw JSON text
    friend bool operator==(const Publish&, const Publish&) = default;
};

/// Any message of protocol v1.
using Message =
    std::variant<Hello, Identify, Resume, Ready, Resumed, InvalidSession, Heartbeat, HeartbeatAck,
                 Join, Joined, JoinError, Leave, Publish, Ack, Nack, Event, Reconnect>;

/// The op of a message.
[[nodiscard]] Op op_of(const Message& m) noexcept;

/// NACK and JOIN_ERROR codes.
namespace codes {
/// The room name breaks the server's rule (fatal).
inline constexpr std::string_view bad_room = "bad_room";
/// The user may not join or publish here (fatal).
inline constexpr std::string_view not_permitted = "not_permitted";
/// The payload is above the server's limit (fatal).
inline constexpr std::string_view too_large = "too_large";
/// Too many requests: retry after retry_after_ms.
inline constexpr std::string_view rate_limited = "rate_limited";
/// The connection joined the most rooms it may (fatal).
inline constexpr std::string_view too_many_rooms = "too_many_rooms";
/// A server error: retry.
inline constexpr std::string_view internal = "internal";
/// The server cannot store it now (draining, its store is down): retry.
inline constexpr std::string_view unavailable = "unavailable";
/// True for codes after which the same request may succeed later.
[[nodiscard]] bool retryable(std::string_view code) noexcept;
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

/// Why a frame could not be decoded.
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

/// "wrong_type", "unknown_op", ...
[[nodiscard]] std::string_view to_string(DecodeErrc e) noexcept;

/// A frame that is not valid protocol v1: what, where, and why.
struct DecodeError {
    DecodeErrc code = DecodeErrc::invalid_json;  ///< what was wrong
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
