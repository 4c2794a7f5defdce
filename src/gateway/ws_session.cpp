#include "gateway/ws_session.hpp"

#include "gateway/bridge.hpp"
#include "gateway/system.hpp"
#include "wire/ws_frame.hpp"

#include <tether/core/close_codes.hpp>
#include <tether/core/protocol.hpp>
#include <tether/version.hpp>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/write.hpp>

#include <memory>
#include <mutex>
#include <vector>

namespace tether::gateway {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ws = wire::ws;
using tcp = asio::ip::tcp;

namespace {

template <class Stream>
class WsSession : public Connection, public std::enable_shared_from_this<WsSession<Stream>> {
    // Plain connections keep the bare socket after the upgrade (not Beast's
    // tcp_stream: its timer state is ~500 bytes per idle connection).
    static constexpr bool kPlain = std::is_same_v<Stream, tcp::socket>;
    static constexpr std::size_t kReadChunk = 64u << 10;
    static constexpr std::size_t kTlsReadBytes = 16u << 10;
    // Above this many queued frames a write copies them into one buffer.
    static constexpr std::size_t kGatherFramesMax = 16;
    // A close waits at most kCloseFlushTimeout for the frames queued before it
    // to reach the socket (a slow reader), then kCloseTimeout for the peer's
    // close frame; then the socket is closed regardless.
    static constexpr auto kCloseFlushTimeout = std::chrono::seconds(30);
    static constexpr auto kCloseTimeout = std::chrono::seconds(2);

  public:
    WsSession(Stream&& s, Bridge& gw, std::string leftover)
        : stream_(std::move(s)),
          gw_(gw),
          parser_(gw.limits.frame_bytes_max),
          leftover_(std::move(leftover)) {}
    WsSession(const WsSession&) = delete;
    WsSession& operator=(const WsSession&) = delete;
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
                ++gw_.counters.slow_consumer_closes;
                Shard* sh = shard_.load();  // the shard calling us
                sh->post([sh, id = id_] {
                    sh->conns.erase(id);
                    sh->engine.handle_close(wall_ms(), id);
                    sh->flush();
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
                   [self = this->shared_from_this(), code, reason = std::move(reason)]() {
                       self->close_when_flushed(code, reason);
                   });
    }

