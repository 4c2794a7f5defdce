#include "gateway/http_util.hpp"

#include <tether/core/protocol.hpp>
#include <tether/version.hpp>

#include <openssl/evp.h>
#include <boost/beast/http/field.hpp>
#include <boost/json.hpp>

#include <cstdio>
#include <cstdlib>

namespace tether::gateway {

namespace http = boost::beast::http;

Response make_response(http::status status, std::string body, bool keep_alive,
                       std::string_view type) {
    Response res{status, 11};
    res.set(http::field::server, "tether/" TETHER_VERSION_STRING);
    res.set(http::field::content_type, type);
    res.keep_alive(keep_alive);
    res.body() = std::move(body);
    res.prepare_payload();
    return res;
}

std::string error_body(std::string_view message) {
    boost::json::object o;
    o["error"] = message;
    return boost::json::serialize(o);
}

std::string ws_accept_key(std::string_view key) {
    std::string in{key};
    in += "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_Digest(in.data(), in.size(), digest, &len, EVP_sha1(), nullptr) != 1 || len != 20) {
        std::fprintf(stderr, "tether: SHA-1 unavailable\n");
        std::abort();
    }
    unsigned char out[32] = {};
    const int n = EVP_EncodeBlock(out, digest, static_cast<int>(len));
    return std::string(reinterpret_cast<const char*>(out), static_cast<std::size_t>(n));
}

bool offers_v1(const Request& req) {
    const auto header = req[http::field::sec_websocket_protocol];
    std::string_view h{header.data(), header.size()};
    while (!h.empty()) {
        const auto comma = h.find(',');
        auto item = h.substr(0, comma);
        while (!item.empty() && (item.front() == ' ' || item.front() == '\t'))
            item.remove_prefix(1);
        while (!item.empty() && (item.back() == ' ' || item.back() == '\t'))
            item.remove_suffix(1);
        if (item == proto::subprotocol) return true;
        if (comma == std::string_view::npos) break;
        h.remove_prefix(comma + 1);
    }
    return false;
}

}  // namespace tether::gateway
