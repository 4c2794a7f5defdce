// `tether token`: mints an HS256 access token for IDENTIFY.
#include "tools/commands.hpp"

#include <tether/core/protocol.hpp>
#include "tools/options.hpp"

#include "wire/jwt.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>

namespace tether::tools {

Action add_token_command(CLI::App& app) {
    struct Args {
        std::string secret, user, ttl = "1h";
    };
    auto args = std::make_shared<Args>();
    auto* cmd = app.add_subcommand("token", "Mint an access token (JWT HS256) for a user");
    cmd->add_option("--secret", args->secret, "Signing secret (default: $TETHER_TOKEN_SECRET)");
    cmd->add_option("--user", args->user, "User id (the token's sub)")->required();
    cmd->add_option("--ttl", args->ttl, "Lifetime, e.g. 15m, 1h, 7d (default 1h)");
    return [cmd, args]() -> int {
        if (!cmd->parsed()) return exit_usage;
        if (args->secret.empty())
            if (const char* env = std::getenv("TETHER_TOKEN_SECRET")) args->secret = env;
        if (args->secret.empty()) {
            std::fprintf(stderr, "tether token: give --secret or set TETHER_TOKEN_SECRET\n");
            return exit_usage;
        }
        const auto ttl = parse_duration_ms(args->ttl);
        if (!ttl || *ttl < 1'000) {
            std::fprintf(
                stderr,
                "tether token: --ttl must be a duration of at least 1s (e.g. 1h), not '%s'\n",
                args->ttl.c_str());
            return exit_usage;
        }
        if (args->user.empty() || args->user.size() > 256 || !proto::is_valid_utf8(args->user)) {
            std::fprintf(stderr, "tether token: --user must be 1..256 bytes of UTF-8\n");
            return exit_usage;
        }
        const auto now_s = std::chrono::duration_cast<std::chrono::seconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
        std::puts(wire::jwt_mint(args->secret, args->user, now_s, *ttl / 1000).c_str());
        return exit_ok;
    };
}

}  // namespace tether::tools
