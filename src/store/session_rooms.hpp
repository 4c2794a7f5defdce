#pragma once
// A session's rooms as the durable stores keep them: one JSON array of
// strings (SQLite's sessions table, the Redis store's session hash).

#include <boost/json.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace tether::store {

inline std::string rooms_to_json(const std::vector<std::string>& rooms) {
    boost::json::array a;
    for (const auto& r : rooms)
        a.emplace_back(r);
    return boost::json::serialize(a);
}

/// The rooms of `text`; malformed text gives none (the session rejoins nothing).
inline std::vector<std::string> rooms_from_json(std::string_view text) {
    std::vector<std::string> out;
    boost::system::error_code ec;
    auto v = boost::json::parse(text, ec);
    if (ec || !v.is_array()) return out;
    for (const auto& e : v.get_array())
        if (e.is_string()) out.emplace_back(e.get_string());
    return out;
}

}  // namespace tether::store
