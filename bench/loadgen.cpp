// tether-loadgen: the C++ load generator of the benchmarks (docs/BENCHMARKS.md).
//
// Thousands of WebSocket connections from one thread (Beast, one io_context),
// speaking one of three protocols, so that every server is measured by the
// same client:
//   tether  the tether.v1 protocol (IDENTIFY, JOIN, PUBLISH -> ACK, EVENT)
//   raw     plain text frames: /fanout broadcasts, /echo echoes (Node `ws`,
//           tether-raw-server)
//   sio     Socket.IO 4 over its WebSocket transport (Engine.IO v4 framing:
//           "40" connect, "42[...]" events, "2"/"3" ping/pong)
//
// Scenarios (each prints one JSON object with its figures on stdout):
//   fanout   one publisher, N subscribers: saturation (window of messages not
//            yet delivered to every subscriber) or a fixed rate with latency
//   echo     M connections, W messages in flight each: round trips/s, latency
//            (tether: PUBLISH -> ACK, i.e. through the store)
//   idle     open N connections and hold them until stdin closes
//   resume   tether only: away while K events were published, RESUME -> last
//   storm    tether only, with the tether::Client library: N clients, a steady
//            flow, the server killed and restarted by the caller
//   client   tether only: one idle tether::Client's CPU and memory, and the
//            time from set_online(true) to connected
//
// Latencies use the steady clock of this process (publisher and subscribers
// live here), so they include both client stacks and the server.

#include <tether/client.hpp>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json.hpp>

#include <CLI/CLI.hpp>

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using namespace std::string_view_literals;

namespace {

using Clock = std::chrono::steady_clock;

std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
        .count();
}

std::int64_t wall_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "tether-loadgen: %s\n", what.c_str());
    std::fflush(stderr);
    std::_Exit(1);
}

enum class Proto { tether, raw, sio };

Proto parse_proto(const std::string& s) {
    if (s == "tether") return Proto::tether;
    if (s == "raw") return Proto::raw;
    if (s == "sio") return Proto::sio;
    die("unknown --proto " + s + " (tether, raw, sio)");
}

/// Latency samples in nanoseconds, bounded (a benchmark must not grow without
/// limit either): past `samples_max` every other sample is kept.
class Samples {
  public:
    void add(std::int64_t ns) {
        if (++seen_ % stride_ != 0) return;
        v_.push_back(ns);
        if (v_.size() >= kSamplesMax) {
            std::vector<std::int64_t> half;
            half.reserve(kSamplesMax / 2);
            for (std::size_t i = 0; i < v_.size(); i += 2)
                half.push_back(v_[i]);
            v_ = std::move(half);
            stride_ *= 2;
        }
    }
    double percentile_us(double p) {
        if (v_.empty()) return 0;
        const auto k = static_cast<std::size_t>(p * static_cast<double>(v_.size() - 1));
        std::nth_element(v_.begin(), v_.begin() + static_cast<std::ptrdiff_t>(k), v_.end());
        return static_cast<double>(v_[k]) / 1000.0;
    }
    std::size_t size() const { return v_.size(); }

  private:
    static constexpr std::size_t kSamplesMax = 4u << 20;
    std::vector<std::int64_t> v_;
    std::uint64_t seen_ = 0;
    std::uint64_t stride_ = 1;
};

std::int64_t find_int(std::string_view text, std::string_view key) {
    const auto at = text.find(key);
    if (at == std::string_view::npos) return -1;
    std::int64_t v = -1;
    const char* b = text.data() + at + key.size();
    std::from_chars(b, text.data() + text.size(), v);
    return v;
}

bool is_op(std::string_view text, std::string_view op) {
    // The gateway writes "op" first: {"op":"EVENT",...
    const auto head = text.substr(0, 8 + op.size());
    return head.size() == 8 + op.size() && head.substr(7, op.size()) == op &&
           head.substr(0, 7) == R"({"op":")";
}

/// A prefix unique to this process: the server deduplicates publish ids per
/// user, so two runs must not reuse (user, id) pairs.
const std::string& run_tag() {
    static const std::string tag = std::to_string(wall_ms()) + "." + std::to_string(::getpid());
    return tag;
}

std::string payload(std::int64_t t, std::uint64_t seq, std::size_t size) {
    std::string p = R"({"t":)" + std::to_string(t) + R"(,"s":)" + std::to_string(seq) + R"(,"x":")";
    const std::size_t tail = 2;
    if (p.size() + tail < size) p.append(size - p.size() - tail, 'x');
    p += "\"}";
    return p;
}

struct Target {
    std::string host;
    std::string port;
    std::string path;  // "/" for tether, "/fanout" or "/echo" for raw
    tcp::endpoint endpoint;
};

Target parse_url(const std::string& url) {
    // ws://HOST:PORT/PATH
    const std::string scheme = "ws://";
    if (url.rfind(scheme, 0) != 0) die("--url must start with ws://");
    auto rest = url.substr(scheme.size());
    const auto slash = rest.find('/');
    const auto hostport = rest.substr(0, slash);
    Target t;
    t.path = slash == std::string::npos ? "/" : rest.substr(slash);
    const auto colon = hostport.rfind(':');
    if (colon == std::string::npos) die("--url needs a port");
    t.host = hostport.substr(0, colon);
    t.port = hostport.substr(colon + 1);
    try {
        t.endpoint =
            tcp::endpoint{asio::ip::make_address(t.host == "localhost" ? "127.0.0.1" : t.host),
                          static_cast<unsigned short>(std::stoi(t.port))};
    } catch (const std::exception&) {
        die("--url host must be an IP address (or localhost): " + t.host);
    }
    return t;
}

// ---- one connection ---------------------------------------------------------------------

class Conn;
struct Handler {
    virtual ~Handler() = default;
    virtual void on_ready(Conn&) = 0;
    virtual void on_message(Conn&, std::string_view text) = 0;
    virtual void on_failed(Conn&, const std::string& what) = 0;
};

