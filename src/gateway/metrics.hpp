#pragma once
// GET /metrics: Prometheus text exposition of the engine's and the gateway's
// counters.

#include <tether/core/server_engine.hpp>

#include <string>

namespace tether::gateway {

struct GatewayCounters;

/// The metrics page (text format 0.0.4).
std::string metrics_text(const ServerEngine& engine, const GatewayCounters& counters);

}  // namespace tether::gateway