  private:
    struct Out {
        std::shared_ptr<const std::string> payload;
        ws::Opcode op = ws::Opcode::text;
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
            ++gw_.counters.invalid_version;
            engine_closed_ = true;
            return close_when_flushed(close_code::invalid_version,
                                      "invalid version: offer subprotocol tether.v1");
        }
        id_ = gw_.next_conn.fetch_add(1);
        // Every connection opens on a shard by its id; a RESUME moves it to
        // its session's shard (run_batch).
        Shard* sh = &gw_.shard_for_connection(
            id_, asio::query(stream_.get_executor(), asio::execution::context));
        shard_.store(sh);
        sh->post([self = this->shared_from_this(), sh, id = id_] {
            if (sh->bridge.draining.load()) {
                self->close(close_code::try_again_later, "server draining");
                return;
            }
            sh->conns[id] = self;
            sh->engine.handle_open(wall_ms(), id);
            sh->flush();
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
        // Frames are decoded here, on the connection's strand: the engine's
        // strand only dispatches (docs/DESIGN.md, "Network layer").
        std::vector<proto::DecodeResult> batch;
        while (inbox_at_ < inbox_.size()) {
            auto& e = inbox_[inbox_at_];
            if (e.kind == ws::Event::Kind::text) {
                if (!closing_) batch.push_back(proto::decode(e.data, gw_.limits));
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
                    ++gw_.counters.binary_frames;
                    close_when_flushed(close_code::decode_error,
                                       "binary frames are not part of tether.v1");
                    break;
                case ws::Event::Kind::close:
                    if (close_queued_) return finish();  // the answer to our close
                    queue_close(e.code == 0 ? ws::kCloseNormal : e.code, {}, true);
                    return;
                case ws::Event::Kind::error:
                    queue_close(e.code, e.data, true);
                    return;
                case ws::Event::Kind::text:
                    break;
            }
        }
        if (!batch.empty()) {
            Shard* sh = shard_.load();
            sh->post([self = this->shared_from_this(), sh, batch = std::move(batch)]() mutable {
                self->run_batch(sh, std::move(batch), 0);
            });
            return;
        }
        do_read();
    }

    /// Shard strand: hands `batch[from..]` to the engine of `sh`. A RESUME of
    /// a session another shard owns moves the connection there first, with
    /// the rest of the batch (docs/DESIGN.md, "Shards").
    void run_batch(Shard* sh, std::vector<proto::DecodeResult> batch, std::size_t from) {
        auto self = this->shared_from_this();
        for (std::size_t i = from; i < batch.size(); ++i) {
            if (!sh->conns.count(id_)) break;  // closed by the engine meanwhile
            if (auto owner = sh->engine.owner_shard(id_, batch[i])) {
                auto handoff = sh->engine.release(id_);
                if (!handoff) break;
                sh->conns.erase(id_);
                Shard* to = gw_.shards[*owner].get();
                shard_.store(to);  // before gone_ is read there: see finish()
                ++gw_.counters.shard_moves;
                to->post([self, to, h = *handoff, batch = std::move(batch), i]() mutable {
                    to->conns[self->id_] = self;
                    to->engine.adopt(wall_ms(), self->id_, h);
                    if (self->gone_.load()) {
                        // It ended while moving, and told the old shard.
                        to->conns.erase(self->id_);
                        to->engine.handle_close(wall_ms(), self->id_);
                        to->flush();
                        return;
                    }
                    self->run_batch(to, std::move(batch), i);
                });
                return;
            }
            sh->engine.handle_decoded(wall_ms(), id_, std::move(batch[i]));
            sh->flush();
        }
        // Read on either way: a closing connection still reads the peer's
        // close frame (its close() was posted before this).
        asio::post(stream_.get_executor(), [self] { self->pump(); });
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
            std::string{}.swap(gather_);
            std::vector<asio::const_buffer>{}.swap(bufs_);
            if (id_ != 0 && !closing_) {
                Shard* sh = shard_.load();
                sh->post([sh, id = id_] {
                    sh->engine.handle_writable(wall_ms(), id);
                    sh->flush();
                });
            }
            return;
        }
        headers_.resize(out_writing_.size());
        bufs_.clear();
        if (out_writing_.size() > kGatherFramesMax) {
            // Many frames: one contiguous buffer. A writev takes at most 64
            // buffers (32 frames), and each further one costs a trip through
            // the event loop; a busy connection (a publisher that gets an ACK
            // and an EVENT per message) then fell behind and was closed as a
            // slow consumer (--threads 1, docs/BENCHMARKS.md).
            std::size_t total = 0;
            for (const auto& o : out_writing_)
                total += o.payload->size() + sizeof(Header::bytes);
            gather_.clear();
            gather_.reserve(total);
            for (const auto& o : out_writing_) {
                unsigned char h[sizeof(Header::bytes)];
                const auto n = ws::write_header(h, o.op, o.payload->size());
                gather_.append(reinterpret_cast<const char*>(h), n);
                gather_.append(*o.payload);
            }
            bufs_.emplace_back(gather_.data(), gather_.size());
        } else {
            for (std::size_t i = 0; i < out_writing_.size(); ++i) {
                const auto& o = out_writing_[i];
                const auto n = ws::write_header(headers_[i].bytes, o.op, o.payload->size());
                bufs_.emplace_back(headers_[i].bytes, n);
                bufs_.emplace_back(o.payload->data(), o.payload->size());
            }
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
    void close_when_flushed(std::uint16_t code, const std::string& reason) {
        queue_close(code, reason, false);
    }

    void queue_close(std::uint16_t code, const std::string& reason, bool finish_after) {
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
        // gone_ before shard_ is read, shard_ before gone_ is read in
        // run_batch: a connection that ends while it moves is closed on one
        // shard or the other (both seq_cst).
        gone_.store(true);
        if (id_ != 0 && !engine_closed_) shard_.load()->connection_closed(id_);
        gw_.maybe_finish_drain();
    }

    struct Header {
        unsigned char bytes[10];
    };

    Stream stream_;
    Bridge& gw_;
    ws::ServerParser parser_;
    std::string leftover_;
    std::shared_ptr<Response> res_;  // the upgrade answer while it is written
    std::unique_ptr<char[]> tls_buf_;
    std::vector<ws::Event> inbox_;  // parsed, not yet handled (one read chunk at most)
    std::size_t inbox_at_ = 0;
    std::uint64_t id_ = 0;
    std::atomic<Shard*> shard_{nullptr};  // the shard that holds it (set at open, moved by RESUME)
    std::atomic<bool> gone_{false};       // finish() ran
    bool version_ok_ = false;
    // Outbound: appended by the engine strand under out_mu_, written by ours.
    std::mutex out_mu_;
    std::vector<Out> out_pending_;  // guarded
    std::size_t out_bytes_ = 0;     // guarded: queued and being written
    bool writer_active_ = false;    // guarded: a do_write is scheduled or running
    bool out_closed_ = false;       // guarded: a close frame is queued, nothing after it
    std::vector<Out> out_writing_;
    std::vector<Header> headers_;
    std::string gather_;  // many frames copied into one buffer (kGatherFramesMax)
    std::vector<asio::const_buffer> bufs_;
    std::unique_ptr<asio::steady_timer> close_timer_;  // only while closing
    bool closing_ = false;                             // no more inbound messages go to the engine
    bool close_queued_ = false;
    bool finish_after_close_ = false;  // error / answer to the peer's close: no wait
    bool finished_ = false;
    std::atomic<bool> engine_closed_{false};  // the engine already forgot this connection
};

}  // namespace

void start_ws_session(tcp::socket socket, Bridge& bridge, std::string leftover,
                      const Request& req) {
    std::make_shared<WsSession<tcp::socket>>(std::move(socket), bridge, std::move(leftover))
        ->start(req);
}

void start_ws_session(beast::ssl_stream<beast::tcp_stream> stream, Bridge& bridge,
                      std::string leftover, const Request& req) {
    std::make_shared<WsSession<beast::ssl_stream<beast::tcp_stream>>>(std::move(stream), bridge,
                                                                      std::move(leftover))
        ->start(req);
}

}  // namespace tether::gateway