/// A WebSocket connection that opens itself (TCP, upgrade, then the protocol's
/// own opening: tether HELLO/IDENTIFY/READY[/JOIN/JOINED], Socket.IO 0/40/40),
/// answers pings, and hands every later text message to its handler.
///
/// The framing is this file's own, not Beast's: a load generator must be
/// cheaper than the servers it measures. Reads take whatever the socket holds
/// (64 KiB at a time, often hundreds of frames) and parse the frames in place;
/// writes made while one is in flight are coalesced into the next. Client
/// frames are masked as RFC 6455 requires. The handshake's
/// Sec-WebSocket-Accept is not checked (the servers are our own test setup).
class Conn : public std::enable_shared_from_this<Conn> {
  public:
    Conn(asio::io_context& ioc, Handler& h, Proto p, std::size_t index)
        : sock_(ioc), h_(h), proto_(p), index_(index) {
        mask_ = static_cast<std::uint32_t>(0x9e3779b9u * (index + 1));
    }

    std::size_t index() const { return index_; }
    std::string room;  // tether: joined during the opening when not empty
    std::string user;  // tether: the token (anonymous server: the user name)
    std::int64_t sent_at_ns = 0;
    std::uint64_t seq = 0;

    void open(const Target& t) {
        target_ = &t;
        sock_.async_connect(t.endpoint, [self = shared_from_this()](beast::error_code ec) {
            if (ec) return self->fail("connect: " + ec.message());
            self->sock_.set_option(tcp::no_delay(true));
            self->handshake();
        });
    }

    void send(std::string_view text) { frame(0x1, text); }

    /// A tether PUBLISH / a raw text / a Socket.IO event with this data.
    void publish(const std::string& data, std::string_view sio_event = "m") {
        switch (proto_) {
            case Proto::tether:
                send(R"({"op":"PUBLISH","d":{"room":")" + room + R"(","id":")" + user + "-" +
                     std::to_string(++seq) + R"(","data":)" + data + "}}");
                break;
            case Proto::raw:
                send(data);
                break;
            case Proto::sio:
                send("42[\"" + std::string{sio_event} + "\"," + data + "]");
                break;
        }
    }

  private:
    void handshake() {
        std::string path = target_->path;
        if (proto_ == Proto::sio) path = "/socket.io/?EIO=4&transport=websocket";
        std::string req = "GET " + path + " HTTP/1.1\r\nHost: " + target_->host + ":" +
                          target_->port +
                          "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          "Sec-WebSocket-Version: 13\r\n";
        if (proto_ == Proto::tether) req += "Sec-WebSocket-Protocol: tether.v1\r\n";
        req += "\r\n";
        out_ += req;
        flush();
        buf_.resize(kReadBytes);
        read();
    }

    void read() {
        if (buf_.size() - have_ < kReadBytes / 4) buf_.resize(buf_.size() * 2);
        sock_.async_read_some(asio::buffer(buf_.data() + have_, buf_.size() - have_),
                              [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                                  if (ec) return self->fail("read: " + ec.message());
                                  self->have_ += n;
                                  if (!self->parse()) return;
                                  self->read();
                              });
    }

    /// Consumes every complete unit in the buffer; false when the connection ended.
    bool parse() {
        std::size_t at = 0;
        if (!upgraded_) {
            const std::string_view head{buf_.data(), have_};
            const auto end = head.find("\r\n\r\n");
            if (end == std::string_view::npos) {
                if (have_ > 16384) fail("handshake: oversized response");
                return !failed_;
            }
            if (head.substr(0, 12) != "HTTP/1.1 101") {
                fail("handshake: " + std::string{head.substr(0, head.find('\r'))});
                return false;
            }
            upgraded_ = true;
            at = end + 4;
            if (proto_ == Proto::raw) {
                ready_ = true;
                h_.on_ready(*this);
            }
        }
        while (have_ - at >= 2) {
            const auto* p = reinterpret_cast<const unsigned char*>(buf_.data() + at);
            const bool fin = (p[0] & 0x80) != 0;
            const unsigned op = p[0] & 0x0f;
            std::uint64_t len = p[1] & 0x7f;
            std::size_t hdr = 2;
            if (len == 126) {
                if (have_ - at < 4) break;
                len = (std::uint64_t{p[2]} << 8) | p[3];
                hdr = 4;
            } else if (len == 127) {
                if (have_ - at < 10) break;
                len = 0;
                for (int k = 0; k < 8; ++k)
                    len = (len << 8) | p[2 + k];
                hdr = 10;
            }
            if ((p[1] & 0x80) != 0) {
                fail("a masked frame from the server");
                return false;
            }
            if (have_ - at < hdr + len) {
                if (hdr + len > buf_.size()) buf_.resize(hdr + len + kReadBytes);
                break;
            }
            const std::string_view payload{buf_.data() + at + hdr, static_cast<std::size_t>(len)};
            at += hdr + static_cast<std::size_t>(len);
            if (op == 0x8) {
                fail("closed by the server");
                return false;
            }
            if (op == 0x9) {
                frame(0xA, payload);
                continue;
            }
            if (op == 0xA) continue;
            if (!fin || (op == 0x0 && !partial_.empty())) {  // fragmented message
                partial_.append(payload);
                if (!fin) continue;
                const std::string whole = std::exchange(partial_, {});
                on_text(whole);
            } else {
                on_text(payload);
            }
            if (failed_) return false;
        }
        std::memmove(buf_.data(), buf_.data() + at, have_ - at);
        have_ -= at;
        return !failed_;
    }

    void on_text(std::string_view text) {
        if (proto_ == Proto::sio) {
            if (text == "2") return send("3");  // Engine.IO ping
            if (!ready_) {
                if (text.starts_with("0{")) return send("40");
                if (text.starts_with("40")) {
                    ready_ = true;
                    return h_.on_ready(*this);
                }
                if (text.starts_with("44")) return fail("Socket.IO connect refused");
                return;
            }
            return h_.on_message(*this, text);
        }
        if (proto_ == Proto::tether && !ready_) {
            if (is_op(text, "HELLO"))
                return send(R"({"op":"IDENTIFY","d":{"token":")" + user +
                            R"(","client":{"name":"tether-loadgen","version":"1"}}})");
            if (is_op(text, "READY")) {
                if (room.empty()) {
                    ready_ = true;
                    return h_.on_ready(*this);
                }
                return send(R"({"op":"JOIN","d":{"room":")" + room + R"("}})");
            }
            if (is_op(text, "JOINED")) {
                ready_ = true;
                return h_.on_ready(*this);
            }
            return fail("unexpected during the opening: " + std::string{text.substr(0, 200)});
        }
        h_.on_message(*this, text);
    }

    /// Appends one masked frame to the outbound buffer.
    void frame(unsigned op, std::string_view payload) {
        const std::size_t n = payload.size();
        out_ += static_cast<char>(0x80 | op);
        if (n < 126) {
            out_ += static_cast<char>(0x80 | n);
        } else if (n < 65536) {
            out_ += static_cast<char>(0x80 | 126);
            out_ += static_cast<char>((n >> 8) & 0xff);
            out_ += static_cast<char>(n & 0xff);
        } else {
            out_ += static_cast<char>(0x80 | 127);
            for (int k = 7; k >= 0; --k)
                out_ += static_cast<char>((n >> (8 * k)) & 0xff);
        }
        unsigned char key[4];
        for (int k = 0; k < 4; ++k)
            key[k] = static_cast<unsigned char>(mask_ >> (8 * k));
        out_.append(reinterpret_cast<const char*>(key), 4);
        const auto start = out_.size();
        out_.append(payload);
        for (std::size_t k = 0; k < n; ++k)
            out_[start + k] = static_cast<char>(out_[start + k] ^ static_cast<char>(key[k & 3]));
        flush();
    }

    void flush() {
        if (writing_ || out_.empty()) return;
        writing_ = true;
        wire_ = std::exchange(out_, std::move(wire_));
        out_.clear();
        asio::async_write(sock_, asio::buffer(wire_),
                          [self = shared_from_this()](beast::error_code ec, std::size_t) {
                              self->writing_ = false;
                              if (ec) return self->fail("write: " + ec.message());
                              self->flush();
                          });
    }

    void fail(const std::string& what) {
        if (failed_) return;
        failed_ = true;
        h_.on_failed(*this, what);
    }

    static constexpr std::size_t kReadBytes = 64u << 10;
    tcp::socket sock_;
    std::vector<char> buf_;
    std::size_t have_ = 0;
    std::string partial_;
    std::string out_, wire_;  // frames being gathered / being written
    Handler& h_;
    Proto proto_;
    std::size_t index_;
    std::uint32_t mask_;
    const Target* target_ = nullptr;
    bool upgraded_ = false;
    bool ready_ = false;
    bool failed_ = false;
    bool writing_ = false;
};

