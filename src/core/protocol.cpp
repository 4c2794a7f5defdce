#include <tether/core/close_codes.hpp>
#include <tether/core/protocol.hpp>

#include <boost/json.hpp>

#include <array>
#include <cstdio>
#include <stdexcept>

namespace tether::proto {
namespace json = boost::json;

namespace {

struct OpName {
    Op op;
    std::string_view name;
};
constexpr std::array<OpName, 17> kOps{{
    {Op::hello, "HELLO"},
    {Op::identify, "IDENTIFY"},
    {Op::resume, "RESUME"},
    {Op::ready, "READY"},
    {Op::resumed, "RESUMED"},
    {Op::invalid_session, "INVALID_SESSION"},
    {Op::heartbeat, "HEARTBEAT"},
    {Op::heartbeat_ack, "HEARTBEAT_ACK"},
    {Op::join, "JOIN"},
    {Op::joined, "JOINED"},
    {Op::join_error, "JOIN_ERROR"},
    {Op::leave, "LEAVE"},
    {Op::publish, "PUBLISH"},
    {Op::ack, "ACK"},
    {Op::nack, "NACK"},
    {Op::event, "EVENT"},
    {Op::reconnect, "RECONNECT"},
}};

DecodeError make_error(DecodeErrc c, std::string field, std::string detail) {
    return DecodeError{c, std::move(field), std::move(detail)};
}

/// Reads typed members from the payload object, remembering the first error.
class Reader {
  public:
    Reader(const json::object& o, const Limits& l) : o_(o), limits_(l) {}

    bool ok() const { return !error_; }
    DecodeError take_error() { return std::move(*error_); }

    std::string str(std::string_view key, std::size_t max, bool required = true) {
        const json::value* v = find(key, required);
        if (!v) return {};
        if (!v->is_string())
            return fail(DecodeErrc::wrong_type, key, "expected a string"), std::string{};
        const auto& s = v->get_string();
        if (s.size() > max)
            return fail(DecodeErrc::field_too_large, key,
                        "longer than " + std::to_string(max) + " bytes"),
                   std::string{};
        return std::string{s.data(), s.size()};
    }

    /// Like str() but an empty string is an error too.
    std::string name(std::string_view key, std::size_t max) {
        auto s = str(key, max);
        if (ok() && s.empty()) fail(DecodeErrc::out_of_range, key, "must not be empty");
        return s;
    }

    std::uint64_t u64(std::string_view key, bool required = true) {
        const json::value* v = find(key, required);
        if (!v) return 0;
        if (v->is_uint64()) return v->get_uint64();
        if (v->is_int64()) {
            if (v->get_int64() < 0)
                return fail(DecodeErrc::out_of_range, key, "must not be negative"), 0;
            return static_cast<std::uint64_t>(v->get_int64());
        }
        return fail(DecodeErrc::wrong_type, key, "expected a non-negative integer"), 0;
    }

    std::int64_t i64(std::string_view key, bool required = true) {
        const json::value* v = find(key, required);
        if (!v) return 0;
        if (v->is_int64()) return v->get_int64();
        if (v->is_uint64()) {
            if (v->get_uint64() > static_cast<std::uint64_t>(INT64_MAX))
                return fail(DecodeErrc::out_of_range, key, "larger than 2^63-1"), 0;
            return static_cast<std::int64_t>(v->get_uint64());
        }
        return fail(DecodeErrc::wrong_type, key, "expected an integer"), 0;
    }

    std::int64_t non_negative_i64(std::string_view key, bool required = true) {
        auto x = i64(key, required);
        if (ok() && x < 0) fail(DecodeErrc::out_of_range, key, "must not be negative");
        return x;
    }

    std::optional<std::int64_t> opt_non_negative_i64(std::string_view key) {
        const json::value* v = o_.if_contains(key);
        if (!v || v->is_null()) return std::nullopt;
        return non_negative_i64(key);
    }

    bool boolean(std::string_view key, bool required = true) {
        const json::value* v = find(key, required);
        if (!v) return false;
        if (!v->is_bool())
            return fail(DecodeErrc::wrong_type, key, "expected true or false"), false;
        return v->get_bool();
    }

