#include "tools/options.hpp"

#include <charconv>

namespace tether::tools {
namespace {

std::optional<std::pair<std::uint64_t, std::string_view>> split_number(std::string_view text) {
    std::uint64_t n = 0;
    const auto* end = text.data() + text.size();
    auto [p, ec] = std::from_chars(text.data(), end, n);
    if (ec != std::errc{} || p == text.data()) return std::nullopt;
    return std::make_pair(n, std::string_view{p, static_cast<std::size_t>(end - p)});
}

}  // namespace

std::optional<std::int64_t> parse_duration_ms(std::string_view text) {
    auto parts = split_number(text);
    if (!parts) return std::nullopt;
    auto [n, unit] = *parts;
    std::uint64_t scale = 0;
    if (unit == "ms")
        scale = 1;
    else if (unit == "s")
        scale = 1'000;
    else if (unit == "m")
        scale = 60'000;
    else if (unit == "h")
        scale = 3'600'000;
    else if (unit == "d")
        scale = 86'400'000;
    else
        return std::nullopt;
    if (n > static_cast<std::uint64_t>(INT64_MAX) / scale) return std::nullopt;
    return static_cast<std::int64_t>(n * scale);
}

std::optional<std::uint64_t> parse_bytes(std::string_view text) {
    auto parts = split_number(text);
    if (!parts) return std::nullopt;
    auto [n, unit] = *parts;
    std::uint64_t scale = 0;
    if (unit.empty() || unit == "B")
        scale = 1;
    else if (unit == "KiB")
        scale = 1u << 10;
    else if (unit == "MiB")
        scale = 1u << 20;
    else if (unit == "GiB")
        scale = 1u << 30;
    else
        return std::nullopt;
    if (n > UINT64_MAX / scale) return std::nullopt;
    return n * scale;
}

std::optional<HostPort> parse_host_port(std::string_view text) {
    HostPort hp;
    std::string_view port;
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
            return std::nullopt;
        hp.host = std::string{text.substr(1, close - 1)};
        port = text.substr(close + 2);
    } else {
        const auto colon = text.rfind(':');
        if (colon == std::string_view::npos || colon == 0) return std::nullopt;
        hp.host = std::string{text.substr(0, colon)};
        port = text.substr(colon + 1);
    }
    if (hp.host == "localhost") hp.host = "127.0.0.1";
    unsigned value = 0;
    auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc{} || p != port.data() + port.size() || port.empty() || value > 65535)
        return std::nullopt;
    hp.port = static_cast<std::uint16_t>(value);
    return hp;
}

}  // namespace tether::tools
