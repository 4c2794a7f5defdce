#include "gateway/admin_api.hpp"

#include "gateway/bridge.hpp"
#include "gateway/metrics.hpp"
#include "gateway/system.hpp"
#include "wire/http_route.hpp"

#include <tether/core/constant_time.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <iterator>

namespace tether::gateway {

namespace http = boost::beast::http;
namespace json = boost::json;
using wire::HttpRoute;
using wire::HttpRouteLimits;
using wire::parse_http_route;

namespace {

void route_admin(Bridge& g, const Request& req, const wire::HttpRoute& r,
                 const std::function<void(Response)>& respond);

}  // namespace

void route_http(Bridge& g, Request&& req, std::function<void(Response)> respond) {
    // The key check and the admin rate limit run on the control strand; each
    // route then asks the shard that knows (or all of them).
    g.on_control([&g, req = std::move(req), respond = std::move(respond)]() mutable {
        auto& counters = g.counters;
        auto& opt = g.opt;
        ++counters.http_requests;
        HttpRouteLimits rl;
        rl.room_bytes_max = g.room_bytes_max;
        rl.id_bytes_max = g.limits.id_bytes_max;
        const auto target = req.target();
        const HttpRoute r =
            parse_http_route(req.method() == http::verb::get, req.method() == http::verb::post,
                             std::string_view{target.data(), target.size()}, rl);
        if (r.admin) {
            // The key and the rate limit come first: an unauthenticated
            // caller learns nothing about the routes.
            if (!opt.admin_key)
                return respond(
                    make_response(http::status::forbidden,
                                  error_body("admin API disabled: start with --admin-key"), true));
            const auto auth = req[http::field::authorization];
            const std::string_view header{auth.data(), auth.size()};
            constexpr std::string_view kBearer = "Bearer ";
            if (header.substr(0, kBearer.size()) != kBearer ||
                !constant_time_equal(header.substr(kBearer.size()), *opt.admin_key)) {
                ++counters.admin_unauthorized;
                auto res = make_response(http::status::unauthorized,
                                         error_body("missing or wrong admin key"), true);
                res.set(http::field::www_authenticate, "Bearer");
                return respond(std::move(res));
            }
            if (!g.take_admin_token()) {
                ++counters.admin_rate_limited;
                auto res = make_response(http::status::too_many_requests,
                                         error_body("admin API rate limit"), true);
                res.set(http::field::retry_after, "1");
                return respond(std::move(res));
            }
        }
        using Kind = HttpRoute::Kind;
        switch (r.kind) {
            case Kind::not_found:
                return respond(make_response(http::status::not_found, error_body(r.error), true));
            case Kind::bad_request:
                return respond(
                    make_response(http::status::bad_request, error_body(r.error), r.admin));
            case Kind::method_not_allowed:
                return respond(
                    make_response(http::status::method_not_allowed, error_body(r.error), true));
            case Kind::healthz: {
                if (g.draining)
                    return respond(make_response(http::status::service_unavailable,
                                                 R"({"status":"draining"})", true));
                const auto problem = g.opt.health_problem ? g.opt.health_problem() : "";
                if (!problem.empty()) {
                    json::object o;
                    o["status"] = "unavailable";
                    o["reason"] = problem;
                    return respond(
                        make_response(http::status::service_unavailable, json::serialize(o), true));
                }
                return respond(make_response(http::status::ok, R"({"status":"ok"})", true));
            }
            case Kind::metrics:
                return g.gather<EngineStats>(
                    [](Shard& s) { return s.stats(); },
                    [&g, respond](const std::vector<EngineStats>& parts) {
                        EngineStats sum;
                        for (const auto& p : parts)
                            sum += p;
                        auto text = metrics_text(sum, g.shards.size(), g.counters);
                        if (g.opt.extra_metrics) text += g.opt.extra_metrics();
                        respond(make_response(http::status::ok, std::move(text), true,
                                              "text/plain; version=0.0.4"));
                    });
            default:
                return route_admin(g, req, r, respond);
        }
    });
}

namespace {

void route_admin(Bridge& g, const Request& req, const wire::HttpRoute& r,
                 const std::function<void(Response)>& respond) {
    using Kind = HttpRoute::Kind;
    auto session_json = [](const SessionInfo& s) {
        json::object o;
        o["id"] = s.id;
        o["user"] = s.user;
        json::array rooms;
        for (const auto& room : s.rooms)
            rooms.emplace_back(room);
        o["rooms"] = std::move(rooms);
        o["connected"] = s.connected;
        if (!s.connected) o["expires_at_ms"] = s.expires_at_ms;
        return o;
    };
    switch (r.kind) {
        case Kind::sessions: {
            // Every shard's, merged in id order.
            return g.gather<std::vector<SessionInfo>>(
                [](Shard& s) { return s.engine.sessions(); },
                [respond, limit = r.limit,
                 session_json](std::vector<std::vector<SessionInfo>> parts) {
                    std::vector<SessionInfo> all;
                    for (auto& p : parts)
                        all.insert(all.end(), std::make_move_iterator(p.begin()),
                                   std::make_move_iterator(p.end()));
                    std::sort(
                        all.begin(), all.end(),
                        [](const SessionInfo& a, const SessionInfo& b) { return a.id < b.id; });
                    json::array list;
                    for (const auto& s : all) {
                        if (list.size() >= limit) break;
                        list.push_back(session_json(s));
                    }
                    json::object o;
                    o["sessions"] = std::move(list);
                    o["total"] = all.size();
                    respond(make_response(http::status::ok, json::serialize(o), true));
                });
        }
        case Kind::session: {
            Shard& sh = g.shard_for_session(r.session_id);
            return sh.post([&sh, respond, id = r.session_id, session_json] {
                auto s = sh.engine.session(id);
                if (!s)
                    return respond(make_response(http::status::not_found,
                                                 error_body("no such session"), true));
                respond(make_response(http::status::ok, json::serialize(session_json(*s)), true));
            });
        }
        case Kind::disconnect: {
            Shard& sh = g.shard_for_session(r.session_id);
            return sh.post([&sh, respond, id = r.session_id] {
                if (!sh.engine.disconnect_session(wall_ms(), id))
                    return respond(make_response(http::status::not_found,
                                                 error_body("no such session"), true));
                sh.flush();
                respond(make_response(http::status::ok, R"({"disconnected":true})", true));
            });
        }
        case Kind::publish: {
            if (req.body().size() > g.message_bytes_max)
                return respond(make_response(http::status::payload_too_large,
                                             error_body("payload too large"), true));
            if (auto valid = proto::validate_data(req.body(), g.limits); !valid)
                return respond(make_response(
                    http::status::bad_request,
                    error_body("body must be one JSON value: " + valid.error().message()), true));
            Shard& sh = g.shard_for_room(r.room);
            return sh.post([&sh, respond, room = r.room, body = req.body()]() mutable {
                sh.engine.publish(
                    wall_ms(), room, std::move(body),
                    [respond, room](result<proto::StreamPosition> pos) {
                        if (!pos)
                            return respond(make_response(
                                http::status::service_unavailable,
                                error_body("not stored: " + pos.error().message()), true));
                        json::object o;
                        o["room"] = room;
                        o["epoch"] = pos->epoch;
                        o["offset"] = pos->offset;
                        respond(make_response(http::status::ok, json::serialize(o), true));
                    });
                sh.flush();
            });
        }
        case Kind::history: {
            Shard& sh = g.shard_for_room(r.room);
            return sh.post([&sh, respond, room = r.room, since = r.since, limit = r.limit] {
                sh.engine.history(
                    room, since, limit, 1u << 20, [respond, room](result<HistoryPage> page) {
                        if (!page)
                            return respond(make_response(
                                http::status::service_unavailable,
                                error_body("history unavailable: " + page.error().message()),
                                true));
                        json::object o;
                        o["room"] = room;
                        o["epoch"] = page->info.epoch;
                        o["head"] = page->info.head;
                        o["first"] = page->info.first;
                        std::string events = "[";
                        for (const auto& e : page->events) {
                            if (events.size() > 1) events += ',';
                            events += R"({"offset":)" + std::to_string(e.offset) + R"(,"at_ms":)" +
                                      std::to_string(e.at_ms) + R"(,"data":)" + e.data + "}";
                        }
                        events += "]";
                        std::string body = json::serialize(o);
                        body.pop_back();
                        body += R"(,"events":)" + events + "}";
                        respond(make_response(http::status::ok, std::move(body), true));
                    });
                sh.flush();
            });
        }
        default:
            respond(make_response(http::status::not_found, error_body("not found"), true));
    }
}

}  // namespace

}  // namespace tether::gateway
