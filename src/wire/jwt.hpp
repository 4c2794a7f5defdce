#pragma once
// JWT HS256 access tokens (RFC 7519) for IDENTIFY.
//
// verify() checks, in order: three base64url parts; header alg exactly
// "HS256" (so "none", HS512 or RS256 are refused); the HMAC-SHA256 signature
// in constant time; `sub` present (the user id, 1..256 bytes); `exp`
// present and in the future; `nbf`, when present, not in the future. A
// leeway of `leeway_s` seconds absorbs clock skew. Never throws.

#include <tether/core/error.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tether::wire {

struct JwtClaims {
    std::string sub;
    std::int64_t exp = 0;  ///< seconds since the Unix epoch
};

/// The claims, or why the token is refused: token_malformed,
/// token_unsupported, token_bad_signature, token_expired, token_not_yet_valid
/// (the message is for logs; clients only see 4004).
[[nodiscard]] result<JwtClaims, Error> jwt_verify(std::string_view token, std::string_view secret,
                                                  std::int64_t now_s, std::int64_t leeway_s = 30);

/// Mints a token for `sub` valid for `ttl_s` seconds from `now_s`.
std::string jwt_mint(std::string_view secret, std::string_view sub, std::int64_t now_s,
                     std::int64_t ttl_s);

std::string base64url_encode(std::string_view bytes);
std::optional<std::string> base64url_decode(std::string_view text);

}  // namespace tether::wire