/// Opens connections with at most `concurrent` openings at a time (a burst of
/// thousands of SYNs would overflow the listen backlog and measure the
/// kernel's SYN retry timer instead of the server).
class Opener {
  public:
    Opener(asio::io_context& ioc, const Target& t, std::size_t concurrent)
        : ioc_(ioc), target_(t), concurrent_(concurrent) {}
    void add(std::shared_ptr<Conn> c) { queue_.push_back(std::move(c)); }
    void start() { pump(); }
    /// Called by the handler when a connection became ready (or failed).
    void done() {
        --in_flight_;
        pump();
    }

  private:
    void pump() {
        while (in_flight_ < concurrent_ && !queue_.empty()) {
            ++in_flight_;
            auto c = std::move(queue_.front());
            queue_.pop_front();
            c->open(target_);
        }
    }
    asio::io_context& ioc_;
    const Target& target_;
    std::size_t concurrent_;
    std::size_t in_flight_ = 0;
    std::deque<std::shared_ptr<Conn>> queue_;
};

struct Common {
    std::string url;
    std::string proto_name = "tether";
    double duration_s = 5;
    double warmup_s = 1;
    std::size_t size = 100;
    std::size_t concurrent_opens = 200;
    std::string label;  // copied into the JSON output
};

void add_common(CLI::App* cmd, Common& c) {
    cmd->add_option("--url", c.url, "ws://HOST:PORT/PATH of the server")->required();
    cmd->add_option("--proto", c.proto_name, "tether, raw or sio (default tether)");
    cmd->add_option("--duration", c.duration_s, "Measured seconds (default 5)");
    cmd->add_option("--warmup", c.warmup_s, "Seconds before measuring (default 1)");
    cmd->add_option("--size", c.size, "Payload bytes (default 100)");
    cmd->add_option("--concurrent-opens", c.concurrent_opens,
                    "Connection openings in progress at most (default 200)");
    cmd->add_option("--label", c.label, "Free text copied into the output");
}

void print(json::object o) {
    std::cout << json::serialize(o) << std::endl;
}

// ---- fan-out ------------------------------------------------------------------------------

struct FanoutArgs : Common {
    std::size_t subscribers = 100;
    double rate = 0;  // messages/s; 0 = saturation
    std::size_t window = 16;
};

class Fanout : public Handler {
  public:
    Fanout(asio::io_context& ioc, FanoutArgs a)
        : ioc_(ioc),
          a_(std::move(a)),
          proto_(parse_proto(a_.proto_name)),
          target_(parse_url(a_.url)),
          opener_(ioc, target_, a_.concurrent_opens),
          timer_(ioc) {
        remaining_.assign(kRing, 0);
    }

    void run() {
        for (std::size_t i = 0; i <= a_.subscribers; ++i) {
            auto c = std::make_shared<Conn>(ioc_, *this, proto_, i);
            c->user = (i == 0 ? "fan-pub-" : "fan-sub-") + run_tag() + "-" + std::to_string(i);
            c->room = "fanout";
            conns_.push_back(c);
            opener_.add(c);
        }
        opened_at_ = now_ns();
        opener_.start();
        ioc_.run();
    }

    void on_ready(Conn&) override {
        opener_.done();
        if (++ready_ < conns_.size()) return;
        start_ns_ = now_ns();
        measure_from_ = start_ns_ + static_cast<std::int64_t>(a_.warmup_s * 1e9);
        measure_to_ = measure_from_ + static_cast<std::int64_t>(a_.duration_s * 1e9);
        if (a_.rate > 0)
            pace();
        else
            fill_window();
        tick();
    }

    void on_message(Conn& c, std::string_view text) override {
        if (c.index() == 0) return;  // the publisher's ACKs (tether)
        if (proto_ == Proto::tether && !is_op(text, "EVENT")) return;
        const auto seq = find_int(text, R"("s":)");
        const auto t = find_int(text, R"("t":)");
        if (seq < 0 || t < 0) die("a delivery without seq/ts: " + std::string{text.substr(0, 200)});
        const auto now = now_ns();
        if (now >= measure_from_ && now < measure_to_) {
            ++delivered_;
            if (a_.rate > 0) lat_.add(now - t);
        }
        auto& r = remaining_[static_cast<std::size_t>(seq) % kRing];
        if (r == 0) die("a message delivered more often than there are subscribers");
        if (--r == 0) {
            ++complete_;
            if (a_.rate == 0) fill_window();
        }
    }

