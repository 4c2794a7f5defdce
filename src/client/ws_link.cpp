#include "client/ws_link_impl.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <boost/url/parse.hpp>

#include <stdexcept>

namespace tether::detail {

using namespace link_impl;  // NOLINT(google-build-using-namespace): the Asio/Beast aliases
namespace http = beast::http;

result<Url, Error> parse_url(std::string_view text) {
    auto bad = [](std::string what) { return make_error(error::invalid_config, std::move(what)); };
    auto r = boost::urls::parse_uri(text);
    if (!r) return bad("invalid URL '" + std::string{text} + "': " + r.error().message());
    const auto& u = *r;
    Url out;
    const std::string scheme = u.scheme();
    if (scheme == "wss" || scheme == "https")
        out.tls = true;
    else if (scheme != "ws" && scheme != "http")
        return bad("unsupported URL scheme '" + scheme +
                   "' (use ws://, wss://, http:// or https://)");
    out.http = scheme == "http" || scheme == "https";
    if (!u.has_authority() || u.host().empty())
        return bad("URL without a host: " + std::string{text});
    if (u.has_userinfo()) return bad("credentials in URLs are not supported; use a token");
    out.host = u.host_address();
    out.port = u.has_port() ? std::string{u.port()} : (out.tls ? "443" : "80");
    out.target = u.encoded_path().empty() ? "/" : std::string{u.encoded_path()};
    if (u.has_query()) out.target += "?" + std::string{u.encoded_query()};
    out.host_header = std::string{u.encoded_host_and_port()};
    return out;
}

namespace {

result<std::shared_ptr<ssl::context>, Error> make_client_tls(
    const std::optional<std::string>& ca_file, bool verify) {
    auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                     ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    beast::error_code ec;
    if (ca_file) {
        ctx->load_verify_file(*ca_file, ec);
        if (ec)
            return make_error(error::invalid_config,
                              "cannot load CA file " + *ca_file + ": " + ec.message());
    } else {
        ctx->set_default_verify_paths(ec);
        if (ec)
            return make_error(error::invalid_config,
                              "cannot load the system CA store: " + ec.message());
    }
    ctx->set_verify_mode(verify ? ssl::verify_peer : ssl::verify_none);
    return ctx;
}

}  // namespace

result<Endpoint, Error> make_endpoint(const TransportOptions& t) {
    Endpoint ep;
    auto url = parse_url(t.url);
    if (!url) return url.error();
    if (url->http)
        return make_error(error::invalid_config, "use a ws:// or wss:// URL, not " + t.url);
    ep.url = std::move(*url);
    if (t.probe_url) {
        auto p = parse_url(*t.probe_url);
        if (!p) return make_error(error::invalid_config, "probe_url: " + p.error().message);
        ep.probe = std::move(*p);
    }
    if (ep.url.tls || (ep.probe && ep.probe->tls)) {
        auto tls = make_client_tls(t.ca_file, t.tls_verify);
        if (!tls) return tls.error();
        ep.tls = std::move(*tls);
    }
    ep.verify = t.tls_verify;
    ep.headers = t.headers;
    return ep;
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

LinkClose tls_failure(const beast::error_code& ec, SSL* ssl, std::string_view context) {
    const bool ssl_error = ec.category() == asio::error::get_ssl_category();
    if (ssl_error &&
        ERR_GET_REASON(static_cast<unsigned long>(ec.value())) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
        const long result = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
        std::string detail = std::string{context} + ": certificate verify failed";
        if (result != X509_V_OK)
            detail += ": " + std::string{X509_verify_cert_error_string(result)};
        return LinkClose::failed(error::certificate_rejected, std::move(detail));
    }
    return LinkClose::failed(error::tls_failed, std::string{context} + ": " + describe(ec));
}

bool prepare_tls(SSL* ssl, const std::string& host, bool verify) {
    // SSL_set_tlsext_host_name is a macro with a C cast; this is the same call.
    char* name = const_cast<char*>(host.c_str());
    if (SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                 static_cast<void*>(name)) != 1)
        return false;
    if (!verify) return true;
    // OpenSSL checks the name during the handshake, so a mismatch fails it
    // with a verification result (X509_V_ERR_HOSTNAME_MISMATCH / _IP_ADDRESS_MISMATCH).
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    beast::error_code ec;
    (void)asio::ip::make_address(host, ec);
    return ec ? X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size()) == 1
              : X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str()) == 1;
}

