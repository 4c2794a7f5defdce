#include "gateway/metrics.hpp"

#include "gateway/bridge.hpp"

#include <string_view>

namespace tether::gateway {

std::string metrics_text(const EngineStats& engine, std::size_t shards,
                         const GatewayCounters& counters) {
    const auto& m = engine.metrics;
    std::string out;
    auto line = [&](std::string_view name, std::string_view type, std::string_view help, auto value,
                    std::string_view labels = {}) {
        if (!labels.empty() &&
            out.find(std::string{"# TYPE "} + std::string{name} + " ") != std::string::npos) {
            out +=
                std::string{name} + "{" + std::string{labels} + "} " + std::to_string(value) + "\n";
            return;
        }
        out += "# HELP " + std::string{name} + " " + std::string{help} + "\n";
        out += "# TYPE " + std::string{name} + " " + std::string{type} + "\n";
        out += std::string{name} + (labels.empty() ? "" : "{" + std::string{labels} + "}") + " " +
               std::to_string(value) + "\n";
    };
    line("tether_shards", "gauge", "Engine shards (--shards).", shards);
    line("tether_connections", "gauge", "Open WebSocket connections.", engine.connections);
    line("tether_sessions", "gauge", "Sessions kept (connected or within their retention window).",
         engine.sessions);
    line("tether_rooms", "gauge",
         "Rooms tracked (a subscriber or a waiting join), summed over the shards: a room with "
         "subscribers on two shards counts twice.",
         engine.rooms);
    line("tether_connections_opened_total", "counter", "WebSocket connections accepted.",
         m.connections_opened);
    line("tether_identifies_total", "counter", "IDENTIFY requests.", m.identifies);
    line("tether_auth_failures_total", "counter", "IDENTIFY requests refused (4004).",
         m.auth_failures);
    line("tether_resumes_total", "counter", "RESUME requests by result.", m.resumes_ok,
         "result=\"ok\"");
    line("tether_resumes_total", "counter", "", m.resumes_failed, "result=\"failed\"");
    line("tether_joins_total", "counter", "Successful JOINs.", m.joins);
    line("tether_join_errors_total", "counter", "JOIN_ERROR answers.", m.join_errors);
    line("tether_publishes_total", "counter", "Publications appended to the store.", m.publishes);
    line("tether_publish_duplicates_total", "counter",
         "Publishes answered with the original offset (retries).", m.publish_dupes);
    line("tether_nacks_total", "counter", "Publishes refused with NACK.", m.nacks);
    line("tether_deliveries_total", "counter", "EVENT frames written (live and replay).",
         m.deliveries);
    line("tether_replayed_total", "counter", "EVENT frames written as replay.", m.replayed);
    line("tether_replay_pages_total", "counter", "Replay pages written.", m.replay_pages);
    line("tether_heartbeats_total", "counter", "HEARTBEATs answered.", m.heartbeats);
    line("tether_idle_closes_total", "counter", "Connections closed for silence (4000).",
         m.idle_closes);
    line("tether_sessions_expired_total", "counter",
         "Sessions dropped after their retention window.", m.sessions_expired);
    line("tether_drops_total", "counter", "Connections dropped by the server by reason.",
         counters.slow_consumer_closes.load(), "reason=\"slow_consumer\"");
    line("tether_drops_total", "counter", "", counters.connections_refused.load(),
         "reason=\"too_many_connections\"");
    line("tether_drops_total", "counter", "", counters.invalid_version.load(),
         "reason=\"invalid_version\"");
    line("tether_drops_total", "counter", "", counters.binary_frames.load(),
         "reason=\"binary_frame\"");
    bool first = true;
    for (const auto& [code, n] : m.closes_by_code) {
        line("tether_closes_total", "counter",
             first ? "Closes the engine initiated, by close code." : "", n,
             "code=\"" + std::to_string(code) + "\"");
        first = false;
    }
    line("tether_http_requests_total", "counter", "HTTP requests (not upgrades).",
         counters.http_requests.load());
    line("tether_admin_unauthorized_total", "counter", "Admin requests without a valid key.",
         counters.admin_unauthorized.load());
    line("tether_admin_rate_limited_total", "counter", "Admin requests answered 429.",
         counters.admin_rate_limited.load());
    line("tether_store_requests_total", "counter", "Store requests the engine made.",
         m.store_requests);
    line("tether_store_errors_total", "counter", "Store requests that failed.", m.store_errors);
    line("tether_store_in_flight", "gauge", "Store requests not completed yet.",
         engine.store_in_flight);
    line("tether_appends_in_flight", "gauge", "Publishes not durable yet.",
         engine.appends_in_flight);
    line("tether_shard_moves_total", "counter",
         "Connections moved to the shard of the session they resumed.",
         counters.shard_moves.load());
    line("tether_gap_fills_total", "counter",
         "Live subscribers sent back to the store by a jump in offsets.", m.gap_fills);
    line("tether_sessions_claimed_total", "counter",
         "Sessions resumed here that another node held (shared store).", m.sessions_claimed);
    line("tether_sessions_taken_total", "counter",
         "Sessions another node claimed from this one (shared store).", m.sessions_taken);
    return out;
}

}  // namespace tether::gateway