    void on_failed(Conn& c, const std::string& what) override {
        die("connection " + std::to_string(c.index()) + ": " + what);
    }

  private:
    static constexpr std::size_t kRing = 1u << 16;

    void publish_one() {
        const auto seq = sent_++;
        auto& r = remaining_[seq % kRing];
        if (r != 0) die("more than 65536 messages in flight");
        r = static_cast<std::uint32_t>(a_.subscribers);
        conns_[0]->publish(payload(now_ns(), seq, a_.size));
    }

    void fill_window() {
        while (sent_ - complete_ < a_.window && now_ns() < measure_to_)
            publish_one();
    }

    void pace() {
        const auto elapsed = static_cast<double>(now_ns() - start_ns_) / 1e9;
        const auto due = static_cast<std::uint64_t>(elapsed * a_.rate);
        while (sent_ < due && sent_ - complete_ < kRing / 2)
            publish_one();
        if (now_ns() >= measure_to_) return;
        auto t = std::make_shared<asio::steady_timer>(ioc_, 1ms);
        t->async_wait([this, t](beast::error_code) { pace(); });
    }

    void tick() {
        timer_.expires_at(Clock::time_point{std::chrono::nanoseconds{measure_to_}} + 300ms);
        timer_.async_wait([this](beast::error_code) { finish(); });
    }

    void finish() {
        const double secs = a_.duration_s;
        json::object o;
        o["scenario"] = "fanout";
        o["proto"] = a_.proto_name;
        o["label"] = a_.label;
        o["subscribers"] = a_.subscribers;
        o["mode"] = a_.rate > 0 ? "rate" : "saturation";
        o["rate"] = a_.rate;
        o["open_ms"] = static_cast<double>(start_ns_ - opened_at_) / 1e6;
        o["deliveries_per_s"] = static_cast<double>(delivered_) / secs;
        o["messages_per_s"] =
            static_cast<double>(delivered_) / secs / static_cast<double>(a_.subscribers);
        if (a_.rate > 0) {
            o["samples"] = lat_.size();
            o["p50_us"] = lat_.percentile_us(0.50);
            o["p99_us"] = lat_.percentile_us(0.99);
        }
        print(std::move(o));
        std::fflush(stdout);
        std::_Exit(0);  // thousands of sockets: let the kernel close them
    }

    asio::io_context& ioc_;
    FanoutArgs a_;
    Proto proto_;
    Target target_;
    Opener opener_;
    asio::steady_timer timer_;
    std::vector<std::shared_ptr<Conn>> conns_;
    std::vector<std::uint32_t> remaining_;
    std::size_t ready_ = 0;
    std::uint64_t sent_ = 0, complete_ = 0, delivered_ = 0;
    std::int64_t opened_at_ = 0, start_ns_ = 0, measure_from_ = 0, measure_to_ = 0;
    Samples lat_;
};

// ---- echo / round trips ---------------------------------------------------------------------

struct EchoArgs : Common {
    std::size_t connections = 100;
    std::size_t inflight = 1;
};

class Echo : public Handler {
  public:
    Echo(asio::io_context& ioc, EchoArgs a)
        : ioc_(ioc),
          a_(std::move(a)),
          proto_(parse_proto(a_.proto_name)),
          target_(parse_url(a_.url)),
          opener_(ioc, target_, a_.concurrent_opens),
          timer_(ioc) {}

    void run() {
        for (std::size_t i = 0; i < a_.connections; ++i) {
            auto c = std::make_shared<Conn>(ioc_, *this, proto_, i);
            c->user = "echo-" + run_tag() + "-" + std::to_string(i);
            c->room = "echo-" + std::to_string(i);
            conns_.push_back(c);
            opener_.add(c);
        }
        opener_.start();
        ioc_.run();
    }

    void on_ready(Conn&) override {
        opener_.done();
        if (++ready_ < conns_.size()) return;
        measure_from_ = now_ns() + static_cast<std::int64_t>(a_.warmup_s * 1e9);
        measure_to_ = measure_from_ + static_cast<std::int64_t>(a_.duration_s * 1e9);
        for (auto& c : conns_)
            for (std::size_t k = 0; k < a_.inflight; ++k)
                send_one(*c);
        timer_.expires_at(Clock::time_point{std::chrono::nanoseconds{measure_to_}});
        timer_.async_wait([this](beast::error_code) { finish(); });
    }

    void on_message(Conn& c, std::string_view text) override {
        if (proto_ == Proto::tether) {
            if (is_op(text, "NACK")) die("NACK: " + std::string{text.substr(0, 200)});
            if (!is_op(text, "ACK")) return;
            // The ACK names the id ("user-seq"), not the payload: one timestamp per
            // id is kept in order (acks of one connection come in publish order).
            const auto t = c_sent_.at(c.index()).front();
            c_sent_[c.index()].pop_front();
            record(t);
        } else {
            const auto t = find_int(text, R"("t":)");
            if (t < 0) return;
            record(t);
        }
        send_one(c);
    }

    void on_failed(Conn& c, const std::string& what) override {
        die("connection " + std::to_string(c.index()) + ": " + what);
    }

  private:
    void record(std::int64_t t) {
        const auto now = now_ns();
        if (now >= measure_from_ && now < measure_to_) {
            ++done_;
            lat_.add(now - t);
        }
    }

    void send_one(Conn& c) {
        if (now_ns() >= measure_to_) return;
        const auto t = now_ns();
        if (proto_ == Proto::tether) c_sent_[c.index()].push_back(t);
        c.publish(payload(t, c.seq, a_.size), "e");
    }

    void finish() {
        json::object o;
        o["scenario"] = "echo";
        o["proto"] = a_.proto_name;
        o["label"] = a_.label;
        o["connections"] = a_.connections;
        o["inflight"] = a_.inflight;
        o["round_trips_per_s"] = static_cast<double>(done_) / a_.duration_s;
        o["p50_us"] = lat_.percentile_us(0.50);
        o["p99_us"] = lat_.percentile_us(0.99);
        print(std::move(o));
        std::_Exit(0);
    }

