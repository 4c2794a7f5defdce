#include "proxy/proxy.hpp"

#include "asio/listen.hpp"

#include <tether/core/random.hpp>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include <chrono>
#include <deque>
#include <optional>
#include <set>

namespace tether::proxy {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

struct DirectionFaults {
    std::int64_t latency_ms = 0;
    std::int64_t jitter_ms = 0;
    std::int64_t bandwidth_bps = 0;  ///< 0: unlimited
    bool blackhole = false;
    std::optional<std::uint64_t> cut_after_bytes;

    json::object to_json() const {
        json::object o;
        o["latency_ms"] = latency_ms;
        o["jitter_ms"] = jitter_ms;
        o["bandwidth_bps"] = bandwidth_bps;
        o["blackhole"] = blackhole;
        if (cut_after_bytes)
            o["cut_after_bytes"] = *cut_after_bytes;
        else
            o["cut_after_bytes"] = nullptr;
        return o;
    }
};

constexpr std::size_t kChunk = 16u << 10;
constexpr std::size_t kQueuedMax = 8u << 20;  ///< per direction; reading pauses above it

}  // namespace

/// One client connection and its upstream twin, all on the proxy's single thread.
class Pair : public std::enable_shared_from_this<Pair> {
  public:
    Pair(Proxy::Impl& p, tcp::socket client)
        : p_(p),
          client_(std::move(client)),
          upstream_(client_.get_executor()),
          timers_{asio::steady_timer{client_.get_executor()},
                  asio::steady_timer{client_.get_executor()}} {}
    void start();
    void close_fin();
    void reset();

  private:
    struct Dir {
        std::array<char, kChunk> buf{};
        std::deque<std::pair<Clock::time_point, std::string>> queue;
        std::size_t queued = 0;
        std::uint64_t forwarded = 0;
        bool writing = false;
        bool reading = false;
        Clock::time_point next_free = Clock::now();  // bandwidth pacing
    };
    tcp::socket& from(int d) { return d == 0 ? client_ : upstream_; }
    tcp::socket& to(int d) { return d == 0 ? upstream_ : client_; }
    void read(int d);
    void pump(int d);
    void finish();

    Proxy::Impl& p_;
    tcp::socket client_;
    tcp::socket upstream_;
    std::array<asio::steady_timer, 2> timers_;
    std::array<Dir, 2> dirs_;
    bool done_ = false;
};

struct Proxy::Impl {
    Impl(asio::io_context& io, ProxyOptions o)
        : opt(std::move(o)), ioc(io), listener(ioc), control(ioc), rng(opt.seed) {}
    ProxyOptions opt;
    asio::io_context& ioc;
    tcp::acceptor listener;
    tcp::acceptor control;
    Rng rng;
    std::array<DirectionFaults, 2> faults;  // 0 = up, 1 = down
    bool down = false;
    std::set<std::shared_ptr<Pair>> pairs;
    std::uint64_t accepted = 0, refused = 0;

    void accept() {
        listener.async_accept([this](beast::error_code ec, tcp::socket s) {
            if (ec == asio::error::operation_aborted) return;
            if (!ec) {
                if (down) {
                    ++refused;
                    beast::error_code ignored;
                    s.set_option(asio::socket_base::linger(true, 0), ignored);
                    s.close(ignored);  // RST: "connection refused" as far as the client can tell
                } else {
                    ++accepted;
                    auto pair = std::make_shared<Pair>(*this, std::move(s));
                    pairs.insert(pair);
                    pair->start();
                }
            }
            accept();
        });
    }
    void accept_control();
    std::string state_json() const {
        json::object o;
        o["up"] = faults[0].to_json();
        o["down"] = faults[1].to_json();
        o["refusing"] = down;
        o["connections"] = pairs.size();
        o["accepted"] = accepted;
        o["refused"] = refused;
        return json::serialize(o);
    }
    std::string apply(const http::request<http::string_body>& req, http::status& status);
};

void Pair::start() {
    auto self = shared_from_this();
    tcp::endpoint ep{asio::ip::make_address(p_.opt.upstream_host), p_.opt.upstream_port};
    upstream_.async_connect(ep, [self](beast::error_code ec) {
        if (ec) return self->finish();
        // No Nagle on either side: the proxy adds only the delays it is told to.
        beast::error_code ignored;
        self->upstream_.set_option(tcp::no_delay(true), ignored);
        self->client_.set_option(tcp::no_delay(true), ignored);
        self->read(0);
        self->read(1);
    });
}

