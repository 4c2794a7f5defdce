// The floor of the benchmarks: a plain Boost.Beast WebSocket server with no
// sessions, offsets, history or dedupe. `/echo` answers every text message
// with itself; `/fanout` forwards every message to every other `/fanout`
// connection. Same threading model as the gateway (connections on strands of
// one io_context run by --threads threads, one shared buffer per broadcast,
// a bounded outbound queue per connection), so the gap between this and
// `tether serve` is what tether's bookkeeping costs.
//
// Usage: tether-raw-server [--listen 127.0.0.1:9001] [--threads 2]

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

namespace {

constexpr std::size_t kOutboundBytesMax = 4u << 20;  // as the gateway's default --outbound-max

class Session;

/// Every /fanout connection; broadcast() takes the lock only to post.
struct Hub {
    std::mutex mutex;
    std::unordered_set<std::shared_ptr<Session>> members;
    void broadcast(const Session* from, std::shared_ptr<const std::string> text);
};

class Session : public std::enable_shared_from_this<Session> {
  public:
    Session(tcp::socket s, Hub& hub) : ws_(std::move(s)), hub_(hub) {}

    void run() {
        auto self = shared_from_this();
        http::async_read(ws_.next_layer(), buf_, req_, [self](beast::error_code ec, std::size_t) {
            if (ec) return;
            self->fanout_ = self->req_.target() == "/fanout";
            self->ws_.set_option(
                websocket::stream_base::timeout::suggested(beast::role_type::server));
            self->ws_.async_accept(self->req_, [self](beast::error_code e) {
                if (e) return;
                self->ws_.text(true);
                if (self->fanout_) {
                    std::lock_guard lock{self->hub_.mutex};
                    self->hub_.members.insert(self);
                }
                self->read();
            });
        });
    }

    void send(std::shared_ptr<const std::string> text) {
        asio::post(ws_.get_executor(), [self = shared_from_this(), text = std::move(text)] {
            if (self->closed_) return;
            if (self->queued_bytes_ + text->size() > kOutboundBytesMax) return self->finish();
            self->queued_bytes_ += text->size();
            self->queue_.push_back(text);
            if (self->queue_.size() == 1) self->write();
        });
    }

  private:
    void read() {
        ws_.async_read(buf_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
            if (ec) return self->finish();
            auto text =
                std::make_shared<const std::string>(beast::buffers_to_string(self->buf_.data()));
            self->buf_.consume(self->buf_.size());
            if (self->fanout_)
                self->hub_.broadcast(self.get(), std::move(text));
            else
                self->send(std::move(text));
            self->read();
        });
    }

    void write() {
        ws_.async_write(asio::buffer(*queue_.front()),
                        [self = shared_from_this()](beast::error_code ec, std::size_t) {
                            self->queued_bytes_ -= self->queue_.front()->size();
                            self->queue_.pop_front();
                            if (ec) return self->finish();
                            if (!self->queue_.empty()) self->write();
                        });
    }

    void finish() {
        if (closed_) return;
        closed_ = true;
        beast::error_code ec;
        ws_.next_layer().close(ec);
        if (fanout_) {
            std::lock_guard lock{hub_.mutex};
            hub_.members.erase(shared_from_this());
        }
    }

    websocket::stream<tcp::socket> ws_;
    Hub& hub_;
    beast::flat_buffer buf_;
    http::request<http::string_body> req_;
    std::deque<std::shared_ptr<const std::string>> queue_;
    std::size_t queued_bytes_ = 0;
    bool fanout_ = false;
    bool closed_ = false;
};

void Hub::broadcast(const Session* from, std::shared_ptr<const std::string> text) {
    std::lock_guard lock{mutex};
    for (const auto& m : members)
        if (m.get() != from) m->send(text);
}

void accept(tcp::acceptor& acceptor, asio::io_context& ioc, Hub& hub) {
    acceptor.async_accept(asio::make_strand(ioc), [&](beast::error_code ec, tcp::socket s) {
        if (!ec) {
            s.set_option(tcp::no_delay(true));
            std::make_shared<Session>(std::move(s), hub)->run();
        }
        accept(acceptor, ioc, hub);
    });
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "Plain Boost.Beast echo (/echo) and broadcast (/fanout) server: the benchmark floor"};
    std::string listen = "127.0.0.1:9001";
    unsigned threads = 2;
    app.add_option("--listen", listen, "HOST:PORT (default 127.0.0.1:9001)");
    app.add_option("--threads", threads, "I/O threads (default 2)")->check(CLI::Range(1u, 64u));
    CLI11_PARSE(app, argc, argv);

    const auto colon = listen.rfind(':');
    if (colon == std::string::npos) {
        std::fprintf(stderr, "tether-raw-server: --listen must be HOST:PORT\n");
        return 2;
    }
    asio::io_context ioc{static_cast<int>(threads)};
    Hub hub;
    tcp::acceptor acceptor{ioc};
    try {
        const tcp::endpoint ep{asio::ip::make_address(listen.substr(0, colon)),
                               static_cast<unsigned short>(std::stoi(listen.substr(colon + 1)))};
        acceptor.open(ep.protocol());
        acceptor.set_option(asio::socket_base::reuse_address(true));
        acceptor.bind(ep);
        acceptor.listen(asio::socket_base::max_listen_connections);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "tether-raw-server: cannot listen on %s: %s\n", listen.c_str(),
                     e.what());
        return 1;
    }
    accept(acceptor, ioc, hub);
    std::printf("listening on %s\n", listen.c_str());
    std::fflush(stdout);
    std::vector<std::thread> pool;
    for (unsigned i = 1; i < threads; ++i)
        pool.emplace_back([&] { ioc.run(); });
    ioc.run();
    for (auto& t : pool)
        t.join();
}
