// The protocol codec: any bytes either decode or fail with a DecodeError
// naming a close code; whatever decodes re-encodes to a frame that decodes to
// the same message (round trip).
#include <tether/core/assert.hpp>
#include <tether/core/protocol.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string_view>

namespace {

namespace json = boost::json;

// Boost.JSON 1.81 does not always parse long decimals to the nearest double
// (docs/PROTOCOL.md, "data is normalised"): doubles in `data` may move by a
// few units in the last place between hops; everything else must be exact.
bool close_enough(const json::value& a, const json::value& b) {
    if (a.is_double() && b.is_double()) {
        const double x = a.get_double(), y = b.get_double();
        return x == y || std::fabs(x - y) <= 1e-13 * std::max(std::fabs(x), std::fabs(y));
    }
    if (a.kind() != b.kind()) return false;
    if (a.is_array()) {
        const auto &u = a.get_array(), &v = b.get_array();
        if (u.size() != v.size()) return false;
        for (std::size_t i = 0; i < u.size(); ++i)
            if (!close_enough(u[i], v[i])) return false;
        return true;
    }
    if (a.is_object()) {
        const auto &u = a.get_object(), &v = b.get_object();
        if (u.size() != v.size()) return false;
        for (auto i = u.begin(), j = v.begin(); i != u.end(); ++i, ++j)
            if (i->key() != j->key() || !close_enough(i->value(), j->value())) return false;
        return true;
    }
    return a == b;
}

bool same_but_doubles(const tether::proto::Message& a, const tether::proto::Message& b) {
    namespace p = tether::proto;
    auto data_of = [](const p::Message& m) -> const std::string* {
        if (auto* x = std::get_if<p::Publish>(&m)) return &x->data;
        if (auto* x = std::get_if<p::Event>(&m)) return &x->data;
        return nullptr;
    };
    const std::string *da = data_of(a), *db = data_of(b);
    if (!da || !db) return false;
    p::Message a2 = a;  // equal apart from data?
    if (auto* x = std::get_if<p::Publish>(&a2)) x->data = *db;
    if (auto* x = std::get_if<p::Event>(&a2)) x->data = *db;
    if (!(a2 == b)) return false;
    return close_enough(json::parse(*da), json::parse(*db));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    namespace p = tether::proto;
    const std::string_view frame{reinterpret_cast<const char*>(data), size};
    p::Limits small;
    small.frame_bytes_max = 4096;
    small.depth_max = 8;
    for (const auto& limits : {p::Limits{}, small}) {
        auto r = p::decode(frame, limits);
        if (!r) {
            const auto code = r.error().close_code();
            TETHER_ASSERT(code == 1009 || (code >= 4000 && code <= 4999));
            TETHER_ASSERT(!r.error().message().empty());
            continue;
        }
        const std::string again = p::encode((*r));
        auto r2 = p::decode(again, p::Limits{});
        TETHER_ASSERT(r2);
        if (!((*r2) == (*r)) && !same_but_doubles((*r), (*r2))) {
            std::fprintf(stderr, "round trip changed the message:\n  %s\n  %s\n", again.c_str(),
                         p::encode((*r2)).c_str());
            TETHER_ASSERT(false);
        }
    }
    return 0;
}