    /// The raw JSON text of any value (the application payload).
    std::string raw(std::string_view key) {
        const json::value* v = find(key, true);
        if (!v) return {};
        std::string text = json::serialize(*v);
        // Boost.JSON 1.81 does not always parse long decimals to the nearest
        // double, so a re-serialised double can still move on the next hop.
        // Iterate to the fixed point (found by fuzz_protocol; it takes one to
        // three rounds): the payload a client gets is what every hop keeps.
        if (has_double(*v)) {
            for (int round = 0; round < 8; ++round) {
                // Parsed inside brackets, as in a frame: Boost.JSON takes
                // another path for a number at the very end of its input.
                std::string next = json::serialize(json::parse("[" + text + "]").get_array()[0]);
                if (next == text) break;
                text = std::move(next);
            }
        }
        return text;
    }
    static bool has_double(const json::value& v) {
        switch (v.kind()) {
            case json::kind::double_:
                return true;
            case json::kind::array:
                for (const auto& x : v.get_array())
                    if (has_double(x)) return true;
                return false;
            case json::kind::object:
                for (const auto& kv : v.get_object())
                    if (has_double(kv.value())) return true;
                return false;
            default:
                return false;
        }
    }

    const json::object* object(std::string_view key, bool required = true) {
        const json::value* v = find(key, required);
        if (!v || (!required && v->is_null())) return nullptr;
        if (!v->is_object())
            return fail(DecodeErrc::wrong_type, key, "expected an object"), nullptr;
        return &v->get_object();
    }

    const json::array* array(std::string_view key) {
        const json::value* v = find(key, true);
        if (!v) return nullptr;
        if (!v->is_array()) return fail(DecodeErrc::wrong_type, key, "expected an array"), nullptr;
        return &v->get_array();
    }

    void fail(DecodeErrc c, std::string_view key, std::string detail) {
        if (!error_) error_ = make_error(c, prefix_ + std::string{key}, std::move(detail));
    }

    /// Reads a nested object with the same error slot and a longer path.
    Reader nested(const json::object& o, std::string_view key) {
        Reader r{o, limits_};
        r.prefix_ = prefix_ + std::string{key} + ".";
        return r;
    }
    void absorb(Reader& r) {
        if (!error_ && r.error_) error_ = std::move(r.error_);
    }
    const Limits& limits() const { return limits_; }

  private:
    const json::value* find(std::string_view key, bool required) {
        if (error_) return nullptr;
        const json::value* v = o_.if_contains(key);
        if (!v && required) fail(DecodeErrc::missing_field, key, "required");
        return v;
    }

