#include "wire/ws_frame.hpp"

#include <tether/core/protocol.hpp>

#include <algorithm>
#include <utility>

namespace tether::wire::ws {
namespace {

constexpr std::size_t kControlMax = 125;

bool known(unsigned op) {
    return op == 0x0 || op == 0x1 || op == 0x2 || op == 0x8 || op == 0x9 || op == 0xA;
}

/// Close codes a peer may send (RFC 6455 7.4): 1000-1003, 1007-1011 (and the
/// later registered 1012-1014), 3000-4999.
bool valid_close_code(std::uint16_t c) {
    if (c >= 3000 && c <= 4999) return true;
    return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014);
}

}  // namespace

void ServerParser::fail(std::vector<Event>& out, std::uint16_t code, std::string reason) {
    done_ = true;
    message_.clear();
    control_.clear();
    out.push_back(Event{Event::Kind::error, std::move(reason), code});
}

bool ServerParser::header_complete(std::vector<Event>& out) {
    const unsigned b0 = header_[0], b1 = header_[1];
    fin_ = (b0 & 0x80) != 0;
    const unsigned op = b0 & 0x0f;
    if ((b0 & 0x70) != 0) return fail(out, kCloseProtocolError, "reserved bits set"), false;
    if (!known(op)) return fail(out, kCloseProtocolError, "unknown opcode"), false;
    if ((b1 & 0x80) == 0) return fail(out, kCloseProtocolError, "client frame not masked"), false;
    op_ = static_cast<Opcode>(op);
    std::uint64_t len = b1 & 0x7f;
    std::size_t at = 2;
    if (len == 126) {
        len = (std::uint64_t{header_[2]} << 8) | header_[3];
        if (len < 126) return fail(out, kCloseProtocolError, "non-minimal length"), false;
        at = 4;
    } else if (len == 127) {
        len = 0;
        for (std::size_t k = 0; k < 8; ++k)
            len = (len << 8) | header_[2 + k];
        if (len >> 63) return fail(out, kCloseProtocolError, "length above 2^63"), false;
        if (len < 65536) return fail(out, kCloseProtocolError, "non-minimal length"), false;
        at = 10;
    }
    std::copy(header_ + at, header_ + at + 4, mask_);
    mask_at_ = 0;
    remaining_ = len;
    const bool control = op >= 0x8;
    if (control) {
        if (!fin_) return fail(out, kCloseProtocolError, "fragmented control frame"), false;
        if (len > kControlMax)
            return fail(out, kCloseProtocolError, "control frame too long"), false;
    } else if (op_ == Opcode::continuation) {
        if (!in_message_)
            return fail(out, kCloseProtocolError, "continuation without a message"), false;
    } else {
        if (in_message_)
            return fail(out, kCloseProtocolError, "new message inside a fragmented one"), false;
        in_message_ = true;
        message_op_ = op_;
        message_.clear();
    }
    if (!control && message_.size() + len > message_max_)
        return fail(out, kCloseTooBig, "message too big"), false;
    in_payload_ = true;
    return true;
}

void ServerParser::frame_complete(std::vector<Event>& out) {
    in_payload_ = false;
    header_have_ = 0;
    switch (op_) {
        case Opcode::ping:
            out.push_back(Event{Event::Kind::ping, std::exchange(control_, {}), 0});
            return;
        case Opcode::pong:
            control_.clear();
            out.push_back(Event{Event::Kind::pong, {}, 0});
            return;
        case Opcode::close: {
            std::string p = std::exchange(control_, {});
            if (p.size() == 1) return fail(out, kCloseProtocolError, "close payload of one byte");
            std::uint16_t code = 0;
            std::string reason;
            if (p.size() >= 2) {
                code = static_cast<std::uint16_t>((static_cast<unsigned char>(p[0]) << 8) |
                                                  static_cast<unsigned char>(p[1]));
                if (!valid_close_code(code))
                    return fail(out, kCloseProtocolError, "invalid close code");
                reason = p.substr(2);
                if (!proto::is_valid_utf8(reason))
                    return fail(out, kCloseInvalidPayload, "close reason not UTF-8");
            }
            done_ = true;
            out.push_back(Event{Event::Kind::close, std::move(reason), code});
            return;
        }
        default:
            break;
    }
    if (!fin_) return;  // more fragments follow
    in_message_ = false;
    if (message_op_ == Opcode::text) {
        if (!proto::is_valid_utf8(message_))
            return fail(out, kCloseInvalidPayload, "text message not UTF-8");
        out.push_back(Event{Event::Kind::text, std::exchange(message_, {}), 0});
    } else {
        out.push_back(Event{Event::Kind::binary, std::exchange(message_, {}), 0});
    }
}

void ServerParser::feed(std::string_view bytes, std::vector<Event>& out) {
    while (!done_ && !bytes.empty()) {
        if (!in_payload_) {
            // The header: 2 bytes, then the extended length, then the mask key.
            header_[header_have_++] = static_cast<unsigned char>(bytes.front());
            bytes.remove_prefix(1);
            if (header_have_ < 2) continue;
            const unsigned len7 = header_[1] & 0x7f;
            std::size_t need = (header_[1] & 0x80) != 0 ? 6 : 2;
            if (len7 == 126) need += 2;
            if (len7 == 127) need += 8;
            if (header_have_ < need) continue;
            if (!header_complete(out)) return;
            if (remaining_ == 0) frame_complete(out);
            continue;
        }
        const auto n = static_cast<std::size_t>(
            std::min<std::uint64_t>(remaining_, static_cast<std::uint64_t>(bytes.size())));
        std::string& dest = static_cast<unsigned>(op_) >= 0x8 ? control_ : message_;
        const auto start = dest.size();
        dest.append(bytes.data(), n);
        for (std::size_t k = start; k < start + n; ++k)
            dest[k] =
                static_cast<char>(static_cast<unsigned char>(dest[k]) ^ mask_[mask_at_++ & 3]);
        bytes.remove_prefix(n);
        remaining_ -= n;
        if (remaining_ == 0) frame_complete(out);
    }
}

std::size_t write_header(unsigned char (&out)[10], Opcode op, std::size_t n) noexcept {
    out[0] = static_cast<unsigned char>(0x80 | static_cast<unsigned>(op));
    if (n < 126) {
        out[1] = static_cast<unsigned char>(n);
        return 2;
    }
    if (n < 65536) {
        out[1] = 126;
        out[2] = static_cast<unsigned char>(n >> 8);
        out[3] = static_cast<unsigned char>(n);
        return 4;
    }
    out[1] = 127;
    for (std::size_t k = 0; k < 8; ++k)
        out[2 + k] = static_cast<unsigned char>(static_cast<std::uint64_t>(n) >> (8 * (7 - k)));
    return 10;
}

std::string close_payload(std::uint16_t code, std::string_view reason) {
    std::string p;
    p += static_cast<char>(code >> 8);
    p += static_cast<char>(code & 0xff);
    p += proto::truncate_close_reason(reason);
    return p;
}

}  // namespace tether::wire::ws
