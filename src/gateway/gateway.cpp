#include "gateway/gateway.hpp"
#include <tether/version.hpp>
#include "wire/http_route.hpp"
#include "wire/ws_frame.hpp"

#include <tether/core/close_codes.hpp>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/json.hpp>
#include <boost/url.hpp>

#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace tether::gateway {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace ssl = asio::ssl;
namespace json = boost::json;
namespace ws = wire::ws;
using wire::HttpRoute;
using wire::HttpRouteLimits;
using wire::parse_http_route;
using tcp = asio::ip::tcp;

std::int64_t wall_ms() {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

void secure_random(std::span<std::uint8_t> out) {
    if (RAND_bytes(out.data(), static_cast<int>(out.size())) != 1) {
        std::fprintf(stderr, "tether: no secure random source available\n");
        std::abort();
    }
}

namespace {

constexpr std::size_t kCloseReasonMax = 120;  // a close frame's reason must fit in 123 bytes

bool offers_v1(const http::request<http::string_body>& req) {
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

/// Sec-WebSocket-Accept: base64(SHA-1(key + the RFC 6455 GUID)).
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

bool equal_secret(std::string_view a, std::string_view b) {
    return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

using Response = http::response<http::string_body>;

Response make_response(http::status status, std::string body, bool keep_alive,
                       std::string_view type = "application/json") {
    Response res{status, 11};
    res.set(http::field::server, "tether/" TETHER_VERSION_STRING);
    res.set(http::field::content_type, type);
    res.keep_alive(keep_alive);
    res.body() = std::move(body);
    res.prepare_payload();
    return res;
}

std::string error_body(std::string_view message) {
    json::object o;
    o["error"] = message;
    return json::serialize(o);
}

}  // namespace

// ---- the shared state ------------------------------------------------------------------

class ConnBase {
  public:
    virtual ~ConnBase() = default;
    /// Both are called on the engine strand and post to the connection's strand.
    virtual void send(std::shared_ptr<const std::string> text) = 0;
    virtual void close(std::uint16_t code, std::string reason) = 0;
};

struct GatewayCounters {
    std::uint64_t slow_consumer_closes = 0;
    std::uint64_t connections_refused = 0;
    std::uint64_t invalid_version = 0;
    std::uint64_t binary_frames = 0;
    std::uint64_t http_requests = 0;
    std::uint64_t admin_unauthorized = 0;
    std::uint64_t admin_rate_limited = 0;
};

struct Gateway::Impl {
    Impl(GatewayOptions o, ServerConfig cfg, Store& s, std::shared_ptr<spdlog::logger> l)
        : opt(std::move(o)),
          store(s),
          log(std::move(l)),
          ioc(static_cast<int>(std::max(1u, opt.threads))),
          engine_strand(asio::make_strand(ioc)),
          limits(cfg.limits),
          engine(std::move(cfg), s, wall_ms()),
          timer(engine_strand),
          acceptor(asio::make_strand(ioc)),
          signals(ioc, SIGINT, SIGTERM),
          drain_timer(engine_strand) {
        admin_tokens = opt.admin_burst;
        admin_tokens_at = wall_ms();
    }

    GatewayOptions opt;
    Store& store;
    std::shared_ptr<spdlog::logger> log;
    asio::io_context ioc;
    asio::strand<asio::io_context::executor_type> engine_strand;
    proto::Limits limits;
    ServerEngine engine;  // engine strand only
    asio::steady_timer timer;
    std::optional<std::int64_t> timer_for;
    tcp::acceptor acceptor;  // on its own strand: accept handlers and close() never overlap
    std::optional<ssl::context> tls;
    asio::signal_set signals;
    asio::steady_timer drain_timer;

    // engine strand only
    std::unordered_map<std::uint64_t, std::shared_ptr<ConnBase>> conns;
    std::multimap<std::uint64_t, std::function<void()>> durable_waiters;
    GatewayCounters counters;
    bool draining = false;
    bool drained = false;
    double admin_tokens = 0;
    std::int64_t admin_tokens_at = 0;

    std::size_t engine_message_bytes_max = 0;
    std::size_t engine_room_bytes_max = 128;
    std::atomic<std::uint64_t> next_conn{1};
    std::atomic<std::size_t> live_ws{0};
    std::atomic<std::size_t> live_sockets{0};

    template <class F>
    void on_engine(F&& f) {
        asio::post(engine_strand, std::forward<F>(f));
    }

    /// Carries out everything the engine wants written, then re-arms the timer.
    void flush() {
        while (auto t = engine.poll_transmit()) {
            auto it = conns.find(t->conn);
            if (it == conns.end()) continue;
            if (t->kind == ServerTransmit::Kind::send) {
                it->second->send(std::move(t->frame));
            } else {
                it->second->close(t->code, std::move(t->reason));
                conns.erase(it);
            }
        }
        const auto durable = engine.durable_seq();
        while (!durable_waiters.empty() && durable_waiters.begin()->first <= durable) {
            auto fn = std::move(durable_waiters.begin()->second);
            durable_waiters.erase(durable_waiters.begin());
            fn();
        }
        arm_timer();
    }

    /// A drain ends when every WebSocket session has written its last frames
    /// and closed (or at the drain timeout).
    void maybe_finish_drain() {
        if (draining && live_ws.load() == 0) finish_drain();
    }

    void arm_timer() {
        const auto next = engine.poll_timeout();
        if (!next || (timer_for && *timer_for == *next)) return;
        timer_for = next;
        timer.expires_after(
            std::chrono::milliseconds(std::max<std::int64_t>(0, *next - wall_ms())));
        timer.async_wait([this](beast::error_code ec) {
            if (ec) return;
            timer_for.reset();
            engine.handle_timeout(wall_ms());
            flush();
        });
    }

    void connection_closed(std::uint64_t id) {
        on_engine([this, id] {
            conns.erase(id);
            engine.handle_close(wall_ms(), id);
            flush();
        });
    }

    void start_drain() {
        on_engine([this] {
            if (draining) return;
            draining = true;
            log->info("draining: asking {} connection(s) to reconnect", conns.size());
            // The acceptor lives on its own strand: close it there.
            asio::post(acceptor.get_executor(), [this] {
                beast::error_code ec;
                acceptor.close(ec);
            });
            engine.drain(wall_ms(), opt.drain_retry_after_ms);
            flush();
            drain_timer.expires_after(std::chrono::milliseconds(opt.drain_timeout.count()));
            drain_timer.async_wait([this](beast::error_code e) {
                if (e) return;
                log->warn("drain timeout: {} connection(s) still open, stopping", conns.size());
                finish_drain();
            });
            maybe_finish_drain();
        });
    }

    void finish_drain() {
        if (drained) return;
        drained = true;
        store.flush();
        log->info("drained; store flushed (durable seq {})", engine.durable_seq());
        ioc.stop();
    }

    bool take_admin_token() {
        const auto now = wall_ms();
        admin_tokens =
            std::min(opt.admin_burst, admin_tokens + static_cast<double>(now - admin_tokens_at) /
                                                         1000.0 * opt.admin_rate);
        admin_tokens_at = now;
        if (admin_tokens < 1.0) return false;
        admin_tokens -= 1.0;
        return true;
    }

    std::string metrics_text() const;
    void route(http::request<http::string_body>&& req, std::function<void(Response)> respond);
    void route_admin(const http::request<http::string_body>& req, const HttpRoute& r,
                     std::function<void(Response)> respond);
    void accept();
};

// ---- WebSocket connection ------------------------------------------------------------------

template <class Stream>
class WsSession : public ConnBase, public std::enable_shared_from_this<WsSession<Stream>> {
    // Plain connections keep the bare socket after the upgrade (not Beast's
    // tcp_stream: its timer state is ~500 bytes per idle connection).
    static constexpr bool kPlain = std::is_same_v<Stream, tcp::socket>;
    static constexpr std::size_t kReadChunk = 64u << 10;
    static constexpr std::size_t kTlsReadBytes = 16u << 10;
    // A close waits at most kCloseFlushTimeout for the frames queued before it
    // to reach the socket (a slow reader), then kCloseTimeout for the peer's
    // close frame; then the socket is closed regardless.
    static constexpr auto kCloseFlushTimeout = std::chrono::seconds(30);
    static constexpr auto kCloseTimeout = std::chrono::seconds(2);

  public:
    WsSession(Stream&& s, Gateway::Impl& gw, std::string leftover)
        : stream_(std::move(s)),
          gw_(gw),
          parser_(gw.limits.frame_bytes_max),
          leftover_(std::move(leftover)) {}
    ~WsSession() override {
        if (!finished_) --gw_.live_ws;
    }

    /// Answers the upgrade request (101, or 400/426 for a malformed one).
    void start(const http::request<http::string_body>& req) {
        version_ok_ = offers_v1(req);
        const auto key = req[http::field::sec_websocket_key];
        const auto version = req[http::field::sec_websocket_version];
        bool ok = false;
        if (version != "13") {
            res_ = std::make_shared<Response>(
                make_response(http::status::upgrade_required,
                              error_body("WebSocket version 13 required"), false));
            res_->set(http::field::sec_websocket_version, "13");
        } else if (key.size() != 24) {
            res_ = std::make_shared<Response>(
                make_response(http::status::bad_request,
                              error_body("missing or malformed Sec-WebSocket-Key"), false));
        } else {
            ok = true;
            res_ = std::make_shared<Response>(http::status::switching_protocols, 11);
            res_->set(http::field::server, "tether/" TETHER_VERSION_STRING);
            res_->set(http::field::upgrade, "websocket");
            res_->set(http::field::connection, "Upgrade");
            res_->set(http::field::sec_websocket_accept,
                      ws_accept_key(std::string_view{key.data(), key.size()}));
            if (version_ok_) res_->set(http::field::sec_websocket_protocol, proto::subprotocol);
        }
        // TLS: the write is bounded by the handshake timeout. Plain TCP: the
        // answer fits in the socket buffer; a client that then never sends
        // IDENTIFY is closed by the engine's handshake timeout.
        if constexpr (!kPlain)
            beast::get_lowest_layer(stream_).expires_after(
                std::chrono::milliseconds(gw_.opt.handshake_timeout.count()));
        http::async_write(stream_, *res_,
                          [self = this->shared_from_this(), ok](beast::error_code ec, std::size_t) {
                              if constexpr (!kPlain)
                                  beast::get_lowest_layer(self->stream_).expires_never();
                              self->res_.reset();
                              if (ec || !ok) return self->finish();
                              self->on_open();
                          });
    }

    /// Engine strand. Frames are appended under a small lock and written by
    /// the connection's strand, all queued frames in one write.
    void send(std::shared_ptr<const std::string> text) override {
        const auto size = text->size();
        bool kick = false;
        {
            std::lock_guard lock{out_mu_};
            if (out_closed_) return;
            if (out_bytes_ + size > gw_.opt.outbound_bytes_max) {
                // Slow consumer: drop what is queued and close; the session stays.
                // The engine forgets the connection now, so it stops queueing.
                out_closed_ = true;
                engine_closed_ = true;
                for (const auto& o : out_pending_)
                    out_bytes_ -= o.payload->size();
                out_pending_.clear();
                gw_.on_engine([gw = &gw_, id = id_] {
                    ++gw->counters.slow_consumer_closes;
                    gw->conns.erase(id);
                    gw->engine.handle_close(wall_ms(), id);
                    gw->flush();
                });
                asio::post(stream_.get_executor(), [self = this->shared_from_this()] {
                    self->queue_close(close_code::slow_consumer,
                                      "slow consumer: outbound queue full", true);
                });
                return;
            }
            out_bytes_ += size;
            out_pending_.push_back(Out{std::move(text), ws::Opcode::text});
            kick = !writer_active_;
            writer_active_ = true;
        }
        if (kick)
            asio::post(stream_.get_executor(),
                       [self = this->shared_from_this()] { self->do_write(); });
    }

    void close(std::uint16_t code, std::string reason) override {
        engine_closed_ = true;
        asio::post(stream_.get_executor(),
                   [self = this->shared_from_this(), code, reason = std::move(reason)]() mutable {
                       self->close_when_flushed(code, std::move(reason));
                   });
    }

  private:
    struct Out {
        std::shared_ptr<const std::string> payload;
        ws::Opcode op;
    };

    tcp::socket& socket() {
        if constexpr (kPlain)
            return stream_;
        else
            return beast::get_lowest_layer(stream_).socket();
    }

    void on_open() {
        if constexpr (kPlain) {
            beast::error_code ignored;
            socket().non_blocking(true, ignored);  // read_now() must never block the strand
        }
        if (!version_ok_) {
            gw_.on_engine([gw = &gw_] { ++gw->counters.invalid_version; });
            engine_closed_ = true;
            return close_when_flushed(close_code::invalid_version,
                                      "invalid version: offer subprotocol tether.v1");
        }
        id_ = gw_.next_conn.fetch_add(1);
        gw_.on_engine([self = this->shared_from_this(), gw = &gw_, id = id_] {
            if (gw->draining) {
                self->close(close_code::try_again_later, "server draining");
                return;
            }
            gw->conns[id] = self;
            gw->engine.handle_open(wall_ms(), id);
            gw->flush();
            asio::post(self->stream_.get_executor(), [self] { self->do_read(); });
        });
    }

    // ---- reading: one chunk at a time; the next read starts only after the
    // engine handled every message of the previous one. That bounds inbound
    // memory and keeps a flooding client from starving everyone else.

    void do_read() {
        if (finished_) return;
        if (!leftover_.empty()) {  // frames that arrived with the upgrade request
            const std::string bytes = std::exchange(leftover_, {});
            return on_bytes(bytes);
        }
        // Everything read so far was handled: an idle connection keeps no
        // parsed-message storage (reallocated per read chunk under load).
        std::vector<ws::Event>{}.swap(inbox_);
        inbox_at_ = 0;
        if constexpr (kPlain) {
            // Wait for readability, then read into a per-thread buffer: an idle
            // connection holds no read buffer at all.
            socket().async_wait(tcp::socket::wait_read,
                                [self = this->shared_from_this()](beast::error_code ec) {
                                    if (ec) return self->finish();
                                    self->read_now();
                                });
        } else {
            if (!tls_buf_) tls_buf_ = std::make_unique<char[]>(kTlsReadBytes);
            stream_.async_read_some(
                asio::buffer(tls_buf_.get(), kTlsReadBytes),
                [self = this->shared_from_this()](beast::error_code ec, std::size_t n) {
                    if (ec) return self->finish();
                    self->on_bytes(std::string_view{self->tls_buf_.get(), n});
                });
        }
    }

    void read_now() {
        thread_local std::unique_ptr<char[]> scratch{new char[kReadChunk]};
        beast::error_code ec;
        const auto n = socket().read_some(asio::buffer(scratch.get(), kReadChunk), ec);
        if (ec == asio::error::would_block || ec == asio::error::try_again) return do_read();
        if (ec) return finish();  // EOF or reset: the peer left
        on_bytes(std::string_view{scratch.get(), n});
    }

    void on_bytes(std::string_view bytes) {
        inbox_.clear();
        inbox_at_ = 0;
        parser_.feed(bytes, inbox_);
        pump();
    }

    /// Hands the parsed messages to the engine in order (consecutive text
    /// messages in one batch), handles control frames, then reads on.
    void pump() {
        if (finished_) return;
        std::vector<std::string> batch;
        while (inbox_at_ < inbox_.size()) {
            auto& e = inbox_[inbox_at_];
            if (e.kind == ws::Event::Kind::text) {
                if (!closing_) batch.push_back(std::move(e.data));
                ++inbox_at_;
                continue;
            }
            if (!batch.empty()) break;  // the texts before it go first
            ++inbox_at_;
            switch (e.kind) {
                case ws::Event::Kind::ping:
                    enqueue(std::make_shared<const std::string>(std::move(e.data)),
                            ws::Opcode::pong);
                    break;
                case ws::Event::Kind::pong:
                    break;
                case ws::Event::Kind::binary:
                    if (closing_) break;
                    gw_.on_engine([gw = &gw_] { ++gw->counters.binary_frames; });
                    close_when_flushed(close_code::decode_error,
                                       "binary frames are not part of tether.v1");
                    break;
                case ws::Event::Kind::close:
                    if (close_queued_) return finish();  // the answer to our close
                    queue_close(e.code == 0 ? ws::kCloseNormal : e.code, {}, true);
                    return;
                case ws::Event::Kind::error:
                    queue_close(e.code, std::move(e.data), true);
                    return;
                case ws::Event::Kind::text:
                    break;
            }
        }
        if (!batch.empty()) {
            gw_.on_engine(
                [self = this->shared_from_this(), gw = &gw_, id = id_, batch = std::move(batch)] {
                    for (const auto& text : batch) {
                        if (!gw->conns.count(id)) break;  // closed by the engine meanwhile
                        gw->engine.handle_message(wall_ms(), id, text);
                        gw->flush();
                    }
                    // Read on either way: a closing connection still reads the
                    // peer's close frame (its close() was posted before this).
                    asio::post(self->stream_.get_executor(), [self] { self->pump(); });
                });
            return;
        }
        do_read();
    }

    // ---- writing

    void enqueue(std::shared_ptr<const std::string> payload, ws::Opcode op) {
        bool kick = false;
        {
            std::lock_guard lock{out_mu_};
            if (out_closed_) return;
            out_bytes_ += payload->size();
            out_pending_.push_back(Out{std::move(payload), op});
            kick = !writer_active_;
            writer_active_ = true;
        }
        if (kick) do_write();
    }

    void do_write() {
        if (finished_) return;
        {
            std::lock_guard lock{out_mu_};
            if (out_pending_.empty()) {
                writer_active_ = false;
                // Going idle: keep no queue storage (a busy connection stays
                // in this loop and reuses it).
                std::vector<Out>{}.swap(out_pending_);
            } else {
                out_writing_.swap(out_pending_);
            }
        }
        if (out_writing_.empty()) {
            std::vector<Out>{}.swap(out_writing_);
            std::vector<Header>{}.swap(headers_);
            std::vector<asio::const_buffer>{}.swap(bufs_);
            if (id_ != 0 && !closing_)
                gw_.on_engine([gw = &gw_, id = id_] {
                    gw->engine.handle_writable(wall_ms(), id);
                    gw->flush();
                });
            return;
        }
        headers_.resize(out_writing_.size());
        bufs_.clear();
        for (std::size_t i = 0; i < out_writing_.size(); ++i) {
            const auto& o = out_writing_[i];
            const auto n = ws::write_header(headers_[i].bytes, o.op, o.payload->size());
            bufs_.emplace_back(headers_[i].bytes, n);
            bufs_.emplace_back(o.payload->data(), o.payload->size());
        }
        asio::async_write(stream_, bufs_,
                          [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                              self->on_write(ec);
                          });
    }

    void on_write(beast::error_code ec) {
        std::size_t bytes = 0;
        bool wrote_close = false;
        for (const auto& o : out_writing_) {
            bytes += o.payload->size();
            wrote_close = wrote_close || o.op == ws::Opcode::close;
        }
        out_writing_.clear();
        {
            std::lock_guard lock{out_mu_};
            out_bytes_ -= bytes;
        }
        if (ec) return finish();
        if (wrote_close) {
            if (finish_after_close_) return finish();
            // Wait for the peer's close frame (reads go on), at most kCloseTimeout.
            arm_close_timer(kCloseTimeout);
            return;
        }
        do_write();
    }

    /// Queues a close frame behind everything already queued; nothing after it.
    void close_when_flushed(std::uint16_t code, std::string reason) {
        queue_close(code, std::move(reason), false);
    }

    void queue_close(std::uint16_t code, std::string reason, bool finish_after) {
        if (close_queued_ || finished_) return;
        close_queued_ = true;
        closing_ = true;
        finish_after_close_ = finish_after;
        bool kick = false;
        {
            std::lock_guard lock{out_mu_};
            out_closed_ = true;
            auto payload = std::make_shared<const std::string>(ws::close_payload(code, reason));
            out_bytes_ += payload->size();
            out_pending_.push_back(Out{std::move(payload), ws::Opcode::close});
            kick = !writer_active_;
            writer_active_ = true;
        }
        arm_close_timer(kCloseFlushTimeout);
        if (kick) do_write();
    }

    void arm_close_timer(std::chrono::seconds after) {
        if (!close_timer_)
            close_timer_ = std::make_unique<asio::steady_timer>(stream_.get_executor());
        close_timer_->expires_after(after);  // cancels an earlier wait
        close_timer_->async_wait([self = this->shared_from_this()](beast::error_code ec) {
            if (!ec) self->finish();
        });
    }

    void finish() {
        if (finished_) return;
        finished_ = true;
        closing_ = true;
        if (close_timer_) close_timer_->cancel();
        beast::error_code ec;
        socket().close(ec);
        --gw_.live_ws;
        if (id_ != 0 && !engine_closed_) gw_.connection_closed(id_);
        gw_.on_engine([gw = &gw_] { gw->maybe_finish_drain(); });
    }

    struct Header {
        unsigned char bytes[10];
    };

    Stream stream_;
    Gateway::Impl& gw_;
    ws::ServerParser parser_;
    std::string leftover_;
    std::shared_ptr<Response> res_;  // the upgrade answer while it is written
    std::unique_ptr<char[]> tls_buf_;
    std::vector<ws::Event> inbox_;  // parsed, not yet handled (one read chunk at most)
    std::size_t inbox_at_ = 0;
    std::uint64_t id_ = 0;
    bool version_ok_ = false;
    // Outbound: appended by the engine strand under out_mu_, written by ours.
    std::mutex out_mu_;
    std::vector<Out> out_pending_;  // guarded
    std::size_t out_bytes_ = 0;     // guarded: queued and being written
    bool writer_active_ = false;    // guarded: a do_write is scheduled or running
    bool out_closed_ = false;       // guarded: a close frame is queued, nothing after it
    std::vector<Out> out_writing_;
    std::vector<Header> headers_;
    std::vector<asio::const_buffer> bufs_;
    std::unique_ptr<asio::steady_timer> close_timer_;  // only while closing
    bool closing_ = false;                             // no more inbound messages go to the engine
    bool close_queued_ = false;
    bool finish_after_close_ = false;  // error / answer to the peer's close: no wait
    bool finished_ = false;
    std::atomic<bool> engine_closed_{false};  // the engine already forgot this connection
};

// ---- HTTP connection (and the WebSocket upgrade)
// -------------------------------------------------

template <class Stream>
class HttpSession : public std::enable_shared_from_this<HttpSession<Stream>> {
  public:
    HttpSession(Stream&& s, Gateway::Impl& gw) : stream_(std::move(s)), gw_(gw) {
        ++gw_.live_sockets;
    }
    ~HttpSession() { --gw_.live_sockets; }

    void run() {
        beast::get_lowest_layer(stream_).expires_after(
            std::chrono::milliseconds(gw_.opt.handshake_timeout.count()));
        if constexpr (std::is_same_v<Stream, beast::ssl_stream<beast::tcp_stream>>) {
            stream_.async_handshake(ssl::stream_base::server,
                                    [self = this->shared_from_this()](beast::error_code ec) {
                                        if (!ec) self->do_read();
                                    });
        } else {
            do_read();
        }
    }

  private:
    void do_read() {
        parser_.emplace();
        parser_->body_limit(gw_.opt.http_body_bytes_max);
        parser_->header_limit(16u << 10);
        beast::get_lowest_layer(stream_).expires_after(
            std::chrono::milliseconds(gw_.opt.handshake_timeout.count()));
        http::async_read(
            stream_, buf_, *parser_,
            beast::bind_front_handler(&HttpSession::on_read, this->shared_from_this()));
    }

    void on_read(beast::error_code ec, std::size_t) {
        if (ec == http::error::body_limit)
            return write(make_response(http::status::payload_too_large,
                                       error_body("request body too large"), false));
        if (ec)
            return;  // timeout (slowloris), garbage, or the peer left: the socket closes with us
        auto req = parser_->release();
        if (websocket::is_upgrade(req)) {
            if (gw_.live_ws.load() >= gw_.opt.connections_max) {
                gw_.on_engine([gw = &gw_] { ++gw->counters.connections_refused; });
                return write(make_response(http::status::service_unavailable,
                                           error_body("too many connections"), false));
            }
            ++gw_.live_ws;
            beast::get_lowest_layer(stream_).expires_never();
            auto leftover = beast::buffers_to_string(buf_.data());
            if constexpr (std::is_same_v<Stream, beast::tcp_stream>)
                std::make_shared<WsSession<tcp::socket>>(stream_.release_socket(), gw_,
                                                         std::move(leftover))
                    ->start(req);
            else
                std::make_shared<WsSession<Stream>>(std::move(stream_), gw_, std::move(leftover))
                    ->start(req);
            return;
        }
        const bool keep = req.keep_alive();
        gw_.route(std::move(req), [self = this->shared_from_this(), keep](Response res) {
            res.keep_alive(keep && res.keep_alive());
            asio::post(self->stream_.get_executor(),
                       [self, res = std::move(res)]() mutable { self->write(std::move(res)); });
        });
    }

    void write(Response res) {
        res_ = std::make_shared<Response>(std::move(res));
        http::async_write(stream_, *res_,
                          [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                              if (ec || !self->res_->keep_alive()) {
                                  beast::error_code ignored;
                                  beast::get_lowest_layer(self->stream_)
                                      .socket()
                                      .shutdown(tcp::socket::shutdown_send, ignored);
                                  return;
                              }
                              self->do_read();
                          });
    }

    Stream stream_;
    Gateway::Impl& gw_;
    beast::flat_buffer buf_;
    std::optional<http::request_parser<http::string_body>> parser_;
    std::shared_ptr<Response> res_;
};

// ---- HTTP routes -------------------------------------------------------------------------

std::string Gateway::Impl::metrics_text() const {
    const auto& m = engine.metrics();
    std::string out;
    auto line = [&](std::string_view name, std::string_view type, std::string_view help, auto value,
                    std::string_view labels = {}) {
        if (!labels.empty() &&
            out.find(std::string{"# TYPE "} + std::string{name} + " ") != std::string::npos) {
            out +=
                std::string{name} + "{" + std::string{labels} + "} " + std::to_string(value) + "\n";
            return;
        }
        out += "# HELP " + std::string{name} + " " + std::string{help} + "\n";
        out += "# TYPE " + std::string{name} + " " + std::string{type} + "\n";
        out += std::string{name} + (labels.empty() ? "" : "{" + std::string{labels} + "}") + " " +
               std::to_string(value) + "\n";
    };
    line("tether_connections", "gauge", "Open WebSocket connections.", engine.connection_count());
    line("tether_sessions", "gauge", "Sessions kept (connected or within their retention window).",
         engine.session_count());
    line("tether_rooms", "gauge", "Rooms with at least one subscriber.", engine.room_count());
    line("tether_connections_opened_total", "counter", "WebSocket connections accepted.",
         m.connections_opened);
    line("tether_identifies_total", "counter", "IDENTIFY requests.", m.identifies);
    line("tether_auth_failures_total", "counter", "IDENTIFY requests refused (4004).",
         m.auth_failures);
    line("tether_resumes_total", "counter", "RESUME requests by result.", m.resumes_ok,
         "result=\"ok\"");
    line("tether_resumes_total", "counter", "", m.resumes_failed, "result=\"failed\"");
    line("tether_joins_total", "counter", "Successful JOINs.", m.joins);
    line("tether_join_errors_total", "counter", "JOIN_ERROR answers.", m.join_errors);
    line("tether_publishes_total", "counter", "Publications appended to the store.", m.publishes);
    line("tether_publish_duplicates_total", "counter", "Publishes answered from the dedupe window.",
         m.publish_dupes);
    line("tether_nacks_total", "counter", "Publishes refused with NACK.", m.nacks);
    line("tether_deliveries_total", "counter", "EVENT frames written (live and replay).",
         m.deliveries);
    line("tether_replayed_total", "counter", "EVENT frames written as replay.", m.replayed);
    line("tether_replay_pages_total", "counter", "Replay pages written.", m.replay_pages);
    line("tether_heartbeats_total", "counter", "HEARTBEATs answered.", m.heartbeats);
    line("tether_idle_closes_total", "counter", "Connections closed for silence (4000).",
         m.idle_closes);
    line("tether_sessions_expired_total", "counter",
         "Sessions dropped after their retention window.", m.sessions_expired);
    line("tether_drops_total", "counter", "Connections dropped by the server by reason.",
         counters.slow_consumer_closes, "reason=\"slow_consumer\"");
    line("tether_drops_total", "counter", "", counters.connections_refused,
         "reason=\"too_many_connections\"");
    line("tether_drops_total", "counter", "", counters.invalid_version,
         "reason=\"invalid_version\"");
    line("tether_drops_total", "counter", "", counters.binary_frames, "reason=\"binary_frame\"");
    bool first = true;
    for (const auto& [code, n] : m.closes_by_code) {
        line("tether_closes_total", "counter",
             first ? "Closes the engine initiated, by close code." : "", n,
             "code=\"" + std::to_string(code) + "\"");
        first = false;
    }
    line("tether_http_requests_total", "counter", "HTTP requests (not upgrades).",
         counters.http_requests);
    line("tether_admin_unauthorized_total", "counter", "Admin requests without a valid key.",
         counters.admin_unauthorized);
    line("tether_admin_rate_limited_total", "counter", "Admin requests answered 429.",
         counters.admin_rate_limited);
    line("tether_store_durable_seq", "gauge", "Last durable store sequence number.",
         engine.durable_seq());
    return out;
}

void Gateway::Impl::route(http::request<http::string_body>&& req,
                          std::function<void(Response)> respond) {
    on_engine([this, req = std::move(req), respond = std::move(respond)]() mutable {
        ++counters.http_requests;
        HttpRouteLimits rl;
        rl.room_bytes_max = engine_room_bytes_max;
        rl.id_bytes_max = limits.id_bytes_max;
        const auto target = req.target();
        const HttpRoute r =
            parse_http_route(req.method() == http::verb::get, req.method() == http::verb::post,
                             std::string_view{target.data(), target.size()}, rl);
        if (r.admin) {
            // The key and the rate limit come first: an unauthenticated
            // caller learns nothing about the routes.
            if (!opt.admin_key)
                return respond(
                    make_response(http::status::forbidden,
                                  error_body("admin API disabled: start with --admin-key"), true));
            const auto auth = req[http::field::authorization];
            const std::string_view header{auth.data(), auth.size()};
            constexpr std::string_view kBearer = "Bearer ";
            if (header.substr(0, kBearer.size()) != kBearer ||
                !equal_secret(header.substr(kBearer.size()), *opt.admin_key)) {
                ++counters.admin_unauthorized;
                auto res = make_response(http::status::unauthorized,
                                         error_body("missing or wrong admin key"), true);
                res.set(http::field::www_authenticate, "Bearer");
                return respond(std::move(res));
            }
            if (!take_admin_token()) {
                ++counters.admin_rate_limited;
                auto res = make_response(http::status::too_many_requests,
                                         error_body("admin API rate limit"), true);
                res.set(http::field::retry_after, "1");
                return respond(std::move(res));
            }
        }
        using Kind = HttpRoute::Kind;
        switch (r.kind) {
            case Kind::not_found:
                return respond(make_response(http::status::not_found, error_body(r.error), true));
            case Kind::bad_request:
                return respond(
                    make_response(http::status::bad_request, error_body(r.error), r.admin));
            case Kind::method_not_allowed:
                return respond(
                    make_response(http::status::method_not_allowed, error_body(r.error), true));
            case Kind::healthz:
                return respond(make_response(
                    draining ? http::status::service_unavailable : http::status::ok,
                    draining ? R"({"status":"draining"})" : R"({"status":"ok"})", true));
            case Kind::metrics:
                return respond(make_response(http::status::ok, metrics_text(), true,
                                             "text/plain; version=0.0.4"));
            default:
                return route_admin(req, r, std::move(respond));
        }
    });
}

void Gateway::Impl::route_admin(const http::request<http::string_body>& req, const HttpRoute& r,
                                std::function<void(Response)> respond) {
    using Kind = HttpRoute::Kind;
    auto session_json = [](const SessionInfo& s) {
        json::object o;
        o["id"] = s.id;
        o["user"] = s.user;
        json::array rooms;
        for (const auto& room : s.rooms)
            rooms.emplace_back(room);
        o["rooms"] = std::move(rooms);
        o["connected"] = s.connected;
        if (!s.connected) o["expires_at_ms"] = s.expires_at_ms;
        return o;
    };
    switch (r.kind) {
        case Kind::sessions: {
            json::array list;
            for (const auto& s : engine.sessions()) {
                if (list.size() >= r.limit) break;
                list.push_back(session_json(s));
            }
            json::object o;
            o["sessions"] = std::move(list);
            o["total"] = engine.session_count();
            return respond(make_response(http::status::ok, json::serialize(o), true));
        }
        case Kind::session: {
            auto s = engine.session(r.session_id);
            if (!s)
                return respond(
                    make_response(http::status::not_found, error_body("no such session"), true));
            return respond(
                make_response(http::status::ok, json::serialize(session_json(*s)), true));
        }
        case Kind::disconnect:
            if (!engine.disconnect_session(wall_ms(), r.session_id))
                return respond(
                    make_response(http::status::not_found, error_body("no such session"), true));
            flush();
            return respond(make_response(http::status::ok, R"({"disconnected":true})", true));
        case Kind::publish: {
            if (req.body().size() > engine_message_bytes_max)
                return respond(make_response(http::status::payload_too_large,
                                             error_body("payload too large"), true));
            if (auto err = proto::validate_data(req.body(), limits))
                return respond(make_response(
                    http::status::bad_request,
                    error_body("body must be one JSON value: " + err->message()), true));
            const auto res = engine.publish(wall_ms(), r.room, req.body());
            auto answer = [respond, room = r.room, pos = res.position] {
                json::object o;
                o["room"] = room;
                o["epoch"] = pos.epoch;
                o["offset"] = pos.offset;
                respond(make_response(http::status::ok, json::serialize(o), true));
            };
            if (engine.durable_seq() >= res.seq)
                answer();
            else
                durable_waiters.emplace(res.seq, std::move(answer));
            flush();
            return;
        }
        case Kind::history: {
            const auto info = engine.stream_info(r.room);
            json::object o;
            o["room"] = r.room;
            o["epoch"] = info.epoch;
            o["head"] = info.head;
            o["first"] = info.first;
            std::string events = "[";
            for (const auto& e : engine.history(r.room, r.since, r.limit, 1u << 20)) {
                if (events.size() > 1) events += ',';
                events += R"({"offset":)" + std::to_string(e.offset) + R"(,"at_ms":)" +
                          std::to_string(e.at_ms) + R"(,"data":)" + e.data + "}";
            }
            events += "]";
            std::string body = json::serialize(o);
            body.pop_back();
            body += R"(,"events":)" + events + "}";
            return respond(make_response(http::status::ok, std::move(body), true));
        }
        default:
            respond(make_response(http::status::not_found, error_body("not found"), true));
    }
}

void Gateway::Impl::accept() {
    acceptor.async_accept(asio::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
        if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
        if (!ec) {
            // Small frames go out at once: with Nagle on, a frame written while
            // the previous one is unacknowledged waits for the peer's delayed
            // ACK (40 ms on Linux) -- measured as a 44 ms floor on every
            // request/answer exchange before this (docs/BENCHMARKS.md).
            beast::error_code nodelay_ec;
            socket.set_option(tcp::no_delay(true), nodelay_ec);
            // Bound sockets that have not upgraded yet too (slowloris, half-open handshakes).
            if (live_sockets.load() >= opt.connections_max + 1024) {
                beast::error_code ignored;
                socket.close(ignored);
            } else if (tls) {
                std::make_shared<HttpSession<beast::ssl_stream<beast::tcp_stream>>>(
                    beast::ssl_stream<beast::tcp_stream>(std::move(socket), *tls), *this)
                    ->run();
            } else {
                std::make_shared<HttpSession<beast::tcp_stream>>(
                    beast::tcp_stream(std::move(socket)), *this)
                    ->run();
            }
        }
        accept();
    });
}

// ---- Gateway -----------------------------------------------------------------------------------

Gateway::Gateway(GatewayOptions options, ServerConfig engine_config, Store& store,
                 std::shared_ptr<spdlog::logger> log) {
    const auto message_max = engine_config.message_bytes_max;
    const auto room_max = engine_config.room_name_bytes_max;
    impl_ =
        std::make_unique<Impl>(std::move(options), std::move(engine_config), store, std::move(log));
    Impl& g = *impl_;
    g.engine_message_bytes_max = message_max;
    g.engine_room_bytes_max = room_max;
    if (g.opt.tls_cert_file || g.opt.tls_key_file) {
        if (!g.opt.tls_cert_file || !g.opt.tls_key_file)
            throw std::runtime_error("TLS needs both --tls-cert and --tls-key");
        g.tls.emplace(ssl::context::tls_server);
        g.tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                           ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                           ssl::context::no_tlsv1_1);
        beast::error_code ec;
        g.tls->use_certificate_chain_file(*g.opt.tls_cert_file, ec);
        if (ec)
            throw std::runtime_error("cannot load TLS certificate " + *g.opt.tls_cert_file + ": " +
                                     ec.message());
        g.tls->use_private_key_file(*g.opt.tls_key_file, ssl::context::pem, ec);
        if (ec)
            throw std::runtime_error("cannot load TLS key " + *g.opt.tls_key_file + ": " +
                                     ec.message());
    }
    beast::error_code ec;
    const auto address = asio::ip::make_address(g.opt.host, ec);
    if (ec) throw std::runtime_error("invalid listen address '" + g.opt.host + "'");
    const tcp::endpoint ep{address, g.opt.port};
    g.acceptor.open(ep.protocol(), ec);
    if (!ec) g.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) g.acceptor.bind(ep, ec);
    if (!ec) g.acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec)
        throw std::runtime_error("cannot listen on " + g.opt.host + ":" +
                                 std::to_string(g.opt.port) + ": " + ec.message());
    store.on_durable([&g] {
        asio::post(g.engine_strand, [&g] {
            g.engine.handle_durable(wall_ms());
            g.flush();
        });
    });
    // Appends made by other gateway nodes on a shared store (Redis, next).
    store.on_remote_append([&g](RemoteAppend a) {
        asio::post(g.engine_strand, [&g, a = std::move(a)] {
            g.engine.handle_remote_append(wall_ms(), a);
            g.flush();
        });
    });
}

Gateway::~Gateway() {
    impl_->store.on_durable({});
}

std::uint16_t Gateway::port() const noexcept {
    return impl_->acceptor.local_endpoint().port();
}

void Gateway::drain() {
    impl_->start_drain();
}

void Gateway::run() {
    Impl& g = *impl_;
    g.signals.async_wait([&g](beast::error_code ec, int sig) {
        if (ec) return;
        g.log->info("signal {}: draining", sig);
        g.start_drain();
    });
    g.accept();
    g.on_engine([&g] { g.arm_timer(); });
    std::vector<std::thread> threads;
    for (unsigned i = 1; i < std::max(1u, g.opt.threads); ++i)
        threads.emplace_back([&g] { g.ioc.run(); });
    g.ioc.run();
    for (auto& t : threads)
        t.join();
}

}  // namespace tether::gateway