    const json::object& o_;
    const Limits& limits_;
    std::string prefix_ = "d.";
    std::optional<DecodeError> error_;
};

std::optional<Message> decode_payload(Op op, Reader& r) {
    const Limits& L = r.limits();
    switch (op) {
        case Op::hello: {
            Hello m;
            m.heartbeat_ms = r.non_negative_i64("heartbeat_ms");
            m.session_ttl_ms = r.non_negative_i64("session_ttl_ms");
            m.server_name = r.str("server_name", L.text_bytes_max, false);
            m.server_version = r.str("server_version", L.text_bytes_max, false);
            m.node_id = r.str("node_id", L.text_bytes_max, false);
            if (r.ok() && m.heartbeat_ms == 0)
                r.fail(DecodeErrc::out_of_range, "heartbeat_ms", "must be > 0");
            return m;
        }
        case Op::identify: {
            Identify m;
            m.token = r.str("token", L.token_bytes_max);
            if (const auto* c = r.object("client", false)) {
                Reader n = r.nested(*c, "client");
                m.client.name = n.str("name", L.text_bytes_max, false);
                m.client.version = n.str("version", L.text_bytes_max, false);
                r.absorb(n);
            }
            return m;
        }
        case Op::resume: {
            Resume m;
            m.session_id = r.name("session_id", L.id_bytes_max);
            m.resume_token = r.name("resume_token", L.token_bytes_max);
            if (const auto* a = r.array("rooms")) {
                if (a->size() > L.rooms_max) {
                    r.fail(DecodeErrc::field_too_large, "rooms",
                           "more than " + std::to_string(L.rooms_max) + " rooms");
                    return m;
                }
                m.rooms.reserve(a->size());
                for (std::size_t i = 0; i < a->size() && r.ok(); ++i) {
                    const std::string idx = "rooms[" + std::to_string(i) + "]";
                    if (!(*a)[i].is_object()) {
                        r.fail(DecodeErrc::wrong_type, idx, "expected an object");
                        break;
                    }
                    Reader n = r.nested((*a)[i].get_object(), idx);
                    RoomPosition rp;
                    rp.room = n.name("room", L.room_bytes_max);
                    rp.position = {n.u64("epoch"), n.u64("offset")};
                    r.absorb(n);
                    m.rooms.push_back(std::move(rp));
                }
            }
            return m;
        }
        case Op::ready:
            return Ready{r.name("session_id", L.id_bytes_max),
                         r.name("resume_token", L.token_bytes_max),
                         r.str("user", L.text_bytes_max)};
        case Op::resumed:
            return Resumed{r.name("session_id", L.id_bytes_max),
                           r.str("resume_token", L.token_bytes_max, false)};
        case Op::invalid_session:
            return InvalidSession{r.boolean("resumable")};
        case Op::heartbeat:
            return Heartbeat{r.i64("ts")};
        case Op::heartbeat_ack:
            return HeartbeatAck{r.i64("ts")};
        case Op::join: {
            Join m;
            m.room = r.name("room", L.room_bytes_max);
            if (const auto* s = r.object("since", false)) {
                Reader n = r.nested(*s, "since");
                m.since = StreamPosition{n.u64("epoch"), n.u64("offset")};
                r.absorb(n);
            }
            return m;
        }
        case Op::joined: {
            Joined m;
            m.room = r.name("room", L.room_bytes_max);
            m.position = {r.u64("epoch"), r.u64("offset")};
            m.recovered = r.boolean("recovered");
            return m;
        }
        case Op::join_error:
            return JoinError{r.name("room", L.room_bytes_max), r.name("code", L.text_bytes_max),
                             r.str("reason", L.text_bytes_max, false), r.boolean("fatal")};
        case Op::leave:
            return Leave{r.name("room", L.room_bytes_max)};
        case Op::publish:
            return Publish{r.name("room", L.room_bytes_max), r.name("id", L.id_bytes_max),
                           r.raw("data")};
        case Op::ack:
            return Ack{r.name("id", L.id_bytes_max), r.name("room", L.room_bytes_max),
                       r.u64("epoch"), r.u64("offset")};
        case Op::nack: {
            Nack m;
            m.id = r.name("id", L.id_bytes_max);
            m.code = r.name("code", L.text_bytes_max);
            m.reason = r.str("reason", L.text_bytes_max, false);
            m.retry_after_ms = r.opt_non_negative_i64("retry_after_ms");
            return m;
        }
        case Op::event: {
            Event m;
            m.room = r.name("room", L.room_bytes_max);
            m.position = {r.u64("epoch"), r.u64("offset")};
            m.data = r.raw("data");
            if (r.ok() && m.position.offset == 0)
                r.fail(DecodeErrc::out_of_range, "offset", "offsets start at 1");
            return m;
        }
        case Op::reconnect: {
            Reconnect m;
            m.reason = r.str("reason", L.text_bytes_max, false);
            m.retry_after_ms = r.opt_non_negative_i64("retry_after_ms");
            return m;
        }
    }
    return std::nullopt;
}

DecodeErrc map_parse_error(const boost::system::error_code& ec) {
    if (ec == json::error::too_deep) return DecodeErrc::too_deep;
    return DecodeErrc::invalid_json;
}

/// Parses JSON with bounded depth into a stack-backed arena.
json::value parse_bounded(std::string_view text, std::size_t depth_max, json::storage_ptr sp,
                          boost::system::error_code& ec) {
    json::parse_options opt;
    opt.max_depth = depth_max;
    opt.allow_invalid_utf8 = false;
    return json::parse(json::string_view{text.data(), text.size()}, ec, std::move(sp), opt);
}

// ---- encoding ---------------------------------------------------------------

class Writer {
  public:
    explicit Writer(Op op) {
        out_.reserve(96);
        out_ += R"({"op":")";
        out_ += to_string(op);
        out_ += R"(","d":{)";
    }
    Writer& str(std::string_view key, std::string_view v) {
        begin(key);
        quote(v);
        return *this;
    }
    Writer& u64(std::string_view key, std::uint64_t v) {
        begin(key);
        out_ += std::to_string(v);
        return *this;
    }
    Writer& i64(std::string_view key, std::int64_t v) {
        begin(key);
        out_ += std::to_string(v);
        return *this;
    }
    Writer& boolean(std::string_view key, bool v) {
        begin(key);
        out_ += v ? "true" : "false";
        return *this;
    }
    Writer& raw(std::string_view key, std::string_view json_text) {
        begin(key);
        out_ += json_text;
        return *this;
    }
    Writer& position(std::string_view key, const StreamPosition& p) {
        begin(key);
        out_ += R"({"epoch":)" + std::to_string(p.epoch) + R"(,"offset":)" +
                std::to_string(p.offset) + "}";
        return *this;
    }
    std::string finish() {
        out_ += "}}";
        return std::move(out_);
    }
    std::string& buffer() { return out_; }
    void quote(std::string_view v) {
        out_ += '"';
        for (char ch : v) {
            const auto c = static_cast<unsigned char>(ch);
            switch (c) {
                case '"':
                    out_ += "\\\"";
                    break;
                case '\\':
                    out_ += "\\\\";
                    break;
                case '\n':
                    out_ += "\\n";
                    break;
                case '\r':
                    out_ += "\\r";
                    break;
                case '\t':
                    out_ += "\\t";
                    break;
                default:
                    if (c < 0x20) {
                        char buf[8];
                        std::snprintf(buf, sizeof buf, "\\u%04x", c);
                        out_ += buf;
                    } else {
                        out_ += ch;
                    }
            }
        }
        out_ += '"';
    }
    void begin(std::string_view key) {
        if (!first_) out_ += ',';
        first_ = false;
        quote(key);
        out_ += ':';
    }