    asio::io_context& ioc_;
    EchoArgs a_;
    Proto proto_;
    Target target_;
    Opener opener_;
    asio::steady_timer timer_;
    std::vector<std::shared_ptr<Conn>> conns_;
    std::map<std::size_t, std::deque<std::int64_t>> c_sent_;
    std::size_t ready_ = 0;
    std::uint64_t done_ = 0;
    std::int64_t measure_from_ = 0, measure_to_ = 0;
    Samples lat_;
};

// ---- idle connections -------------------------------------------------------------------------

struct IdleArgs : Common {
    std::size_t connections = 1000;
};

/// Opens the connections, prints {"event":"ready"}, holds them until stdin
/// reaches EOF (the benchmark script reads the server's memory meanwhile).
class Idle : public Handler {
  public:
    Idle(asio::io_context& ioc, IdleArgs a)
        : ioc_(ioc),
          a_(std::move(a)),
          proto_(parse_proto(a_.proto_name)),
          target_(parse_url(a_.url)),
          opener_(ioc, target_, a_.concurrent_opens) {}

    void run() {
        for (std::size_t i = 0; i < a_.connections; ++i) {
            auto c = std::make_shared<Conn>(ioc_, *this, proto_, i);
            c->user = "idle-" + run_tag() + "-" + std::to_string(i);
            c->room = "idle";
            conns_.push_back(c);
            opener_.add(c);
        }
        started_ = now_ns();
        opener_.start();
        std::thread{[this] {
            std::string line;
            while (std::getline(std::cin, line)) {
            }
            asio::post(ioc_, [this] { finish(); });
        }}.detach();
        ioc_.run();
    }

    void on_ready(Conn&) override {
        opener_.done();
        if (++ready_ < conns_.size()) return;
        json::object o;
        o["event"] = "ready";
        o["connections"] = ready_;
        o["open_ms"] = static_cast<double>(now_ns() - started_) / 1e6;
        print(std::move(o));
    }
    void on_message(Conn&, std::string_view) override {}
    void on_failed(Conn& c, const std::string& what) override {
        die("connection " + std::to_string(c.index()) + ": " + what);
    }

  private:
    void finish() {
        json::object o;
        o["scenario"] = "idle";
        o["proto"] = a_.proto_name;
        o["label"] = a_.label;
        o["connections"] = ready_;
        print(std::move(o));
        std::_Exit(0);
    }

    asio::io_context& ioc_;
    IdleArgs a_;
    Proto proto_;
    Target target_;
    Opener opener_;
    std::vector<std::shared_ptr<Conn>> conns_;
    std::size_t ready_ = 0;
    std::int64_t started_ = 0;
};

// ---- resume (tether only, sequential: coroutines)
// ------------------------------------------------

struct ResumeArgs : Common {
    std::size_t events = 1000;
    std::size_t runs = 20;
};

using Ws = websocket::stream<beast::tcp_stream>;

asio::awaitable<std::unique_ptr<Ws>> open_tether(const Target& t) {
    auto ws = std::make_unique<Ws>(co_await asio::this_coro::executor);
    co_await beast::get_lowest_layer(*ws).async_connect(t.endpoint, asio::use_awaitable);
    beast::get_lowest_layer(*ws).socket().set_option(tcp::no_delay(true));
    ws->set_option(websocket::stream_base::decorator([](websocket::request_type& r) {
        r.set(http::field::sec_websocket_protocol, "tether.v1");
    }));
    co_await ws->async_handshake(t.host + ":" + t.port, "/", asio::use_awaitable);
    ws->text(true);
    co_return ws;
}

asio::awaitable<json::object> recv_op(Ws& ws, std::string_view op) {
    for (;;) {
        beast::flat_buffer b;
        co_await ws.async_read(b, asio::use_awaitable);
        auto v = json::parse(beast::buffers_to_string(b.data()));
        auto& o = v.as_object();
        if (o.at("op").as_string() == op) co_return o.at("d").as_object();
        if (o.at("op").as_string() == "INVALID_SESSION" || o.at("op").as_string() == "NACK" ||
            o.at("op").as_string() == "JOIN_ERROR")
            die("resume: unexpected " + json::serialize(o));
    }
}

// Plain functions (GCC 12 cannot keep braced JSON initialisers alive across a co_await).
std::string identify_text(std::string_view token) {
    return json::serialize(json::object{{"op", "IDENTIFY"}, {"d", {{"token", token}}}});
}
std::string join_text(std::string_view room) {
    return json::serialize(json::object{{"op", "JOIN"}, {"d", {{"room", room}}}});
}
std::string resume_text(const json::object& ready, const std::string& room,
                        const json::object& joined) {
    json::object pos{
        {"room", room}, {"epoch", joined.at("epoch")}, {"offset", joined.at("offset")}};
    json::object d{{"session_id", ready.at("session_id")},
                   {"resume_token", ready.at("resume_token")},
                   {"rooms", json::array{pos}}};
    return json::serialize(json::object{{"op", "RESUME"}, {"d", std::move(d)}});
}

asio::awaitable<void> send_text(Ws& ws, std::string text) {
    co_await ws.async_write(asio::buffer(text), asio::use_awaitable);
}

