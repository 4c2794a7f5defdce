#pragma once
/// @file
/// Errors as values (the shape of Boost.Beast's `websocket/error.hpp`).
///
/// Every failure a caller can act on is an enumerator of `tether::error`,
/// wired to `std::error_code` through `tether::error_category()`. Callers and
/// tests branch on codes; the human text (`message()`, and the detail some
/// failures carry) is for logs and user interfaces.
///
/// Functions that can fail return `tether::result<T>` (Boost.System's
/// `result<T, std::error_code>`) or, where a human needs to know what to fix
/// (configuration, files, URLs), `tether::result<T, tether::Error>`, whose
/// `Error` carries a code and a sentence.
///
/// @par Example
/// @code
/// auto id = core.publish(now, "lobby", R"({"text":"hi"})");
/// if (!id && id.error() == tether::error::outbox_full) show("queue full, try later");
/// @endcode
///
/// @par Thread safety
/// Pure functions and constant data.

#include <boost/system/result.hpp>

#include <string>
#include <system_error>

namespace tether {

/// The failures of tether's clients, links, protocol and tokens.
enum class error {
    // ---- calls of the application (publish, join, send, restore) ----
    invalid_room = 1,  ///< a room name that is empty, too long or not UTF-8
    invalid_data,      ///< publish data that is not one JSON value within the limits
    too_large,         ///< a message above the frame, message or queue limit
    outbox_full,       ///< the outbox is at its bounds and refuses new messages
    queue_full,        ///< the socket's send queue is at its bounds
    too_many_rooms,    ///< `rooms_max` rooms are tracked already
    dropped,           ///< dropped from a full outbox or queue (drop_oldest)
    expired,           ///< `message_ttl` passed before the server acknowledged it
    client_closed,     ///< the client was closed or destroyed before the call could complete
    invalid_config,    ///< an option out of its range (the detail names it)
    invalid_state,     ///< a snapshot or state file that cannot be restored
    bad_call,          ///< called in a state that does not allow it (restore after connect)

    // ---- refusals by the server (NACK, JOIN_ERROR) ----
    rate_limited,   ///< NACK/JOIN_ERROR rate_limited: retried by the client
    not_permitted,  ///< the server does not allow it (JOIN_ERROR/NACK not_permitted)
    bad_room,       ///< the server refuses the room name
    rejected,       ///< any other NACK/JOIN_ERROR code (the reason says which)

    // ---- the link ----
    resolve_failed,        ///< the host name did not resolve
    connect_failed,        ///< TCP connect failed (refused, unreachable)
    tls_failed,            ///< the TLS handshake failed for another reason than the certificate
    certificate_rejected,  ///< the server's certificate failed verification
    probe_failed,          ///< the HTTP probe did not answer 2xx
    upgrade_failed,        ///< the WebSocket handshake failed (HTTP status in the detail)
    subprotocol_rejected,  ///< the server did not accept the required subprotocol
    write_queue_full,      ///< the link's write queue passed its bound
    message_too_big,       ///< the peer sent a message above the limit
    connection_lost,       ///< the connection broke (reset, EOF, read or write error)

    // ---- the protocol and its timers ----
    decode_error,         ///< a frame that is not valid protocol v1
    protocol_violation,   ///< a valid frame at the wrong time
    gap,                  ///< an event skipped an offset (the client reconnects and resumes)
    open_timeout,         ///< TCP + TLS + WebSocket handshake took too long
    auth_timeout,         ///< no answer to IDENTIFY/RESUME or the auth message in time
    credentials_timeout,  ///< the credentials callback did not answer in time
    credentials_failed,   ///< the credentials callback failed or gave an unusable token
    sync_timeout,         ///< rejoining and catching up took too long
    join_timeout,         ///< JOINs went unanswered
    liveness_timeout,     ///< no heartbeat ack or pong in time
    auth_rejected,        ///< the auth reply of a generic server was refused

    // ---- the gateway's store ----
    store_failed,       ///< the store could not write (a disk error); nothing more is acknowledged
    store_unavailable,  ///< the store cannot be reached now; retry later

    // ---- access tokens (the gateway's verifier) ----
    token_malformed,      ///< not three base64url parts of JSON, or claims missing
    token_unsupported,    ///< an algorithm other than the configured one
    token_bad_signature,  ///< the signature does not verify
    token_expired,        ///< `exp` has passed
    token_not_yet_valid,  ///< `nbf` is in the future
};

/// The category of tether::error ("tether").
const std::error_category& error_category() noexcept;

/// Makes `e` an std::error_code (found by ADL).
inline std::error_code make_error_code(error e) noexcept {
    return {static_cast<int>(e), error_category()};
}

/// An error code with a sentence for humans: what was wrong and how to fix
/// it ("open timeout must be > 0"). Compare `code`, show `message`.
struct Error {
    std::error_code code;  ///< what failed (compare this)
    std::string message;   ///< what to fix, for humans
    friend bool operator==(const Error&, const Error&) = default;
};

/// Makes an Error from a code and a sentence.
inline Error make_error(error e, std::string message) {
    return Error{make_error_code(e), std::move(message)};
}

/// Thrown by `result<T, Error>::value()` on an error: std::system_error
/// with the code and the message.
[[noreturn]] void throw_exception_from_error(const Error& e, const boost::source_location& loc);

/// The result of a call that can fail.
template <class T, class E = std::error_code>
using result = boost::system::result<T, E>;

}  // namespace tether

template <>
struct std::is_error_code_enum<tether::error> : std::true_type {};