void Pair::read(int d) {
    Dir& dir = dirs_[static_cast<std::size_t>(d)];
    if (done_ || dir.reading || dir.queued > kQueuedMax) return;
    dir.reading = true;
    from(d).async_read_some(asio::buffer(dir.buf), [self = shared_from_this(), d](
                                                       beast::error_code ec, std::size_t n) {
        Dir& dr = self->dirs_[static_cast<std::size_t>(d)];
        dr.reading = false;
        if (self->done_) return;
        if (ec) return self->finish();  // EOF or reset on one side ends the pair
        const auto& f = self->p_.faults[static_cast<std::size_t>(d)];
        if (!f.blackhole) {
            auto delay = f.latency_ms;
            if (f.jitter_ms > 0) delay += self->p_.rng.range(-f.jitter_ms, f.jitter_ms);
            auto due = Clock::now() + std::chrono::milliseconds(std::max<std::int64_t>(0, delay));
            if (!dr.queue.empty()) due = std::max(due, dr.queue.back().first);  // never reorder
            dr.queue.emplace_back(due, std::string(dr.buf.data(), n));
            dr.queued += n;
            self->pump(d);
        }
        self->read(d);
    });
}

void Pair::pump(int d) {
    Dir& dir = dirs_[static_cast<std::size_t>(d)];
    if (done_ || dir.writing || dir.queue.empty()) return;
    const auto& f = p_.faults[static_cast<std::size_t>(d)];
    const auto now = Clock::now();
    auto due = std::max(dir.queue.front().first, f.bandwidth_bps > 0 ? dir.next_free : now);
    if (due > now) {
        auto& t = timers_[static_cast<std::size_t>(d)];
        t.expires_at(due);
        dir.writing = true;
        t.async_wait([self = shared_from_this(), d](beast::error_code ec) {
            self->dirs_[static_cast<std::size_t>(d)].writing = false;
            if (!ec) self->pump(d);
        });
        return;
    }
    auto data = std::make_shared<std::string>(std::move(dir.queue.front().second));
    dir.queue.pop_front();
    if (f.cut_after_bytes) {
        const auto left =
            *f.cut_after_bytes > dir.forwarded ? *f.cut_after_bytes - dir.forwarded : 0;
        if (left == 0) return finish();
        if (data->size() > left) data->resize(left);
    }
    if (f.bandwidth_bps > 0)
        dir.next_free = now + std::chrono::microseconds(static_cast<std::int64_t>(data->size()) *
                                                        1'000'000 / f.bandwidth_bps);
    dir.writing = true;
    asio::async_write(to(d), asio::buffer(*data),
                      [self = shared_from_this(), d, data](beast::error_code ec, std::size_t n) {
                          Dir& dr = self->dirs_[static_cast<std::size_t>(d)];
                          dr.writing = false;
                          dr.queued -= std::min(dr.queued, n);
                          dr.forwarded += n;
                          if (ec) return self->finish();
                          const auto& fl = self->p_.faults[static_cast<std::size_t>(d)];
                          if (fl.cut_after_bytes && dr.forwarded >= *fl.cut_after_bytes)
                              return self->finish();
                          self->pump(d);
                          self->read(d);
                      });
}

void Pair::finish() {
    if (done_) return;
    done_ = true;
    beast::error_code ec;
    client_.shutdown(tcp::socket::shutdown_both, ec);
    upstream_.shutdown(tcp::socket::shutdown_both, ec);
    client_.close(ec);
    upstream_.close(ec);
    for (auto& t : timers_)
        t.cancel();
    p_.pairs.erase(shared_from_this());
}

void Pair::close_fin() {
    finish();
}

void Pair::reset() {
    beast::error_code ec;
    client_.set_option(asio::socket_base::linger(true, 0), ec);
    upstream_.set_option(asio::socket_base::linger(true, 0), ec);
    done_ = true;
    client_.close(ec);
    upstream_.close(ec);
    for (auto& t : timers_)
        t.cancel();
    p_.pairs.erase(shared_from_this());
}

