// The gateway's WebSocket frame parser: arbitrary bytes, fed whole and then in
// arbitrary pieces, never crash, produce the same events either way, and only
// well-formed events: text is UTF-8 within the limit, control payloads fit in
// 125 bytes, nothing follows a close or an error.
#include <tether/core/assert.hpp>
#include <tether/core/protocol.hpp>

#include "wire/ws_frame.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    namespace ws = tether::wire::ws;
    if (size < 1) return 0;
    const std::size_t max = 16u + data[0] * 16u;  // the message limit varies with the input
    const std::string_view bytes{reinterpret_cast<const char*>(data) + 1, size - 1};
    ws::ServerParser whole{max};
    std::vector<ws::Event> a;
    whole.feed(bytes, a);
    ws::ServerParser pieces{max};
    std::vector<ws::Event> b;
    std::size_t at = 0, step = 1;
    while (at < bytes.size()) {
        const auto n = std::min(step, bytes.size() - at);
        pieces.feed(bytes.substr(at, n), b);
        at += n;
        step = step * 3 % 17 + 1;
    }
    TETHER_ASSERT(a.size() == b.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
        TETHER_ASSERT(a[i].kind == b[i].kind && a[i].data == b[i].data && a[i].code == b[i].code);
        const auto& e = a[i];
        using K = ws::Event::Kind;
        if (e.kind == K::text)
            TETHER_ASSERT(tether::proto::is_valid_utf8(e.data) && e.data.size() <= max);
        if (e.kind == K::binary) TETHER_ASSERT(e.data.size() <= max);
        if (e.kind == K::ping || e.kind == K::close) TETHER_ASSERT(e.data.size() <= 125);
        if (e.kind == K::close || e.kind == K::error) TETHER_ASSERT(i + 1 == a.size());
        if (e.kind == K::error) TETHER_ASSERT(e.code == 1002 || e.code == 1007 || e.code == 1009);
    }
    return 0;
}