asio::awaitable<void> resume_bench(ResumeArgs a) {
    const auto target = parse_url(a.url);
    std::vector<double> total_ms, after_resume_ms;
    auto pub = co_await open_tether(target);
    co_await recv_op(*pub, "HELLO"sv);
    co_await send_text(*pub, identify_text("resume-pub"));
    co_await recv_op(*pub, "READY"sv);
    std::uint64_t pub_seq = 0;
    for (std::size_t run = 0; run < a.runs; ++run) {
        const std::string room = "resume-" + std::to_string(wall_ms()) + "-" + std::to_string(run);
        // 1. A client joins the room, then goes away.
        auto away = co_await open_tether(target);
        co_await recv_op(*away, "HELLO"sv);
        co_await send_text(*away, identify_text("resume-away"));
        auto ready = co_await recv_op(*away, "READY"sv);
        co_await send_text(*away, join_text(room));
        auto joined = co_await recv_op(*away, "JOINED"sv);
        co_await away->async_close(websocket::close_code::normal, asio::use_awaitable);
        // 2. K events are published meanwhile (and acknowledged).
        for (std::size_t i = 0; i < a.events; ++i) {
            const auto text = R"({"op":"PUBLISH","d":{"room":")" + room + R"(","id":"rp-)" +
                              run_tag() + "-" + std::to_string(++pub_seq) + R"(","data":)" +
                              payload(0, i, a.size) + "}}";
            co_await pub->async_write(asio::buffer(text), asio::use_awaitable);
        }
        for (std::size_t i = 0; i < a.events; ++i)
            co_await recv_op(*pub, "ACK"sv);
        // 3. It comes back: connect -> HELLO -> RESUME -> RESUMED, JOINED, K events.
        const auto t0 = now_ns();
        auto back = co_await open_tether(target);
        co_await recv_op(*back, "HELLO"sv);
        const auto t1 = now_ns();
        co_await send_text(*back, resume_text(ready, room, joined));
        std::size_t got = 0;
        const auto last = joined.at("offset").to_number<std::uint64_t>() + a.events;
        beast::flat_buffer b;
        for (;;) {
            co_await back->async_read(b, asio::use_awaitable);
            const auto text = beast::buffers_to_string(b.data());
            b.consume(b.size());
            auto v = json::parse(text);
            const auto& op = v.at("op").as_string();
            if (op == "INVALID_SESSION") die("resume refused: " + text);
            if (op != "EVENT") continue;
            ++got;
            if (v.at("d").at("offset").to_number<std::uint64_t>() == last) break;
        }
        const auto t2 = now_ns();
        if (got != a.events)
            die("resume: " + std::to_string(got) + " events instead of " +
                std::to_string(a.events));
        total_ms.push_back(static_cast<double>(t2 - t0) / 1e6);
        after_resume_ms.push_back(static_cast<double>(t2 - t1) / 1e6);
        co_await back->async_close(websocket::close_code::normal, asio::use_awaitable);
    }
    auto median = [](std::vector<double> v) {
        std::sort(v.begin(), v.end());
        return v[v.size() / 2];
    };
    auto p90 = [](std::vector<double> v) {
        std::sort(v.begin(), v.end());
        return v[std::min(v.size() - 1, v.size() * 9 / 10)];
    };
    json::object o;
    o["scenario"] = "resume";
    o["proto"] = "tether";
    o["label"] = a.label;
    o["events"] = a.events;
    o["runs"] = a.runs;
    o["connect_to_last_median_ms"] = median(total_ms);
    o["connect_to_last_p90_ms"] = p90(total_ms);
    o["resume_to_last_median_ms"] = median(after_resume_ms);
    o["resume_to_last_p90_ms"] = p90(after_resume_ms);
    print(std::move(o));
}

// ---- reconnect storm (the tether::Client library) -----------------------------------------------

struct StormArgs {
    std::string url;
    std::size_t clients = 5000;
    std::size_t rooms = 50;
    double rate = 100;  // publishes/s, round robin over the rooms
    std::string jitter = "default";
    double settle_timeout_s = 60;
    std::string label;
};

class Storm {
  public:
    explicit Storm(StormArgs a) : a_(std::move(a)), work_(asio::make_work_guard(ioc_)) {}

    void run() {
        tether::BackoffPolicy backoff;
        if (a_.jitter == "full")
            backoff.strategy = tether::BackoffStrategy::full_jitter;
        else if (a_.jitter == "none")
            backoff.jitter_ratio = 0;
        else if (a_.jitter != "default")
            die("--jitter: default, full or none");
        backoff_cap_ms_ = static_cast<double>(backoff.max.count());
        state_.resize(a_.clients);
        room_heads_.assign(a_.rooms, 0);
        const auto started = now_ns();
        for (std::size_t i = 0; i < a_.clients; ++i) {
            tether::ClientOptions o;
            o.url = a_.url;
            o.token = "storm-" + std::to_string(i);
            o.backoff = backoff;
            o.network_monitor = false;
            o.seed = i + 1;
            o.on_session = [this, i](const tether::SessionStarted& s) { on_session(i, s); };
            o.on_status = [this, i](const tether::ClientStatus& s) { on_status(i, s); };
            auto c = std::make_unique<tether::Client>(ioc_.get_executor(), std::move(o));
            tether::RoomOptions ro;
            ro.on_message = [this, i](const tether::MessageReceived& m) { on_event(i, m); };
            ro.on_status = [this](const tether::RoomStatusChanged& s) {
                if (s.state == tether::RoomState::joined && !all_joined_ && ++joined_ == a_.clients)
                    on_all_joined();
            };
            ro.on_history_lost = [this](const tether::HistoryLost&) { ++history_lost_; };
            (void)c->join(room_name(i % a_.rooms), std::move(ro));
            clients_.push_back(std::move(c));
        }
        connect_started_ = started;
        std::thread{[this] { read_commands(); }}.detach();
        ioc_.run();
    }

  private:
    struct ClientState {
        std::uint64_t last = 0;  // last offset delivered
        std::uint64_t dups = 0, gaps = 0;
        std::int64_t resumed_at = 0;
        std::uint32_t attempt = 0;
        bool down = false;
    };

    std::string room_name(std::size_t r) const { return "storm-" + std::to_string(r); }

    void on_all_joined() {
        all_joined_ = true;
        json::object o;
        o["event"] = "steady";
        o["connect_ms"] = static_cast<double>(now_ns() - connect_started_) / 1e6;
        print(std::move(o));
        tether::ClientOptions o2;
        o2.url = a_.url;
        o2.token = "storm-publisher";
        o2.network_monitor = false;
        o2.outbox.count_max = 100'000;
        o2.outbox.bytes_max = 64u << 20;
        pub_ = std::make_unique<tether::Client>(ioc_.get_executor(), std::move(o2));
        for (std::size_t r = 0; r < a_.rooms; ++r)
            pub_rooms_.push_back(pub_->join(room_name(r)));
        pub_timer_ = std::make_unique<asio::steady_timer>(ioc_);
        pub_started_ = now_ns();
        publish_tick();
    }