  private:
    std::string out_;
    bool first_ = true;
};

}  // namespace

std::string_view to_string(Op op) noexcept {
    for (const auto& e : kOps)
        if (e.op == op) return e.name;
    return "UNKNOWN";
}

std::optional<Op> parse_op(std::string_view name) noexcept {
    for (const auto& e : kOps)
        if (e.name == name) return e.op;
    return std::nullopt;
}

Op op_of(const Message& m) noexcept {
    static constexpr std::array<Op, std::variant_size_v<Message>> kByIndex{
        Op::hello,           Op::identify,  Op::resume,        Op::ready, Op::resumed,
        Op::invalid_session, Op::heartbeat, Op::heartbeat_ack, Op::join,  Op::joined,
        Op::join_error,      Op::leave,     Op::publish,       Op::ack,   Op::nack,
        Op::event,           Op::reconnect};
    return kByIndex[m.index()];
}

bool codes::retryable(std::string_view code) noexcept {
    return code == rate_limited || code == internal || code == unavailable;
}

std::string_view to_string(DecodeErrc e) noexcept {
    switch (e) {
        case DecodeErrc::frame_too_large:
            return "frame_too_large";
        case DecodeErrc::invalid_json:
            return "invalid_json";
        case DecodeErrc::too_deep:
            return "too_deep";
        case DecodeErrc::not_an_object:
            return "not_an_object";
        case DecodeErrc::missing_op:
            return "missing_op";
        case DecodeErrc::unknown_op:
            return "unknown_op";
        case DecodeErrc::missing_field:
            return "missing_field";
        case DecodeErrc::wrong_type:
            return "wrong_type";
        case DecodeErrc::field_too_large:
            return "field_too_large";
        case DecodeErrc::out_of_range:
            return "out_of_range";
    }
    return "unknown";
}

std::string DecodeError::message() const {
    std::string s{to_string(code)};
    if (!field.empty()) s += " at " + field;
    if (!detail.empty()) s += ": " + detail;
    return s;
}

std::uint16_t DecodeError::close_code() const noexcept {
    switch (code) {
        case DecodeErrc::frame_too_large:
            return close_code::message_too_big;
        case DecodeErrc::unknown_op:
            return close_code::unknown_op;
        default:
            return close_code::decode_error;
    }
}

void throw_exception_from_error(const DecodeError& e, const boost::source_location&) {
    throw std::invalid_argument(e.message());
}

