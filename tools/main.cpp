// tether: serve, connect, inject faults and benchmark. This build ships
// `serve`, `connect`, `token`, `proxy` and `sim`; `bench` arrives with its issue.

#include "tools/commands.hpp"

#include <tether/version.hpp>

#include <iostream>

int main(int argc, char** argv) {
    CLI::App app{"tether: real-time connections that reconnect, resume and lose nothing", "tether"};
    app.require_subcommand(1);
    app.set_version_flag("--version", "tether " TETHER_VERSION_STRING);
    auto serve = tether::tools::add_serve_command(app);
    auto connect = tether::tools::add_connect_command(app);
    auto token = tether::tools::add_token_command(app);
    auto proxy = tether::tools::add_proxy_command(app);
    auto sim = tether::tools::add_sim_command(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int rc = app.exit(e);
        return rc == 0 ? 0 : tether::tools::exit_usage;
    }
    for (auto* sub : app.get_subcommands()) {
        if (sub->get_name() == "serve") return serve();
        if (sub->get_name() == "connect") return connect();
        if (sub->get_name() == "token") return token();
        if (sub->get_name() == "proxy") return proxy();
    }
    return sim();
}
