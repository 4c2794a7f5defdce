#include "wire/http_route.hpp"

#include <tether/core/protocol.hpp>

#include <boost/url/parse.hpp>

#include <optional>
#include <vector>

namespace tether::wire {

namespace {

using Kind = HttpRoute::Kind;

HttpRoute error(Kind k, std::string message, bool admin) {
    HttpRoute r;
    r.kind = k;
    r.admin = admin;
    r.error = std::move(message);
    return r;
}

/// A non-negative decimal of at most 19 digits, capped at `max`; `dflt` when absent.
bool number_param(const boost::urls::params_view& params, std::string_view key, std::uint64_t dflt,
                  std::uint64_t max, std::uint64_t& out) {
    auto it = params.find(key);
    if (it == params.end()) {
        out = dflt;
        return true;
    }
    const std::string v = (*it).value;
    if (v.empty() || v.size() > 19 || v.find_first_not_of("0123456789") != std::string::npos)
        return false;
    out = std::min<std::uint64_t>(std::stoull(v), max);
    return true;
}

bool valid_room(std::string_view room, std::size_t max) {
    if (room.empty() || room.size() > max || !proto::is_valid_utf8(room)) return false;
    for (char ch : room) {
        const auto c = static_cast<unsigned char>(ch);
        if (c < 0x20 || c == 0x7f) return false;
    }
    return true;
}

}  // namespace

HttpRoute parse_http_route(bool get, bool post, std::string_view target,
                           const HttpRouteLimits& limits) {
    auto parsed = boost::urls::parse_origin_form(target);
    if (!parsed) return error(Kind::bad_request, "malformed target", false);
    std::vector<std::string> seg;
    for (auto s : parsed->segments()) {
        if (seg.size() >= limits.segments_max) return error(Kind::not_found, "not found", false);
        seg.push_back(s);
    }
    if (seg.size() == 1 && (seg[0] == "healthz" || seg[0] == "metrics")) {
        if (!get) return error(Kind::method_not_allowed, "use GET", false);
        HttpRoute r;
        r.kind = seg[0] == "healthz" ? Kind::healthz : Kind::metrics;
        return r;
    }
    if (seg.empty() || seg[0] != "api") return error(Kind::not_found, "not found", false);

    const auto params = parsed->params();
    HttpRoute r;
    r.admin = true;
    if (seg.size() == 2 && seg[1] == "sessions") {
        if (!get) return error(Kind::method_not_allowed, "use GET", true);
        if (!number_param(params, "limit", limits.sessions_limit_default, limits.sessions_limit_max,
                          r.limit))
            return error(Kind::bad_request, "limit must be a number", true);
        r.kind = Kind::sessions;
        return r;
    }
    if ((seg.size() == 3 || seg.size() == 4) && seg[1] == "sessions") {
        if (seg[2].size() > limits.id_bytes_max)
            return error(Kind::not_found, "no such session", true);
        if (seg.size() == 4 && seg[3] != "disconnect")
            return error(Kind::not_found, "not found", true);
        if (seg.size() == 3 && !get) return error(Kind::method_not_allowed, "use GET", true);
        if (seg.size() == 4 && !post) return error(Kind::method_not_allowed, "use POST", true);
        r.kind = seg.size() == 3 ? Kind::session : Kind::disconnect;
        r.session_id = seg[2];
        return r;
    }
    if (seg.size() == 4 && seg[1] == "rooms") {
        if (!valid_room(seg[2], limits.room_bytes_max))
            return error(Kind::bad_request, "invalid room name", true);
        r.room = seg[2];
        if (seg[3] == "publish") {
            if (!post) return error(Kind::method_not_allowed, "use POST", true);
            r.kind = Kind::publish;
            return r;
        }
        if (seg[3] == "history") {
            if (!get) return error(Kind::method_not_allowed, "use GET", true);
            if (!number_param(params, "since", 0, UINT64_MAX - 1, r.since) ||
                !number_param(params, "limit", limits.history_limit_default,
                              limits.history_limit_max, r.limit))
                return error(Kind::bad_request, "since and limit must be non-negative integers",
                             true);
            r.kind = Kind::history;
            return r;
        }
    }
    return error(Kind::not_found, "not found", true);
}

}  // namespace tether::wire
