#pragma once
// Parsing helpers shared by the subcommands: durations ("250ms", "30s",
// "5m", "1h", "2d"), sizes ("64KiB", "4MiB") and host:port.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tether::tools {

/// Milliseconds, or nullopt for anything that is not <number><unit>.
std::optional<std::int64_t> parse_duration_ms(std::string_view text);
/// Bytes: a plain number or one with B, KiB, MiB, GiB.
std::optional<std::uint64_t> parse_bytes(std::string_view text);

struct HostPort {
    std::string host;
    std::uint16_t port = 0;
};
/// "127.0.0.1:8080", "[::1]:8080", "localhost:0" (port 0 picks a free one).
std::optional<HostPort> parse_host_port(std::string_view text);

}  // namespace tether::tools
