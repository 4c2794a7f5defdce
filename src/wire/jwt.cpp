#include "wire/jwt.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <boost/json.hpp>

#include <array>

namespace tether::wire {
namespace json = boost::json;
namespace {

constexpr std::string_view kAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
constexpr std::size_t kTokenBytesMax = 8192;

std::string hmac_sha256(std::string_view key, std::string_view data) {
    std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
    unsigned int len = 0;
    HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
         reinterpret_cast<const unsigned char*>(data.data()), data.size(), out.data(), &len);
    return std::string(reinterpret_cast<const char*>(out.data()), len);
}

std::optional<json::object> parse_object(std::string_view b64) {
    auto raw = base64url_decode(b64);
    if (!raw) return std::nullopt;
    boost::system::error_code ec;
    json::parse_options opt;
    opt.max_depth = 8;
    auto v = json::parse(*raw, ec, {}, opt);
    if (ec || !v.is_object()) return std::nullopt;
    return v.get_object();
}

std::optional<std::int64_t> int_claim(const json::object& o, std::string_view key) {
    const auto* v = o.if_contains(key);
    if (!v) return std::nullopt;
    if (v->is_int64()) return v->get_int64();
    if (v->is_uint64() && v->get_uint64() <= static_cast<std::uint64_t>(INT64_MAX))
        return static_cast<std::int64_t>(v->get_uint64());
    if (v->is_double()) return static_cast<std::int64_t>(v->get_double());
    return std::nullopt;
}

}  // namespace

std::string base64url_encode(std::string_view bytes) {
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    std::uint32_t acc = 0;
    int bits = 0;
    for (char ch : bytes) {
        acc = (acc << 8) | static_cast<unsigned char>(ch);
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out += kAlphabet[(acc >> bits) & 63u];
        }
    }
    if (bits > 0) out += kAlphabet[(acc << (6 - bits)) & 63u];
    return out;
}

std::optional<std::string> base64url_decode(std::string_view text) {
    std::string out;
    out.reserve(text.size() * 3 / 4);
    std::uint32_t acc = 0;
    int bits = 0;
    for (char ch : text) {
        const auto pos = kAlphabet.find(ch);
        if (pos == std::string_view::npos) return std::nullopt;  // no padding, no other alphabet
        acc = (acc << 6) | static_cast<std::uint32_t>(pos);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>((acc >> bits) & 0xFFu);
        }
    }
    if (bits >= 6) return std::nullopt;  // a dangling sextet is not valid base64
    return out;
}

result<JwtClaims, Error> jwt_verify(std::string_view token, std::string_view secret,
                                    std::int64_t now_s, std::int64_t leeway_s) {
    try {
        if (token.empty() || token.size() > kTokenBytesMax)
            return make_error(error::token_malformed, "token size");
        const auto d1 = token.find('.');
        const auto d2 = d1 == std::string_view::npos ? d1 : token.find('.', d1 + 1);
        if (d2 == std::string_view::npos || token.find('.', d2 + 1) != std::string_view::npos)
            return make_error(error::token_malformed, "not three parts");
        const auto header = parse_object(token.substr(0, d1));
        if (!header) return make_error(error::token_malformed, "header is not base64url JSON");
        const auto* alg = header->if_contains("alg");
        if (!alg || !alg->is_string() || alg->get_string() != "HS256")
            return make_error(error::token_unsupported, "alg is not HS256");
        const auto sig = base64url_decode(token.substr(d2 + 1));
        if (!sig) return make_error(error::token_malformed, "signature is not base64url");
        const auto expected = hmac_sha256(secret, token.substr(0, d2));
        if (sig->size() != expected.size() ||
            CRYPTO_memcmp(sig->data(), expected.data(), expected.size()) != 0)
            return make_error(error::token_bad_signature, "bad signature");
        const auto payload = parse_object(token.substr(d1 + 1, d2 - d1 - 1));
        if (!payload) return make_error(error::token_malformed, "payload is not base64url JSON");
        const auto* sub = payload->if_contains("sub");
        if (!sub || !sub->is_string() || sub->get_string().empty() ||
            sub->get_string().size() > 256)
            return make_error(error::token_malformed, "sub missing or invalid");
        const auto exp = int_claim(*payload, "exp");
        if (!exp) return make_error(error::token_malformed, "exp missing");
        if (*exp + leeway_s <= now_s) return make_error(error::token_expired, "expired");
        if (const auto nbf = int_claim(*payload, "nbf"); nbf && *nbf - leeway_s > now_s)
            return make_error(error::token_not_yet_valid, "not yet valid");
        return JwtClaims{std::string{sub->get_string()}, *exp};
    } catch (const std::exception& e) {
        return make_error(error::token_malformed, std::string{"malformed: "} + e.what());
    }
}

std::string jwt_mint(std::string_view secret, std::string_view sub, std::int64_t now_s,
                     std::int64_t ttl_s) {
    json::object payload;
    payload["sub"] = sub;
    payload["iat"] = now_s;
    payload["exp"] = now_s + ttl_s;
    const std::string head = base64url_encode(R"({"alg":"HS256","typ":"JWT"})");
    const std::string body = base64url_encode(json::serialize(payload));
    const std::string signing_input = head + "." + body;
    return signing_input + "." + base64url_encode(hmac_sha256(secret, signing_input));
}

}  // namespace tether::wire
