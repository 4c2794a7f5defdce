#pragma once
// Subcommands of the `tether` tool. Each registers its options on the CLI11
// app and returns the action to run when it was chosen.

#include <CLI/CLI.hpp>

#include <functional>

namespace tether::tools {

/// Exit codes shared by every subcommand (docs/CLI.md).
inline constexpr int exit_ok = 0;
inline constexpr int exit_failure = 1;  ///< the command ran and found a failure
inline constexpr int exit_usage = 2;    ///< bad arguments or configuration

using Action = std::function<int()>;

/// `tether sim`: deterministic simulation of a client under faults.
Action add_sim_command(CLI::App& app);
/// `tether serve`: the gateway.
Action add_serve_command(CLI::App& app);
/// `tether token`: mint an access token.
Action add_token_command(CLI::App& app);
/// `tether connect`: reconnecting client (tether protocol, or --raw for any server).
Action add_connect_command(CLI::App& app);
/// `tether proxy`: fault-injecting TCP proxy.
Action add_proxy_command(CLI::App& app);

}  // namespace tether::tools
