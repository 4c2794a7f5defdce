#include "gateway/http_session.hpp"

#include "gateway/admin_api.hpp"
#include "gateway/bridge.hpp"
#include "gateway/http_util.hpp"
#include "gateway/ws_session.hpp"

#include <boost/asio/ssl/stream_base.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/rfc6455.hpp>

#include <memory>
#include <optional>

namespace tether::gateway {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace {

template <class Stream>
class HttpSession : public std::enable_shared_from_this<HttpSession<Stream>> {
  public:
    HttpSession(Stream&& s, Bridge& gw) : stream_(std::move(s)), gw_(gw) { ++gw_.live_sockets; }
    HttpSession(const HttpSession&) = delete;
    HttpSession& operator=(const HttpSession&) = delete;
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
                ++gw_.counters.connections_refused;
                return write(make_response(http::status::service_unavailable,
                                           error_body("too many connections"), false));
            }
            // A node that cannot serve (its store out of reach) refuses new
            // connections as /healthz does: a load balancer tries another
            // node (nginx: proxy_next_upstream http_503, deploy/nginx.conf).
            if (gw_.opt.health_problem) {
                if (auto problem = gw_.opt.health_problem(); !problem.empty()) {
                    ++gw_.counters.connections_refused;
                    auto res = make_response(http::status::service_unavailable,
                                             error_body("unavailable: " + problem), false);
                    res.set(http::field::retry_after, "1");
                    return write(std::move(res));
                }
            }
            ++gw_.live_ws;
            beast::get_lowest_layer(stream_).expires_never();
            auto leftover = beast::buffers_to_string(buf_.data());
            if constexpr (std::is_same_v<Stream, beast::tcp_stream>)
                start_ws_session(stream_.release_socket(), gw_, std::move(leftover), req);
            else
                start_ws_session(std::move(stream_), gw_, std::move(leftover), req);
            return;
        }
        const bool keep = req.keep_alive();
        route_http(gw_, std::move(req), [self = this->shared_from_this(), keep](Response res) {
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
    Bridge& gw_;
    beast::flat_buffer buf_;
    std::optional<http::request_parser<http::string_body>> parser_;
    std::shared_ptr<Response> res_;
};

}  // namespace

void start_http_session(beast::tcp_stream stream, Bridge& bridge) {
    std::make_shared<HttpSession<beast::tcp_stream>>(std::move(stream), bridge)->run();
}

void start_http_session(beast::ssl_stream<beast::tcp_stream> stream, Bridge& bridge) {
    std::make_shared<HttpSession<beast::ssl_stream<beast::tcp_stream>>>(std::move(stream), bridge)
        ->run();
}

}  // namespace tether::gateway