DecodeResult decode(std::string_view frame, const Limits& limits) noexcept {
    try {
        if (frame.size() > limits.frame_bytes_max)
            return make_error(DecodeErrc::frame_too_large, "",
                              std::to_string(frame.size()) + " bytes > limit of " +
                                  std::to_string(limits.frame_bytes_max));
        unsigned char arena[4096];
        json::monotonic_resource mr{arena, sizeof arena};
        boost::system::error_code ec;
        json::value v = parse_bounded(frame, limits.depth_max, &mr, ec);
        if (ec) {
            const auto c = map_parse_error(ec);
            return make_error(c, "",
                              c == DecodeErrc::too_deep
                                  ? "nesting deeper than " + std::to_string(limits.depth_max)
                                  : ec.message());
        }
        if (!v.is_object())
            return make_error(DecodeErrc::not_an_object, "", "the frame must be a JSON object");
        const auto& env = v.get_object();
        const json::value* opv = env.if_contains("op");
        if (!opv || !opv->is_string())
            return make_error(DecodeErrc::missing_op, "op", "expected a string member \"op\"");
        const auto& ops = opv->get_string();
        const auto op = parse_op(std::string_view{ops.data(), ops.size()});
        if (!op) {
            std::string shown{ops.data(), std::min<std::size_t>(ops.size(), 64)};
            return make_error(DecodeErrc::unknown_op, "op",
                              "no operation named \"" + shown + "\" in v1");
        }
        const json::value* dv = env.if_contains("d");
        static const json::object empty;
        const json::object* d = &empty;
        if (dv && !dv->is_null()) {
            if (!dv->is_object())
                return make_error(DecodeErrc::not_an_object, "d", "expected an object");
            d = &dv->get_object();
        }
        Reader r{*d, limits};
        auto m = decode_payload(*op, r);
        if (!r.ok()) return r.take_error();
        return std::move(*m);
    } catch (const std::exception& e) {
        return make_error(DecodeErrc::invalid_json, "",
                          std::string{"decoder failure: "} + e.what());
    } catch (...) {
        return make_error(DecodeErrc::invalid_json, "", "decoder failure");
    }
}

result<void, DecodeError> validate_data(std::string_view data, const Limits& limits) noexcept {
    try {
        if (data.size() > limits.frame_bytes_max)
            return make_error(DecodeErrc::frame_too_large, "d.data", "larger than the frame limit");
        // The payload sits two levels deep inside the envelope ({"d":{"data":...}}).
        if (limits.depth_max <= 2)
            return make_error(DecodeErrc::too_deep, "d.data", "no depth left for data");
        unsigned char arena[4096];
        json::monotonic_resource mr{arena, sizeof arena};
        boost::system::error_code ec;
        (void)parse_bounded(data, limits.depth_max - 2, &mr, ec);
        if (ec) return make_error(map_parse_error(ec), "d.data", ec.message());
        return {};
    } catch (...) {
        return make_error(DecodeErrc::invalid_json, "d.data", "validation failure");
    }
}

std::string truncate_close_reason(std::string_view reason) {
    std::size_t cut = std::min(reason.size(), close_reason_bytes_max);
    // Back up over continuation bytes (10xxxxxx) to the start of a character.
    while (cut < reason.size() && cut > 0 &&
           (static_cast<unsigned char>(reason[cut]) & 0xC0) == 0x80)
        --cut;
    return std::string{reason.substr(0, cut)};
}

