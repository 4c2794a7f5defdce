#pragma once
/// @file
/// Comparison of secrets (resume tokens, admin keys) in time that does not
/// depend on where they differ.
///
/// @par Thread safety
/// Pure function.

#include <string_view>

namespace tether {

/// True when `a == b`. Runs in time that depends on the sizes only, never on
/// the position of the first difference.
[[nodiscard]] inline bool constant_time_equal(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    unsigned char diff = 0;
    for (std::size_t i = 0; i < a.size(); ++i)
        diff = static_cast<unsigned char>(
            diff | (static_cast<unsigned char>(a[i]) ^ static_cast<unsigned char>(b[i])));
    return diff == 0;
}

}  // namespace tether
