// The protocol codec: any bytes either decode or fail with a DecodeError
// naming a close code; whatever decodes re-encodes to a frame that decodes to
// the same message (round trip).
#include <tether/core/assert.hpp>
#include <tether/core/protocol.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string_view>

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
        const std::string again = p::encode(r.message());
        auto r2 = p::decode(again, p::Limits{});
        TETHER_ASSERT(r2);
        if (!(r2.message() == r.message()))
            std::fprintf(stderr, "round trip changed the message:\n  %s\n  %s\n", again.c_str(),
                         p::encode(r2.message()).c_str());
        TETHER_ASSERT(r2.message() == r.message());
    }
    return 0;
}