namespace {

/// Over AnyStream: the HTTP operations are compiled once for HTTP and HTTPS.
class HttpProbeImpl final : public HttpProbe, public std::enable_shared_from_this<HttpProbeImpl> {
    using Done = std::function<void(std::optional<LinkClose>)>;

  public:
    HttpProbeImpl(const asio::any_io_executor& ex, const Endpoint& ep,
                  const std::string& user_agent, Done done)
        : ex_(ex),
          resolver_(ex),
          stream_(ep.probe->tls ? AnyStream{ex, *ep.tls} : AnyStream{ex}),
          url_(*ep.probe),
          verify_(ep.verify),
          done_(std::move(done)) {
        req_ = {http::verb::get, url_.target, 11};
        req_.set(http::field::host, url_.host_header);
        req_.set(http::field::user_agent, user_agent);
        res_.body_limit(64u << 10);
    }

    void start() {
        if (stream_.tls()) {
            if (!prepare_tls(stream_.native_handle(), url_.host, verify_)) {
                asio::post(ex_, [self = this->shared_from_this()] {
                    self->finish(LinkClose::failed(error::tls_failed, "probe: cannot set TLS SNI"));
                });
                return;
            }
        }
        resolver_.async_resolve(
            url_.host, url_.port,
            [self = this->shared_from_this()](beast::error_code ec,
                                              const tcp::resolver::results_type& r) {
                if (ec) return self->fail("probe: cannot resolve: " + ec.message());
                beast::get_lowest_layer(self->stream_)
                    .async_connect(r, [self](beast::error_code ec2, const tcp::endpoint&) {
                        if (ec2) return self->fail("probe failed: " + describe(ec2));
                        if (self->stream_.tls())
                            self->stream_.async_handshake(
                                ssl::stream_base::client, [self](beast::error_code ec3) {
                                    if (ec3)
                                        return self->finish(tls_failure(
                                            ec3, self->stream_.native_handle(), "probe: TLS"));
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
                if (ec) return self->fail("probe failed: " + describe(ec));
                http::async_read(
                    self->stream_, self->buf_, self->res_,
                    [self](beast::error_code ec2, std::size_t) {
                        if (ec2) return self->fail("probe failed: " + describe(ec2));
                        const unsigned status = self->res_.get().result_int();
                        if (status < 200 || status >= 300)
                            return self->fail("probe answered HTTP " + std::to_string(status));
                        self->finish(std::nullopt);
                    });
            });
    }

    void fail(std::string detail) {
        finish(LinkClose::failed(error::probe_failed, std::move(detail)));
    }

    void finish(std::optional<LinkClose> failure) {
        if (!done_) return;
        auto done = std::exchange(done_, nullptr);
        cancel();  // the probe's connection is not reused
        done(std::move(failure));
    }

    asio::any_io_executor ex_;
    tcp::resolver resolver_;
    AnyStream stream_;
    Url url_;
    bool verify_;
    beast::flat_buffer buf_;
    http::request<http::empty_body> req_;
    http::response_parser<http::string_body> res_;
    Done done_;
};

}  // namespace

std::shared_ptr<HttpProbe> start_http_probe(const asio::any_io_executor& ex, const Endpoint& ep,
                                            const std::string& user_agent,
                                            std::function<void(std::optional<LinkClose>)> done) {
    auto p = std::make_shared<HttpProbeImpl>(ex, ep, user_agent, std::move(done));
    p->start();
    return p;
}

}  // namespace link_impl

std::shared_ptr<Link> make_link(const asio::any_io_executor& ex,
                                std::shared_ptr<const Endpoint> endpoint, LinkOptions options,
                                LinkHandlers handlers) {
    if (endpoint->url.tls && !endpoint->tls)
        throw std::invalid_argument("wss:// needs TLS settings");
    return make_websocket_link(ex, std::move(endpoint), std::move(options), std::move(handlers));
}

}  // namespace tether::detail
