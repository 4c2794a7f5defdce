// `tether proxy`: fault-injecting TCP proxy with an HTTP control API.
#include "tools/commands.hpp"
#include "tools/options.hpp"

#include "proxy/proxy.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <cstdio>

namespace tether::tools {

Action add_proxy_command(CLI::App& app) {
    struct Args {
        std::string listen, upstream, control = "127.0.0.1:0";
        std::uint64_t seed = 1;
    };
    auto a = std::make_shared<Args>();
    auto* cmd = app.add_subcommand(
        "proxy",
        "Fault-injecting TCP proxy (latency, bandwidth, blackhole, close, reset, down, cut)");
    cmd->add_option("--listen", a->listen, "Where clients connect, HOST:PORT")->required();
    cmd->add_option("--upstream", a->upstream, "Where to forward, HOST:PORT")->required();
    cmd->add_option("--control", a->control,
                    "HTTP control API, HOST:PORT (default 127.0.0.1:0, logged)");
    cmd->add_option("--seed", a->seed, "Seed of the latency jitter (default 1)");
    return [cmd, a]() -> int {
        if (!cmd->parsed()) return exit_usage;
        const auto l = parse_host_port(a->listen), u = parse_host_port(a->upstream),
                   c = parse_host_port(a->control);
        if (!l)
            return std::fprintf(stderr, "tether proxy: --listen must be HOST:PORT\n"), exit_usage;
        if (!u || u->port == 0)
            return std::fprintf(stderr, "tether proxy: --upstream must be HOST:PORT\n"), exit_usage;
        if (!c)
            return std::fprintf(stderr, "tether proxy: --control must be HOST:PORT\n"), exit_usage;
        try {
            boost::asio::io_context ioc{1};
            proxy::Proxy proxy{ioc, proxy::ProxyOptions{l->host, l->port, u->host, u->port, c->host,
                                                        c->port, a->seed}};
            std::printf(
                "tether proxy listening on %s:%u -> upstream %s:%u; control on "
                "http://%s:%u/faults\n",
                l->host.c_str(), proxy.port(), u->host.c_str(), u->port, c->host.c_str(),
                proxy.control_port());
            std::fflush(stdout);
            // Process policy: one thread; SIGINT/SIGTERM stop it.
            boost::asio::signal_set signals{ioc, SIGINT, SIGTERM};
            signals.async_wait([&ioc](const boost::system::error_code&, int) { ioc.stop(); });
            proxy.start();
            ioc.run();
        } catch (const std::exception& e) {
            std::fprintf(stderr, "tether proxy: %s\n", e.what());
            return exit_failure;
        }
        return exit_ok;
    };
}

}  // namespace tether::tools
