#pragma once
// GET /metrics: Prometheus text exposition of the engine's and the gateway's
// counters.

#include <tether/core/server_engine.hpp>

#include <string>

namespace tether::gateway {

struct GatewayCounters;
struct EngineStats;

/// The metrics page (text format 0.0.4): the shards' engines summed.
std::string metrics_text(const EngineStats& engine, std::size_t shards,
                         const GatewayCounters& counters);

}  // namespace tether::gateway
