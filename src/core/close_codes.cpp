#include <tether/core/close_codes.hpp>

#include <algorithm>
#include <array>

namespace tether::close_code {
namespace {

// clang-format off
constexpr std::array<Info, 21> kTable{{
    {normal,                "normal closure",        true,  true,  false, "reconnect only if the application still wants the connection"},
    {going_away,            "going away",            true,  true,  false, "server shutting down or client offline: reconnect with backoff and resume"},
    {abnormal,              "abnormal closure",      true,  true,  false, "link lost without a close frame: reconnect with backoff and resume"},
    {policy_violation,      "policy violation",      true,  true,  false, "reconnect with backoff; the offending frame is not resent"},
    {message_too_big,       "message too big",       true,  true,  false, "a frame exceeded the server limit: drop the message locally, reconnect and resume"},
    {internal_error,        "internal error",        true,  true,  false, "reconnect with backoff and resume"},
    {service_restart,       "service restart",       true,  true,  false, "reconnect with backoff and resume"},
    {try_again_later,       "try again later",       true,  true,  false, "reconnect with backoff and resume"},
    {unknown_error,         "unknown error / heartbeat timeout", true, true, false, "reconnect with backoff and resume"},
    {unknown_op,            "unknown op",            true,  true,  false, "a client bug or version skew: reconnect with backoff and resume"},
    {decode_error,          "decode error",          true,  true,  false, "a client bug: reconnect with backoff and resume"},
    {not_authenticated,     "not authenticated",     false, false, true,  "fatal: re-identify once with fresh credentials, then surface the error"},
    {authentication_failed, "authentication failed", false, false, true,  "fatal: refresh the token once and identify again, then surface the error"},
    {already_authenticated, "already authenticated", true,  true,  false, "a client bug: reconnect with backoff and resume"},
    {invalid_position,      "invalid position",      true,  false, false, "identify afresh and rejoin rooms with their positions"},
    {rate_limited,          "rate limited",          true,  true,  false, "reconnect with backoff (no faster than the backoff allows) and resume"},
    {session_timed_out,     "session timed out",     true,  false, false, "the session is gone: identify afresh and rejoin rooms with their positions"},
    {slow_consumer,         "slow consumer",         true,  true,  false, "the client read too slowly: reconnect with backoff and resume (history fills the gap)"},
    {invalid_version,       "invalid version",       false, false, true,  "fatal: the client speaks a protocol version the server does not"},
    {not_permitted,         "not permitted",         false, false, true,  "fatal: the identity may not do this; surface to the application"},
    {disallowed,            "disallowed",            false, false, true,  "fatal: the identity is not allowed on this server; surface to the application"},
}};
// clang-format on

constexpr Info kUnknown{0, "unknown", true, true, false, "reconnect with backoff and resume"};

}  // namespace

std::span<const Info> table() noexcept {
    return kTable;
}

const Info& info(std::uint16_t code) noexcept {
    auto it =
        std::find_if(kTable.begin(), kTable.end(), [&](const Info& i) { return i.code == code; });
    return it == kTable.end() ? kUnknown : *it;
}

}  // namespace tether::close_code
