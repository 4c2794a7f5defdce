#pragma once
// The gateway's HTTP routing as a pure function: request method + target ->
// what to do, with every parameter parsed and bounded. The gateway applies
// the admin key and the rate limit to `admin` routes before acting; the
// fuzz target tests/fuzz/fuzz_admin.cpp feeds it arbitrary targets.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tether::wire {

struct HttpRoute {
    enum class Kind : std::uint8_t {
        healthz,             ///< GET /healthz
        metrics,             ///< GET /metrics
        sessions,            ///< GET /api/sessions?limit=N
        session,             ///< GET /api/sessions/{id}
        disconnect,          ///< POST /api/sessions/{id}/disconnect
        publish,             ///< POST /api/rooms/{room}/publish
        history,             ///< GET /api/rooms/{room}/history?since=N&limit=N
        not_found,           ///< 404 with `error`
        bad_request,         ///< 400 with `error`
        method_not_allowed,  ///< 405 with `error`
    };
    Kind kind = Kind::not_found;
    bool admin = false;  ///< under /api/: needs the admin key (checked first)
    std::string session_id;
    std::string room;
    std::uint64_t since = 0;
    std::uint64_t limit = 0;
    std::string error;  ///< the message of an error route
};

struct HttpRouteLimits {
    std::size_t room_bytes_max = 128;
    std::size_t id_bytes_max = 128;
    std::size_t segments_max = 8;
    std::uint64_t sessions_limit_default = 1000, sessions_limit_max = 10'000;
    std::uint64_t history_limit_default = 100, history_limit_max = 1000;
};

/// `get`/`post`: the request method. `target`: the request target as sent
/// (origin form, percent-encoded). Never throws.
HttpRoute parse_http_route(bool get, bool post, std::string_view target,
                           const HttpRouteLimits& limits = {});

}  // namespace tether::wire