bool is_valid_utf8(std::string_view s) noexcept {
    std::size_t i = 0;
    const auto n = s.size();
    while (i < n) {
        const auto c = static_cast<unsigned char>(s[i]);
        std::size_t len = 0;
        std::uint32_t cp = 0;
        if (c < 0x80) {
            ++i;
            continue;
        }
        if ((c & 0xE0) == 0xC0) {
            len = 2;
            cp = c & 0x1Fu;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3;
            cp = c & 0x0Fu;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4;
            cp = c & 0x07u;
        } else
            return false;
        if (i + len > n) return false;
        for (std::size_t k = 1; k < len; ++k) {
            const auto cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3Fu);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

std::string encode(const Message& msg) {
    return std::visit(
        [](const auto& m) -> std::string {
            using T = std::decay_t<decltype(m)>;
            if constexpr (std::is_same_v<T, Hello>) {
                return Writer{Op::hello}
                    .i64("heartbeat_ms", m.heartbeat_ms)
                    .i64("session_ttl_ms", m.session_ttl_ms)
                    .str("server_name", m.server_name)
                    .str("server_version", m.server_version)
                    .str("node_id", m.node_id)
                    .finish();
            } else if constexpr (std::is_same_v<T, Identify>) {
                Writer w{Op::identify};
                w.str("token", m.token);
                w.begin("client");
                w.buffer() += "{";
                w.quote("name");
                w.buffer() += ":";
                w.quote(m.client.name);
                w.buffer() += ",";
                w.quote("version");
                w.buffer() += ":";
                w.quote(m.client.version);
                w.buffer() += "}";
                return w.finish();
            } else if constexpr (std::is_same_v<T, Resume>) {
                Writer w{Op::resume};
                w.str("session_id", m.session_id).str("resume_token", m.resume_token);
                w.begin("rooms");
                w.buffer() += '[';
                for (std::size_t i = 0; i < m.rooms.size(); ++i) {
                    if (i) w.buffer() += ',';
                    w.buffer() += "{\"room\":";
                    w.quote(m.rooms[i].room);
                    w.buffer() += ",\"epoch\":" + std::to_string(m.rooms[i].position.epoch) +
                                  ",\"offset\":" + std::to_string(m.rooms[i].position.offset) + "}";
                }
                w.buffer() += ']';
                return w.finish();
            } else if constexpr (std::is_same_v<T, Ready>) {
                return Writer{Op::ready}
                    .str("session_id", m.session_id)
                    .str("resume_token", m.resume_token)
                    .str("user", m.user)
                    .finish();
            } else if constexpr (std::is_same_v<T, Resumed>) {
                Writer w{Op::resumed};
                w.str("session_id", m.session_id);
                if (!m.resume_token.empty()) w.str("resume_token", m.resume_token);
                return w.finish();
            } else if constexpr (std::is_same_v<T, InvalidSession>) {
                return Writer{Op::invalid_session}.boolean("resumable", m.resumable).finish();
            } else if constexpr (std::is_same_v<T, Heartbeat>) {
                return Writer{Op::heartbeat}.i64("ts", m.ts).finish();
            } else if constexpr (std::is_same_v<T, HeartbeatAck>) {
                return Writer{Op::heartbeat_ack}.i64("ts", m.ts).finish();
            } else if constexpr (std::is_same_v<T, Join>) {
                Writer w{Op::join};
                w.str("room", m.room);
                if (m.since) w.position("since", *m.since);
                return w.finish();
            } else if constexpr (std::is_same_v<T, Joined>) {
                return Writer{Op::joined}
                    .str("room", m.room)
                    .u64("epoch", m.position.epoch)
                    .u64("offset", m.position.offset)
                    .boolean("recovered", m.recovered)
                    .finish();
            } else if constexpr (std::is_same_v<T, JoinError>) {
                return Writer{Op::join_error}
                    .str("room", m.room)
                    .str("code", m.code)
                    .str("reason", m.reason)
                    .boolean("fatal", m.fatal)
                    .finish();
            } else if constexpr (std::is_same_v<T, Leave>) {
                return Writer{Op::leave}.str("room", m.room).finish();
            } else if constexpr (std::is_same_v<T, Publish>) {
                return Writer{Op::publish}
                    .str("room", m.room)
                    .str("id", m.id)
                    .raw("data", m.data)
                    .finish();
            } else if constexpr (std::is_same_v<T, Ack>) {
                return Writer{Op::ack}
                    .str("id", m.id)
                    .str("room", m.room)
                    .u64("epoch", m.epoch)
                    .u64("offset", m.offset)
                    .finish();
            } else if constexpr (std::is_same_v<T, Nack>) {
                Writer w{Op::nack};
                w.str("id", m.id).str("code", m.code).str("reason", m.reason);
                if (m.retry_after_ms) w.i64("retry_after_ms", *m.retry_after_ms);
                return w.finish();
            } else if constexpr (std::is_same_v<T, Event>) {
                return Writer{Op::event}
                    .str("room", m.room)
                    .u64("epoch", m.position.epoch)
                    .u64("offset", m.position.offset)
                    .raw("data", m.data)
                    .finish();
            } else {
                static_assert(std::is_same_v<T, Reconnect>);
                Writer w{Op::reconnect};
                w.str("reason", m.reason);
                if (m.retry_after_ms) w.i64("retry_after_ms", *m.retry_after_ms);
                return w.finish();
            }
        },
        msg);
}

}  // namespace tether::proto
