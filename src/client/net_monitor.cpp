#include "client/net_monitor.hpp"

#include <boost/asio/ip/address.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include <array>
#include <cerrno>
#include <cstring>

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace tether::detail {

namespace asio = boost::asio;

bool is_loopback_host(std::string_view host) {
    if (host == "localhost") return true;
    boost::system::error_code ec;
    auto a = asio::ip::make_address(std::string{host}, ec);
    return !ec && a.is_loopback();
}

bool is_online(const std::vector<InterfaceInfo>& interfaces) {
    for (const auto& i : interfaces) {
        if (i.loopback || !i.up || !i.running) continue;
        for (const auto& text : i.addresses) {
            boost::system::error_code ec;
            auto a = asio::ip::make_address(text, ec);
            if (ec || a.is_loopback() || a.is_unspecified()) continue;
            if (a.is_v6() && a.to_v6().is_link_local()) continue;
            if (a.is_v4() && (a.to_v4().to_uint() & 0xFFFF0000u) == 0xA9FE0000u)
                continue;  // 169.254/16
            return true;
        }
    }
    return false;
}

std::vector<InterfaceInfo> list_interfaces() {
    std::vector<InterfaceInfo> out;
    ifaddrs* list = nullptr;
    if (getifaddrs(&list) != 0) return out;
    for (ifaddrs* p = list; p; p = p->ifa_next) {
        InterfaceInfo* info = nullptr;
        for (auto& i : out)
            if (i.name == p->ifa_name) info = &i;
        if (!info) {
            out.push_back(InterfaceInfo{p->ifa_name,
                                        (p->ifa_flags & IFF_UP) != 0,
                                        (p->ifa_flags & IFF_RUNNING) != 0,
                                        (p->ifa_flags & IFF_LOOPBACK) != 0,
                                        {}});
            info = &out.back();
        }
        if (!p->ifa_addr) continue;
        std::array<char, INET6_ADDRSTRLEN> buf{};
        const int family = p->ifa_addr->sa_family;
        const void* src = nullptr;
        if (family == AF_INET)
            src = &reinterpret_cast<const sockaddr_in*>(p->ifa_addr)->sin_addr;
        else if (family == AF_INET6)
            src = &reinterpret_cast<const sockaddr_in6*>(p->ifa_addr)->sin6_addr;
        if (src && inet_ntop(family, src, buf.data(), static_cast<socklen_t>(buf.size())))
            info->addresses.emplace_back(buf.data());
    }
    freeifaddrs(list);
    return out;
}

namespace {

class NetlinkMonitor final : public NetworkMonitor,
                             public std::enable_shared_from_this<NetlinkMonitor> {
  public:
    NetlinkMonitor(const asio::any_io_executor& ex, std::function<void(bool)> f)
        : fd_(ex), on_change_(std::move(f)) {}

    result<void, Error> start() override {
        const int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
        if (fd < 0)
            return make_error(error::connect_failed,
                              std::string{"netlink socket: "} + std::strerror(errno));
        sockaddr_nl sa{};
        sa.nl_family = AF_NETLINK;
        sa.nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR;
        if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
            std::string e = std::string{"netlink bind: "} + std::strerror(errno);
            ::close(fd);
            return make_error(error::connect_failed, std::move(e));
        }
        boost::system::error_code ec;
        fd_.assign(fd, ec);
        if (ec) {
            ::close(fd);
            return make_error(error::connect_failed, "netlink: " + ec.message());
        }
        online_ = is_online(list_interfaces());
        read();
        return {};
    }

    bool online() const override { return online_; }

    void stop() override {
        stopped_ = true;
        boost::system::error_code ec;
        fd_.close(ec);
    }

  private:
    void read() {
        fd_.async_read_some(asio::buffer(buf_),
                            [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                                if (self->stopped_) return;
                                // ENOBUFS (we fell behind) only means "something changed".
                                if (ec && ec != asio::error::no_buffer_space) return;
                                const bool now_online = is_online(list_interfaces());
                                if (now_online != self->online_) {
                                    self->online_ = now_online;
                                    self->on_change_(now_online);
                                }
                                if (!self->stopped_) self->read();
                            });
    }

    asio::posix::stream_descriptor fd_;
    std::function<void(bool)> on_change_;
    std::array<char, 16384> buf_{};
    bool online_ = true;
    bool stopped_ = false;
};

}  // namespace

std::shared_ptr<NetworkMonitor> make_network_monitor(const asio::any_io_executor& ex,
                                                     std::function<void(bool)> on_change) {
    return std::make_shared<NetlinkMonitor>(ex, std::move(on_change));
}

}  // namespace tether::detail
