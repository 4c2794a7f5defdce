// The gateway's HTTP routing (admin API parameters included) on arbitrary
// request targets: never throws, and every route it accepts is within the
// documented bounds (docs/SECURITY.md) -- ids and room names bounded, room
// names valid UTF-8 without control characters, limits capped.
#include <tether/core/assert.hpp>
#include <tether/core/protocol.hpp>

#include "wire/http_route.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace tether::wire;
    using Kind = HttpRoute::Kind;
    if (size == 0) return 0;
    const bool get = (data[0] & 1) != 0, post = (data[0] & 2) != 0;
    const std::string_view target{reinterpret_cast<const char*>(data + 1), size - 1};
    const HttpRouteLimits limits;
    const HttpRoute r = parse_http_route(get, post, target, limits);
    switch (r.kind) {
        case Kind::sessions:
            TETHER_ASSERT(r.admin && get && r.limit <= limits.sessions_limit_max);
            break;
        case Kind::session:
        case Kind::disconnect:
            TETHER_ASSERT(r.admin && r.session_id.size() <= limits.id_bytes_max);
            TETHER_ASSERT(r.kind == Kind::session ? get : post);
            break;
        case Kind::publish:
        case Kind::history:
            TETHER_ASSERT(r.admin && !r.room.empty() && r.room.size() <= limits.room_bytes_max);
            TETHER_ASSERT(tether::proto::is_valid_utf8(r.room));
            for (unsigned char c : r.room)
                TETHER_ASSERT(c >= 0x20 && c != 0x7f);
            TETHER_ASSERT(r.kind != Kind::history || r.limit <= limits.history_limit_max);
            break;
        case Kind::healthz:
        case Kind::metrics:
            TETHER_ASSERT(!r.admin && get);
            break;
        default:
            TETHER_ASSERT(!r.error.empty());
    }
    return 0;
}