std::string Proxy::Impl::apply(const http::request<http::string_body>& req, http::status& status) {
    const std::string target{req.target()};
    status = http::status::ok;
    auto bad = [&](const std::string& msg) {
        status = http::status::bad_request;
        json::object o;
        o["error"] = msg;
        return json::serialize(o);
    };
    if (req.method() == http::verb::get && target == "/faults") return state_json();
    if (req.method() == http::verb::delete_ && target == "/faults") {
        faults = {};
        down = false;
        return state_json();
    }
    if (req.method() == http::verb::post && (target == "/close" || target == "/reset")) {
        auto copy = pairs;
        for (const auto& p : copy)
            target == "/close" ? p->close_fin() : p->reset();
        return state_json();
    }
    if (req.method() == http::verb::post && target == "/faults") {
        boost::system::error_code ec;
        auto v = json::parse(req.body(), ec);
        if (ec || !v.is_object()) return bad("body must be a JSON object");
        const auto& o = v.get_object();
        std::string dir = "both";
        if (const auto* d = o.if_contains("direction")) {
            if (!d->is_string()) return bad("direction must be up, down or both");
            dir = std::string{d->get_string()};
        }
        if (dir != "up" && dir != "down" && dir != "both")
            return bad("direction must be up, down or both");
        for (int i = 0; i < 2; ++i) {
            if ((i == 0 && dir == "down") || (i == 1 && dir == "up")) continue;
            auto& f = faults[static_cast<std::size_t>(i)];
            auto num = [&](const char* key, std::int64_t& out) -> bool {
                const auto* x = o.if_contains(key);
                if (!x) return true;
                if (!x->is_int64() || x->get_int64() < 0) return false;
                out = x->get_int64();
                return true;
            };
            if (!num("latency_ms", f.latency_ms) || !num("jitter_ms", f.jitter_ms) ||
                !num("bandwidth_bps", f.bandwidth_bps))
                return bad("latency_ms, jitter_ms and bandwidth_bps must be non-negative integers");
            if (const auto* b = o.if_contains("blackhole")) {
                if (!b->is_bool()) return bad("blackhole must be true or false");
                f.blackhole = b->get_bool();
            }
            if (const auto* c = o.if_contains("cut_after_bytes")) {
                if (c->is_null())
                    f.cut_after_bytes.reset();
                else if (c->is_int64() && c->get_int64() >= 0)
                    f.cut_after_bytes = static_cast<std::uint64_t>(c->get_int64());
                else
                    return bad("cut_after_bytes must be a non-negative integer or null");
            }
        }
        if (const auto* d = o.if_contains("refuse")) {
            if (!d->is_bool()) return bad("refuse must be true or false");
            down = d->get_bool();
        }
        // Blackholes and cuts take effect at once on existing connections too;
        // latency and bandwidth apply to the next bytes read.
        return state_json();
    }
    status = http::status::not_found;
    return R"({"error":"not found: GET|POST|DELETE /faults, POST /close, POST /reset"})";
}

/// A minimal HTTP/1.1 control connection.
class ControlSession : public std::enable_shared_from_this<ControlSession> {
  public:
    ControlSession(Proxy::Impl& p, tcp::socket s) : p_(p), stream_(std::move(s)) {}
    void read() {
        parser_.emplace();
        parser_->body_limit(64u << 10);
        stream_.expires_after(std::chrono::seconds(10));
        http::async_read(stream_, buf_, *parser_,
                         [self = shared_from_this()](beast::error_code ec, std::size_t) {
                             if (ec) return;
                             auto req = self->parser_->release();
                             http::status st{};
                             auto body = self->p_.apply(req, st);
                             auto res = std::make_shared<http::response<http::string_body>>(st, 11);
                             res->set(http::field::content_type, "application/json");
                             res->keep_alive(req.keep_alive());
                             res->body() = std::move(body);
                             res->prepare_payload();
                             http::async_write(self->stream_, *res,
                                               [self, res](beast::error_code e, std::size_t) {
                                                   if (!e && res->keep_alive()) self->read();
                                               });
                         });
    }

  private:
    Proxy::Impl& p_;
    beast::tcp_stream stream_;
    beast::flat_buffer buf_;
    std::optional<http::request_parser<http::string_body>> parser_;
};

void Proxy::Impl::accept_control() {
    control.async_accept([this](beast::error_code ec, tcp::socket s) {
        if (ec == asio::error::operation_aborted) return;
        if (!ec) std::make_shared<ControlSession>(*this, std::move(s))->read();
        accept_control();
    });
}

Proxy::Proxy(asio::io_context& ioc, ProxyOptions options)
    : impl_(std::make_unique<Impl>(ioc, std::move(options))) {
    asio_support::listen(impl_->listener, impl_->opt.listen_host, impl_->opt.listen_port, "proxy");
    asio_support::listen(impl_->control, impl_->opt.control_host, impl_->opt.control_port,
                         "control");
    beast::error_code ec;
    (void)asio::ip::make_address(impl_->opt.upstream_host, ec);
    if (ec) throw std::runtime_error("invalid upstream address '" + impl_->opt.upstream_host + "'");
}

Proxy::~Proxy() = default;
std::uint16_t Proxy::port() const {
    return impl_->listener.local_endpoint().port();
}
std::uint16_t Proxy::control_port() const {
    return impl_->control.local_endpoint().port();
}

void Proxy::start() {
    impl_->accept();
    impl_->accept_control();
}

}  // namespace tether::proxy
