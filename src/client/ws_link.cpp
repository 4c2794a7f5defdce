#include "client/ws_link_impl.hpp"

#include <boost/url/parse.hpp>

namespace tether::detail {

using namespace link_impl;  // NOLINT: the Asio/Beast aliases

std::variant<Url, std::string> parse_url(std::string_view text) {
    auto r = boost::urls::parse_uri(text);
    if (!r) return "invalid URL '" + std::string{text} + "': " + r.error().message();
    const auto& u = *r;
    Url out;
    const std::string scheme = u.scheme();
    if (scheme == "wss" || scheme == "https")
        out.tls = true;
    else if (scheme != "ws" && scheme != "http")
        return "unsupported URL scheme '" + scheme + "' (use ws://, wss://, http:// or https://)";
    out.http = scheme == "http" || scheme == "https";
    if (!u.has_authority() || u.host().empty()) return "URL without a host: " + std::string{text};
    if (u.has_userinfo()) return "credentials in URLs are not supported; use a token";
    out.host = u.host_address();
    out.port = u.has_port() ? std::string{u.port()} : (out.tls ? "443" : "80");
    out.target = u.encoded_path().empty() ? "/" : std::string{u.encoded_path()};
    if (u.has_query()) out.target += "?" + std::string{u.encoded_query()};
    out.host_header = std::string{u.encoded_host_and_port()};
    return out;
}

std::shared_ptr<ssl::context> make_client_tls(const std::optional<std::string>& ca_file,
                                              bool verify) {
    auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                     ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    beast::error_code ec;
    if (ca_file) {
        ctx->load_verify_file(*ca_file, ec);
        if (ec) throw std::runtime_error("cannot load CA file " + *ca_file + ": " + ec.message());
    } else {
        ctx->set_default_verify_paths(ec);
        if (ec) throw std::runtime_error("cannot load the system CA store: " + ec.message());
    }
    ctx->set_verify_mode(verify ? ssl::verify_peer : ssl::verify_none);
    return ctx;
}

namespace link_impl {

std::string describe(const beast::error_code& ec) {
    std::string s = ec.message();
    if (ec.category() == asio::error::get_ssl_category()) {
        // OpenSSL's reason string names the real cause (certificate verify failed, ...).
        if (const char* r = ERR_reason_error_string(static_cast<unsigned long>(ec.value()))) s = r;
        s = "TLS: " + s;
    }
    return s;
}

// SSL_set_tlsext_host_name is a macro with a C cast; this is the same call.
bool set_sni(SSL* ssl, const std::string& host) {
    char* name = const_cast<char*>(host.c_str());
    return SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                    static_cast<void*>(name)) == 1;
}

namespace {

template <class Stream>
class HttpProbeImpl final : public HttpProbe,
                            public std::enable_shared_from_this<HttpProbeImpl<Stream>> {
    static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;
    using Done = std::function<void(std::optional<std::string>)>;

  public:
    HttpProbeImpl(asio::any_io_executor ex, Stream s, const Url& url, const LinkOptions& opt,
                  Done done)
        : ex_(ex), resolver_(ex), stream_(std::move(s)), url_(url), done_(std::move(done)) {
        req_ = {http::verb::get, url_.target, 11};
        req_.set(http::field::host, url_.host_header);
        req_.set(http::field::user_agent, opt.user_agent);
        res_.body_limit(64u << 10);
        if constexpr (kTls)
            if (opt.verify_host)
                stream_.set_verify_callback(ssl::host_name_verification(url_.host));
    }

    void start() {
        if constexpr (kTls) {
            if (!set_sni(stream_.native_handle(), url_.host)) {
                asio::post(ex_, [self = this->shared_from_this()] {
                    self->finish("probe: cannot set TLS SNI");
                });
                return;
            }
        }
        resolver_.async_resolve(
            url_.host, url_.port,
            [self = this->shared_from_this()](beast::error_code ec, tcp::resolver::results_type r) {
                if (ec) return self->finish("probe: cannot resolve: " + ec.message());
                beast::get_lowest_layer(self->stream_)
                    .async_connect(r, [self](beast::error_code ec2, const tcp::endpoint&) {
                        if (ec2) return self->finish("probe failed: " + describe(ec2));
                        if constexpr (kTls)
                            self->stream_.async_handshake(
                                ssl::stream_base::client, [self](beast::error_code ec3) {
                                    if (ec3) return self->finish("probe failed: " + describe(ec3));
                                    self->send();
                                });
                        else
                            self->send();
                    });
            });
    }

    void cancel() override {
        resolver_.cancel();
        beast::error_code ec;
        beast::get_lowest_layer(stream_).socket().close(ec);
    }

  private:
    void send() {
        http::async_write(
            stream_, req_, [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                if (ec) return self->finish("probe failed: " + describe(ec));
                http::async_read(
                    self->stream_, self->buf_, self->res_,
                    [self](beast::error_code ec2, std::size_t) {
                        if (ec2) return self->finish("probe failed: " + describe(ec2));
                        const unsigned status = self->res_.get().result_int();
                        if (status < 200 || status >= 300)
                            return self->finish("probe answered HTTP " + std::to_string(status));
                        self->finish(std::nullopt);
                    });
            });
    }

    void finish(std::optional<std::string> error) {
        if (!done_) return;
        auto done = std::exchange(done_, nullptr);
        cancel();  // the probe's connection is not reused
        done(std::move(error));
    }

    asio::any_io_executor ex_;
    tcp::resolver resolver_;
    Stream stream_;
    Url url_;
    beast::flat_buffer buf_;
    http::request<http::empty_body> req_;
    http::response_parser<http::string_body> res_;
    Done done_;
};

}  // namespace

std::shared_ptr<HttpProbe> start_http_probe(asio::any_io_executor ex, const Url& url,
                                            const LinkOptions& opt,
                                            std::function<void(std::optional<std::string>)> done) {
    if (url.tls) {
        using S = beast::ssl_stream<beast::tcp_stream>;
        auto p = std::make_shared<HttpProbeImpl<S>>(ex, S{ex, *opt.tls}, url, opt, std::move(done));
        p->start();
        return p;
    }
    auto p = std::make_shared<HttpProbeImpl<beast::tcp_stream>>(ex, beast::tcp_stream{ex}, url, opt,
                                                                std::move(done));
    p->start();
    return p;
}

}  // namespace link_impl

std::shared_ptr<Link> make_link(asio::any_io_executor ex, Url url, LinkOptions options,
                                LinkHandlers handlers) {
    if (url.tls) {
        if (!options.tls) throw std::invalid_argument("wss:// needs TLS settings");
        return make_link_of<tls_ws>(ex, std::move(url), std::move(options), std::move(handlers));
    }
    return make_link_of<plain_ws>(ex, std::move(url), std::move(options), std::move(handlers));
}

}  // namespace tether::detail
