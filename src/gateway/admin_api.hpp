#pragma once
// The HTTP routes (wire/http_route.hpp parses them): /healthz, /metrics and
// the admin API under /api/ (Authorization: Bearer <admin key>, rate limited;
// docs/PROTOCOL.md, "Admin API").

#include "gateway/http_util.hpp"

#include <functional>

namespace tether::gateway {

struct Bridge;

/// Answers one request (on the engine strand); `respond` may run later (a
/// publish is answered once durable) and from the engine strand.
void route_http(Bridge& bridge, Request&& req, std::function<void(Response)> respond);

}  // namespace tether::gateway
