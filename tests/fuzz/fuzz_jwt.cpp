// The JWT verifier: any token is refused with a reason or accepted with a
// subject; accepting requires the right signature, so a token that verifies
// under one secret must not verify under another.
#include <tether/core/assert.hpp>
#include <tether/core/protocol.hpp>

#include "wire/jwt.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace tether::wire;
    const std::string_view token{reinterpret_cast<const char*>(data), size};
    constexpr std::int64_t now = 1'800'000'000;
    const auto r = jwt_verify(token, "fuzz-secret", now);
    if (r) {
        TETHER_ASSERT(!r->sub.empty() && r->sub.size() <= 256);
        TETHER_ASSERT(r->exp + 30 > now);
        TETHER_ASSERT(!jwt_verify(token, "another-secret", now));
    } else {
        TETHER_ASSERT(r.error().code.category() == tether::error_category() &&
                      !r.error().message.empty());
    }
    // A token minted for any UTF-8 subject of 1..256 bytes verifies.
    if (size > 0 && size <= 256 && tether::proto::is_valid_utf8(token)) {
        const auto minted = jwt_mint("fuzz-secret", token, now, 60);
        TETHER_ASSERT(jwt_verify(minted, "fuzz-secret", now).has_value());
    }
    auto decoded = base64url_decode(token);
    if (decoded) TETHER_ASSERT(base64url_decode(base64url_encode(*decoded)) == decoded);
    return 0;
}
