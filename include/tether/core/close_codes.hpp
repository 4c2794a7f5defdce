#pragma once
/// @file
/// WebSocket close codes used by protocol v1 and what a client must do after
/// each (docs/PROTOCOL.md holds the same table in prose).
///
/// @par Thread safety
/// Pure functions and constant data.

#include <cstdint>
#include <span>
#include <string_view>

namespace tether::close_code {

inline constexpr std::uint16_t normal = 1000;
inline constexpr std::uint16_t going_away = 1001;
inline constexpr std::uint16_t abnormal = 1006;  ///< local only: no close frame was received
inline constexpr std::uint16_t policy_violation = 1008;
inline constexpr std::uint16_t message_too_big = 1009;
inline constexpr std::uint16_t internal_error = 1011;
inline constexpr std::uint16_t service_restart = 1012;
inline constexpr std::uint16_t try_again_later = 1013;
inline constexpr std::uint16_t unknown_error = 4000;  ///< also "heartbeat timeout"
inline constexpr std::uint16_t unknown_op = 4001;
inline constexpr std::uint16_t decode_error = 4002;
inline constexpr std::uint16_t not_authenticated = 4003;
inline constexpr std::uint16_t authentication_failed = 4004;
inline constexpr std::uint16_t already_authenticated = 4005;
inline constexpr std::uint16_t invalid_position = 4007;
inline constexpr std::uint16_t rate_limited = 4008;
inline constexpr std::uint16_t session_timed_out = 4009;
inline constexpr std::uint16_t slow_consumer = 4010;
inline constexpr std::uint16_t invalid_version = 4012;
inline constexpr std::uint16_t not_permitted = 4013;
inline constexpr std::uint16_t disallowed = 4014;

/// One row of the close-code table.
struct Info {
    std::uint16_t code;
    std::string_view name;
    bool reconnect;  ///< the client reconnects with backoff
    bool resume;     ///< the session may be resumed on the next connection
    bool fatal;      ///< by default: stop retrying, escalate or surface to the app
    std::string_view client_action;
};

/// Every code of the table, in ascending order.
std::span<const Info> table() noexcept;

/// Row for `code`; codes not in the table get a generic row (reconnect,
/// resume, not fatal) named "unknown".
const Info& info(std::uint16_t code) noexcept;

}  // namespace tether::close_code
