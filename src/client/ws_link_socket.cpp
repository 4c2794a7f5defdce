// The WebSocket link: resolve, connect, TLS, upgrade, then frames both
// ways, one Beast WebSocket stream over asio_support::AnyStream (plain TCP or
// TLS, compiled once).
#include "client/ws_link_impl.hpp"

#include <tether/core/protocol.hpp>

#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/websocket/stream.hpp>

#include <deque>
#include <optional>
#include <string>

namespace tether::detail::link_impl {

namespace http = beast::http;
namespace websocket = beast::websocket;

namespace {

using Ws = websocket::stream<AnyStream>;

class LinkImpl final : public Link, public std::enable_shared_from_this<LinkImpl> {
  public:
    LinkImpl(const asio::any_io_executor& ex, std::shared_ptr<const Endpoint> ep, LinkOptions opt,
             LinkHandlers h)
        : ex_(ex),
          ep_(std::move(ep)),
          opt_(std::move(opt)),
          h_(std::move(h)),
          resolver_(ex),
          ws_(make_ws(ex)) {}

    void start() override {
        resolver_.async_resolve(
            ep_->url.host, ep_->url.port,
            [self = this->shared_from_this()](beast::error_code ec, tcp::resolver::results_type r) {
                self->on_resolve(ec, std::move(r));
            });
    }

    void send(std::string data, bool binary) override {
        if (done_ || !open_ || closing_) return;
        queued_bytes_ += data.size();
        if (queued_bytes_ > opt_.write_queue_bytes_max)
            return fail(error::write_queue_full,
                        "write queue full (" + std::to_string(queued_bytes_) + " bytes)");
        writes_.push_back({std::move(data), binary});
        if (!writing_) do_write();
    }

    void ping(std::string payload) override {
        if (done_ || !open_ || closing_ || control_busy_) return;  // one ping at a time
        control_busy_ = true;
        if (payload.size() > 125) payload.resize(125);  // RFC 6455 5.5 (SocketConfig checks it)
        ping_payload_.assign(payload.data(), payload.size());
        ws_.async_ping(ping_payload_, [self = this->shared_from_this()](beast::error_code) {
            self->control_busy_ = false;
            self->maybe_close();
        });
    }

    void close(std::uint16_t code, std::string reason) override {
        if (done_) return;
        if (!open_) return fail(error::connection_lost, "closed before it opened");
        if (closing_) return;
        closing_ = true;
        reason = proto::truncate_close_reason(reason);
        close_reason_.code = code;
        close_reason_.reason.assign(reason.data(), reason.size());
        maybe_close();
    }

    void abort() override {
        if (done_) return;
        done_ = true;
        teardown();
    }

  private:
    struct Write {
        std::string data;
        bool binary = false;
    };

    Ws make_ws(const asio::any_io_executor& ex) {
        if (ep_->url.tls) return Ws{ex, *ep_->tls};
        return Ws{ex};
    }

    void teardown() {
        resolver_.cancel();
        beast::error_code ec;
        beast::get_lowest_layer(ws_).socket().close(ec);
        if (probe_) probe_->cancel();
    }

    /// The one exit: tears down and reports (once).
    void report(LinkClose why) {
        if (done_) return;
        done_ = true;
        teardown();
        if (h_.on_close) h_.on_close(std::move(why));
    }
    void fail(error e, std::string detail) { report(LinkClose::failed(e, std::move(detail))); }

    void on_resolve(beast::error_code ec, tcp::resolver::results_type r) {
        if (done_) return;
        if (ec)
            return fail(error::resolve_failed,
                        "cannot resolve " + ep_->url.host + ": " + ec.message());
        endpoints_ = std::move(r);
        if (ep_->probe) return run_probe();
        do_connect();
    }
    // ---- optional HTTP probe (its own connection) -------------------------------------
    void run_probe() {
        probe_ =
            start_http_probe(ex_, *ep_, opt_.user_agent,
                             [self = this->shared_from_this()](std::optional<LinkClose> failure) {
                                 if (self->done_) return;
                                 self->probe_.reset();
                                 if (failure) return self->report(std::move(*failure));
                                 self->do_connect();
                             });
    }

    // ---- the WebSocket connection -----------------------------------------------------
    void do_connect() {
        beast::get_lowest_layer(ws_).async_connect(endpoints_, [self = this->shared_from_this()](
                                                                   beast::error_code ec,
                                                                   const tcp::endpoint&) {
            if (self->done_) return;
            if (ec)
                return self->fail(error::connect_failed,
                                  "cannot connect to " + self->ep_->url.host + ":" +
                                      self->ep_->url.port + ": " + describe(ec));
            beast::error_code ignored;
            beast::get_lowest_layer(self->ws_).socket().set_option(tcp::no_delay(true), ignored);
            if (self->ep_->url.tls)
                self->tls_handshake();
            else
                self->ws_handshake();
        });
    }

    void tls_handshake() {
        auto& s = ws_.next_layer();
        if (!prepare_tls(s.native_handle(), ep_->url.host, ep_->verify))
            return fail(error::tls_failed, "cannot set the TLS server name");
        s.async_handshake(ssl::stream_base::client, [self = this->shared_from_this()](
                                                        beast::error_code ec) {
            if (self->done_) return;
            if (ec)
                return self->report(tls_failure(ec, self->ws_.next_layer().native_handle(), "TLS"));
            self->ws_handshake();
        });
    }

