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

inline constexpr std::uint16_t normal = 1000;      ///< orderly close
inline constexpr std::uint16_t going_away = 1001;  ///< the client goes away (offline, closing)
inline constexpr std::uint16_t abnormal = 1006;    ///< local only: no close frame was received
inline constexpr std::uint16_t policy_violation = 1008;  ///< a generic server refused the client
inline constexpr std::uint16_t message_too_big = 1009;   ///< a message above the limit
inline constexpr std::uint16_t internal_error = 1011;    ///< a server error
inline constexpr std::uint16_t service_restart = 1012;   ///< the server restarts
inline constexpr std::uint16_t try_again_later =
    1013;  ///< try again later (overload, draining, starting)
inline constexpr std::uint16_t unknown_error = 4000;      ///< also "heartbeat timeout"
inline constexpr std::uint16_t unknown_op = 4001;         ///< an op that is not part of v1
inline constexpr std::uint16_t decode_error = 4002;       ///< an undecodable frame
inline constexpr std::uint16_t not_authenticated = 4003;  ///< not authenticated yet
inline constexpr std::uint16_t authentication_failed =
    4004;  ///< authentication failed (re-identify with fresh credentials)
inline constexpr std::uint16_t already_authenticated = 4005;  ///< IDENTIFY or RESUME a second time
inline constexpr std::uint16_t invalid_position =
    4007;                                            ///< the replay position fell out of history
inline constexpr std::uint16_t rate_limited = 4008;  ///< a publish flood
inline constexpr std::uint16_t session_timed_out = 4009;  ///< the session expired
inline constexpr std::uint16_t slow_consumer =
    4010;  ///< the client read too slowly (its session stays)
inline constexpr std::uint16_t invalid_version =
    4012;                                             ///< the subprotocol tether.v1 was not offered
inline constexpr std::uint16_t not_permitted = 4013;  ///< not permitted
inline constexpr std::uint16_t disallowed = 4014;     ///< disallowed

/// One row of the close-code table.
struct Info {
    std::uint16_t code;              ///< the code
    std::string_view name;           ///< its name in the table
    bool reconnect;                  ///< the client reconnects with backoff
    bool resume;                     ///< the session may be resumed on the next connection
    bool fatal;                      ///< by default: stop retrying, escalate or surface to the app
    std::string_view client_action;  ///< what a client does after it
};

/// Every code of the table, in ascending order.
std::span<const Info> table() noexcept;

/// Row for `code`; codes not in the table get a generic row (reconnect,
/// resume, not fatal) named "unknown".
const Info& info(std::uint16_t code) noexcept;

}  // namespace tether::close_code