    void publish_tick() {
        if (stop_publishing_) return;
        const auto due = static_cast<std::uint64_t>(static_cast<double>(now_ns() - pub_started_) /
                                                    1e9 * a_.rate);
        while (published_ < due) {
            const auto r = published_ % a_.rooms;
            ++published_;
            pub_rooms_[r].publish(R"({"s":)" + std::to_string(published_) + "}",
                                  [this, r](const tether::PublishOutcome& out) {
                                      if (!out.ok()) {
                                          ++publish_failed_;
                                          return;
                                      }
                                      ++acked_;
                                      room_heads_[r] =
                                          std::max(room_heads_[r], out.position.offset);
                                      check_done();
                                  });
        }
        pub_timer_->expires_after(5ms);
        pub_timer_->async_wait([this](beast::error_code) { publish_tick(); });
    }

    void on_session(std::size_t i, const tether::SessionStarted& s) {
        if (killed_at_ == 0 || !state_[i].down) return;
        session_at_.push_back(wall_ms());
        if (s.resumed)
            ++resumed_sessions_;
        else
            ++new_sessions_;
    }

    void on_status(std::size_t i, const tether::ClientStatus& s) {
        auto& st = state_[i];
        if (killed_at_ == 0) return;
        if (s.state == tether::ConnState::reconnecting && !st.down && st.resumed_at == 0) {
            st.down = true;
            ++down_;
        }
        if (st.down && st.resumed_at == 0 && s.phase == tether::Phase::opening &&
            s.attempt != st.attempt) {
            st.attempt = s.attempt;
            attempt_at_.push_back(wall_ms());
        }
        if (s.state == tether::ConnState::connected && st.down && st.resumed_at == 0) {
            st.resumed_at = wall_ms();
            ++back_;
            check_done();
        }
    }

    void on_event(std::size_t i, const tether::MessageReceived& m) {
        auto& st = state_[i];
        const auto off = m.position.offset;
        if (off <= st.last)
            ++st.dups;
        else {
            if (off != st.last + 1) st.gaps += off - st.last - 1;
            st.last = off;
        }
        ++deliveries_;
    }

    void read_commands() {
        std::string line;
        while (std::getline(std::cin, line)) {
            asio::post(ioc_, [this, line] { command(line); });
        }
    }

    void command(const std::string& line) {
        if (line.rfind("kill ", 0) == 0) {
            killed_at_ = std::stoll(line.substr(5));
        } else if (line.rfind("restarted ", 0) == 0) {
            restarted_at_ = std::stoll(line.substr(10));
            deadline_ = std::make_unique<asio::steady_timer>(ioc_);
            deadline_->expires_after(
                std::chrono::milliseconds(static_cast<std::int64_t>(a_.settle_timeout_s * 1000)));
            deadline_->async_wait([this](beast::error_code ec) {
                if (!ec) report(false);
            });
        }
    }

    void check_done() {
        if (restarted_at_ == 0 || back_ < a_.clients || stopping_) return;
        // Everyone is back: stop the flow, wait for the outbox to drain and
        // every subscriber to reach its room's head.
        stop_publishing_ = true;
        if (acked_ + publish_failed_ < published_) return;
        for (std::size_t i = 0; i < a_.clients; ++i)
            if (state_[i].last < room_heads_[i % a_.rooms]) return wait_heads();
        report(true);
    }

    void wait_heads() {
        if (heads_timer_) return;
        heads_timer_ = std::make_unique<asio::steady_timer>(ioc_);
        poll_heads();
    }

    void poll_heads() {
        heads_timer_->expires_after(20ms);
        heads_timer_->async_wait([this](beast::error_code) {
            for (std::size_t i = 0; i < a_.clients; ++i)
                if (state_[i].last < room_heads_[i % a_.rooms]) return poll_heads();
            report(true);
        });
    }

    void report(bool complete) {
        if (stopping_) return;
        stopping_ = true;
        std::uint64_t dups = 0, lost = 0, behind = 0;
        std::int64_t last_back = 0;
        std::vector<double> back_ms;
        for (std::size_t i = 0; i < a_.clients; ++i) {
            const auto& st = state_[i];
            dups += st.dups;
            lost += st.gaps;
            const auto head = room_heads_[i % a_.rooms];
            if (st.last < head) behind += head - st.last;
            if (st.resumed_at) {
                last_back = std::max(last_back, st.resumed_at);
                back_ms.push_back(static_cast<double>(st.resumed_at - restarted_at_));
            }
        }
        std::sort(back_ms.begin(), back_ms.end());
        json::object o;
        o["scenario"] = "storm";
        o["proto"] = "tether";
        o["label"] = a_.label;
        o["jitter"] = a_.jitter;
        o["clients"] = a_.clients;
        o["rooms"] = a_.rooms;
        o["rate"] = a_.rate;
        o["complete"] = complete;
        o["backoff_cap_ms"] = backoff_cap_ms_;
        o["down"] = down_;
        o["back"] = back_;
        o["resumed_sessions"] = resumed_sessions_;
        o["new_sessions"] = new_sessions_;
        o["history_lost"] = history_lost_;
        o["all_back_ms"] = back_ms.empty() ? -1.0 : back_ms.back();
        o["median_back_ms"] = back_ms.empty() ? -1.0 : back_ms[back_ms.size() / 2];
        o["published"] = published_;
        o["acked"] = acked_;
        o["publish_failed"] = publish_failed_;
        o["deliveries"] = deliveries_;
        o["lost"] = lost + behind;
        o["duplicated"] = dups;
        o["restart_after_kill_ms"] = restarted_at_ - killed_at_;
        // Raw timelines (ms after the kill); bench/run.py derives the peak rates.
        json::array h, at;
        for (auto t : session_at_)
            h.push_back(t - killed_at_);
        for (auto t : attempt_at_)
            at.push_back(t - killed_at_);
        o["handshake_ms"] = std::move(h);
        o["attempt_ms"] = std::move(at);
        print(std::move(o));
        std::_Exit(0);
    }

    StormArgs a_;
    asio::io_context ioc_{1};
    asio::executor_work_guard<asio::io_context::executor_type> work_;
    std::vector<std::unique_ptr<tether::Client>> clients_;
    std::unique_ptr<tether::Client> pub_;
    std::vector<tether::Room> pub_rooms_;
    std::unique_ptr<asio::steady_timer> pub_timer_, deadline_, heads_timer_;
    std::vector<ClientState> state_;
    std::vector<std::uint64_t> room_heads_;
    std::vector<std::int64_t> session_at_, attempt_at_;
    std::size_t joined_ = 0, down_ = 0, back_ = 0;
    std::uint64_t resumed_sessions_ = 0, new_sessions_ = 0, history_lost_ = 0;
    std::uint64_t published_ = 0, acked_ = 0, publish_failed_ = 0, deliveries_ = 0;
    std::int64_t connect_started_ = 0, pub_started_ = 0;
    std::int64_t killed_at_ = 0, restarted_at_ = 0;
    double backoff_cap_ms_ = 0;
    bool all_joined_ = false, stop_publishing_ = false, stopping_ = false;
};

