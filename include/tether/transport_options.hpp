#pragma once
/// @file
/// What both network clients (tether::Client, tether::ReconnectingWebSocket)
/// need to reach a server: the URL, TLS trust, an optional HTTP probe, extra
/// upgrade headers, the host's network monitor. ClientOptions and
/// ReconnectingWebSocketOptions inherit it, next to their core's options.
///
/// @par Thread safety
/// A plain value type.

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace tether {

/// How a network client reaches its server.
struct TransportOptions {
    /// ws://host:port/path or wss://host:port/path. Required.
    std::string url;
    /// Extra headers on the upgrade request.
    std::vector<std::pair<std::string, std::string>> headers;
    /// HTTP(S) URL polled before each attempt (as Matrix clients poll
    /// /versions); the socket is opened only once it answers 2xx.
    std::optional<std::string> probe_url;
    /// TLS: trust this CA file (PEM) instead of the system store.
    std::optional<std::string> ca_file;
    /// TLS: verify the server certificate and host name. False only for
    /// development against self-signed servers.
    bool tls_verify = true;
    /// Watch the host's network (Linux netlink: link and address changes)
    /// and go offline/online with it. Loopback servers are always reachable.
    bool network_monitor = true;
};

}  // namespace tether
