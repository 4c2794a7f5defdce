#pragma once
// The Lua library of the Redis store (src/redis/functions.lua), embedded at
// build time.

#include <string_view>

namespace tether::redis {

/// The library's source, as FUNCTION LOAD takes it.
[[nodiscard]] std::string_view functions_lua() noexcept;

}  // namespace tether::redis