// ---- one idle client --------------------------------------------------------------------------

struct ClientArgs {
    std::string url;
    double idle_s = 10;
    std::size_t runs = 20;
    std::string label;
};

long rss_kib() {
    std::ifstream f{"/proc/self/status"};
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    return -1;
}

double cpu_s() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

int client_bench(const ClientArgs& a) {
    std::mutex m;
    std::condition_variable cv;
    tether::ConnState state = tether::ConnState::disconnected;
    const auto rss0 = rss_kib();
    tether::ClientOptions o;
    o.url = a.url;
    o.token = "client-bench";
    o.network_monitor = false;
    o.on_status = [&](const tether::ClientStatus& s) {
        std::lock_guard lock{m};
        state = s.state;
        cv.notify_all();
    };
    tether::Client client{std::move(o)};
    auto room = client.join("client-bench");
    if (!client.wait_connected(10s)) die("client: not connected within 10 s");
    const auto rss1 = rss_kib();
    const auto cpu0 = cpu_s();
    std::this_thread::sleep_for(
        std::chrono::milliseconds(static_cast<std::int64_t>(a.idle_s * 1000)));
    const auto cpu1 = cpu_s();
    const auto rss2 = rss_kib();
    std::vector<double> online_ms;
    for (std::size_t r = 0; r < a.runs; ++r) {
        client.set_online(false);
        {
            std::unique_lock lock{m};
            if (!cv.wait_for(lock, 5s, [&] { return state != tether::ConnState::connected; }))
                die("client: still connected 5 s after set_online(false)");
        }
        const auto t0 = now_ns();
        client.set_online(true);
        if (!client.wait_connected(10s)) die("client: not connected 10 s after set_online(true)");
        online_ms.push_back(static_cast<double>(now_ns() - t0) / 1e6);
    }
    std::sort(online_ms.begin(), online_ms.end());
    json::object out;
    out["scenario"] = "client";
    out["label"] = a.label;
    out["idle_s"] = a.idle_s;
    out["idle_cpu_percent"] = (cpu1 - cpu0) / a.idle_s * 100.0;
    out["rss_growth_kib"] = rss1 - rss0;
    out["rss_idle_kib"] = rss2;
    out["online_to_connected_median_ms"] = online_ms[online_ms.size() / 2];
    out["online_to_connected_p90_ms"] =
        online_ms[std::min(online_ms.size() - 1, online_ms.size() * 9 / 10)];
    out["runs"] = a.runs;
    print(std::move(out));
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"tether-loadgen: WebSocket load for the benchmarks (docs/BENCHMARKS.md)"};
    app.require_subcommand(1);

    FanoutArgs fa;
    auto* fan = app.add_subcommand("fanout", "One publisher, N subscribers");
    add_common(fan, fa);
    fan->add_option("--subscribers", fa.subscribers, "Subscribers (default 100)");
    fan->add_option("--rate", fa.rate, "Messages/s from the publisher (default 0: saturation)");
    fan->add_option("--window", fa.window,
                    "Saturation: messages not yet delivered to every subscriber, at most (16)");

    EchoArgs ea;
    auto* echo = app.add_subcommand("echo", "M connections with W messages in flight each");
    add_common(echo, ea);
    echo->add_option("--connections", ea.connections, "Connections (default 100)");
    echo->add_option("--inflight", ea.inflight, "Messages in flight per connection (default 1)");

    IdleArgs ia;
    auto* idle = app.add_subcommand("idle", "Hold N idle connections until stdin closes");
    add_common(idle, ia);
    idle->add_option("--connections", ia.connections, "Connections (default 1000)");

    ResumeArgs ra;
    auto* resume = app.add_subcommand("resume", "tether: RESUME after K missed events");
    add_common(resume, ra);
    resume->add_option("--events", ra.events, "Missed events (default 1000)");
    resume->add_option("--runs", ra.runs, "Runs (default 20)");

    StormArgs sa;
    auto* storm = app.add_subcommand(
        "storm",
        "tether::Client x N with a steady flow; reads 'kill MS' / 'restarted MS' on stdin");
    storm->add_option("--url", sa.url, "ws://HOST:PORT/")->required();
    storm->add_option("--clients", sa.clients, "Clients (default 5000)");
    storm->add_option("--rooms", sa.rooms, "Rooms (default 50)");
    storm->add_option("--rate", sa.rate, "Publishes/s of the flow (default 100)");
    storm->add_option("--jitter", sa.jitter, "default, full or none");
    storm->add_option("--settle-timeout", sa.settle_timeout_s,
                      "Seconds after the restart before giving up (default 60)");
    storm->add_option("--label", sa.label, "Free text copied into the output");

    ClientArgs ca;
    auto* client =
        app.add_subcommand("client", "One idle tether::Client: CPU, memory, online->connected");
    client->add_option("--url", ca.url, "ws://HOST:PORT/")->required();
    client->add_option("--idle", ca.idle_s, "Idle seconds measured (default 10)");
    client->add_option("--runs", ca.runs, "online->connected runs (default 20)");
    client->add_option("--label", ca.label, "Free text copied into the output");

    CLI11_PARSE(app, argc, argv);

    asio::io_context ioc{1};
    if (fan->parsed()) Fanout{ioc, fa}.run();
    if (echo->parsed()) Echo{ioc, ea}.run();
    if (idle->parsed()) Idle{ioc, ia}.run();
    if (resume->parsed()) {
        if (parse_proto(ra.proto_name) != Proto::tether) die("resume: tether only");
        asio::co_spawn(ioc, resume_bench(ra), [](std::exception_ptr e) {
            if (!e) return;
            try {
                std::rethrow_exception(e);
            } catch (const std::exception& x) {
                die(std::string{"resume: "} + x.what());
            }
        });
        ioc.run();
    }
    if (storm->parsed()) Storm{sa}.run();
    if (client->parsed()) return client_bench(ca);
    return 0;
}