    void ws_handshake() {
        ws_.set_option(websocket::stream_base::timeout{websocket::stream_base::none(),
                                                       websocket::stream_base::none(), false});
        ws_.read_message_max(opt_.message_bytes_max);
        ws_.set_option(
            websocket::stream_base::decorator([headers = ep_->headers, sub = opt_.subprotocol,
                                               ua = opt_.user_agent](websocket::request_type& req) {
                req.set(http::field::user_agent, ua);
                if (!sub.empty()) req.set(http::field::sec_websocket_protocol, sub);
                for (const auto& [k, v] : headers)
                    req.set(k, v);
            }));
        ws_.control_callback([this](websocket::frame_type kind, beast::string_view payload) {
            // Runs inside our own read operation, on our executor.
            if (done_) return;
            if (kind == websocket::frame_type::pong && h_.on_pong)
                h_.on_pong(std::string_view{payload.data(), payload.size()});
            if (kind == websocket::frame_type::close) {
                // The server's close frame decides what happens next, even if
                // the connection is reset before the close handshake ends.
                const auto code = static_cast<std::uint16_t>(ws_.reason().code);
                peer_close_ = CloseFrame{code == 0 ? std::uint16_t{1005} : code,
                                         std::string{payload.data(), payload.size()}};
            }
        });
        ws_.async_handshake(
            response_, ep_->url.host_header, ep_->url.target,
            [self = this->shared_from_this()](beast::error_code ec) { self->on_handshake(ec); });
    }

    void on_handshake(beast::error_code ec) {
        if (done_) return;
        if (ec) {
            std::string why = "WebSocket handshake failed: " + describe(ec);
            if (response_.result_int() != 0 && response_.result_int() != 101)
                why += " (HTTP " + std::to_string(response_.result_int()) + ")";
            return fail(error::upgrade_failed, why);
        }
        if (!opt_.subprotocol.empty()) {
            const auto got = response_[http::field::sec_websocket_protocol];
            if (std::string_view{got.data(), got.size()} != opt_.subprotocol)
                return fail(error::subprotocol_rejected,
                            "server did not accept subprotocol " + opt_.subprotocol);
        }
        open_ = true;
        if (h_.on_open) h_.on_open();
        if (done_) return;
        do_read();
    }

    void do_read() {
        ws_.async_read(rbuf_, [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
            self->on_read(ec);
        });
    }

    void on_read(beast::error_code ec) {
        if (done_) return;
        if (ec) {
            if (peer_close_) {
                // Authoritative: a reset after the frame is reported with it.
                LinkClose why = LinkClose::closed(peer_close_->code, peer_close_->reason);
                if (ec != websocket::error::closed) {
                    why.error = error::connection_lost;
                    why.detail = "after the close frame: " + describe(ec);
                }
                return report(std::move(why));
            }
            if (ec == websocket::error::message_too_big)
                return fail(error::message_too_big, "message too big");
            return fail(error::connection_lost, describe(ec));
        }
        std::string data = beast::buffers_to_string(rbuf_.data());
        rbuf_.consume(rbuf_.size());
        const bool binary = ws_.got_binary();
        if (h_.on_message) h_.on_message(std::move(data), binary);
        if (done_) return;
        do_read();
    }

    void do_write() {
        if (writes_.empty() || done_) {
            writing_ = false;
            return maybe_close();
        }
        writing_ = true;
        ws_.binary(writes_.front().binary);
        ws_.async_write(asio::buffer(writes_.front().data), [self = this->shared_from_this()](
                                                                beast::error_code ec, std::size_t) {
            if (self->done_) return;
            if (ec) return self->fail(error::connection_lost, "write failed: " + describe(ec));
            self->queued_bytes_ -= self->writes_.front().data.size();
            self->writes_.pop_front();
            self->do_write();
        });
    }

    // The close handshake starts once queued writes went out and no ping is in flight.
    void maybe_close() {
        if (done_ || !closing_ || close_started_ || writing_ || control_busy_) return;
        close_started_ = true;
        control_busy_ = true;
        ws_.async_close(close_reason_, [self = this->shared_from_this()](beast::error_code ec) {
            self->control_busy_ = false;
            if (self->done_) return;
            if (ec) return self->fail(error::connection_lost, "close failed: " + describe(ec));
            // The read loop ends with error::closed when the peer answers.
        });
    }

    asio::any_io_executor ex_;
    std::shared_ptr<const Endpoint> ep_;
    LinkOptions opt_;
    LinkHandlers h_;
    tcp::resolver resolver_;
    tcp::resolver::results_type endpoints_;
    Ws ws_;
    websocket::response_type response_;
    beast::flat_buffer rbuf_;
    std::deque<Write> writes_;
    std::size_t queued_bytes_ = 0;
    websocket::ping_data ping_payload_;
    websocket::close_reason close_reason_;
    std::optional<CloseFrame> peer_close_;
    std::shared_ptr<HttpProbe> probe_;
    bool done_ = false;
    bool open_ = false;
    bool writing_ = false;
    bool closing_ = false;
    bool close_started_ = false;
    bool control_busy_ = false;
};

}  // namespace

std::shared_ptr<Link> make_websocket_link(const asio::any_io_executor& ex,
                                          std::shared_ptr<const Endpoint> ep, LinkOptions options,
                                          LinkHandlers handlers) {
    return std::make_shared<LinkImpl>(ex, std::move(ep), std::move(options), std::move(handlers));
}

}  // namespace tether::detail::link_impl
