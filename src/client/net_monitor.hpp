#pragma once
// Network reachability from the host's point of view, for the reconnecting
// clients: Linux netlink (RTMGRP_LINK and the IPv4/IPv6 address groups)
// tells us when links or addresses change; after each change we look at
// getifaddrs() and call the host "online" when some interface other than
// loopback is up, running and has a routable address (not IPv4/IPv6
// link-local). Internal to src/client.
//
// Every handler runs on the executor given at creation; call stop() from it.
// Where netlink is unavailable start() returns an error and the client stays
// online (it still notices dead links by its pings).

#include <tether/core/error.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tether::detail {

/// One interface as seen by getifaddrs (inputs of the online rule).
struct InterfaceInfo {
    std::string name;
    bool up = false;
    bool running = false;
    bool loopback = false;
    std::vector<std::string> addresses;  ///< numeric, e.g. "192.0.2.2", "fe80::1"
};

/// The online rule, separated for tests.
bool is_online(const std::vector<InterfaceInfo>& interfaces);
/// The host's interfaces now (getifaddrs).
std::vector<InterfaceInfo> list_interfaces();
/// True for "localhost", 127.0.0.0/8 and ::1: reachable without a network.
bool is_loopback_host(std::string_view host);

class NetworkMonitor {
  public:
    virtual ~NetworkMonitor() = default;
    /// Opens the netlink socket; calls `on_change(online)` after every change
    /// of the online rule's answer. An error when netlink is unavailable.
    [[nodiscard]] virtual result<void, Error> start() = 0;
    /// The rule's answer at start() or at the last change.
    virtual bool online() const = 0;
    virtual void stop() = 0;
};

std::shared_ptr<NetworkMonitor> make_network_monitor(const boost::asio::any_io_executor& ex,
                                                     std::function<void(bool online)> on_change);

}  // namespace tether::detail
