// tether::Client and tether::ReconnectingWebSocket over real sockets against
// the real gateway (in process, on a free loopback port, memory store): the
// public API's promises that the CLI tests cannot reach -- wait_connected,
// publish callbacks, the credentials callback and token refresh, retry_now
// after a fatal stop, TLS verification, the HTTP probe, state-file restore.
// Waits are on the client's own observable state, never on sleeps.

#include <tether/client.hpp>
#include <tether/reconnecting_websocket.hpp>

#include "gateway/gateway.hpp"
#include "gateway/system.hpp"
#include "store/memory_store.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <mutex>
#include <thread>

using namespace std::chrono_literals;
using namespace tether;
namespace fs = std::filesystem;

namespace {

struct GatewayOptionsForTest {
    std::function<AuthResult(std::string_view, std::int64_t)> authenticate;
    std::optional<std::string> cert, key;
};

/// A gateway on 127.0.0.1:<free port> running on its own thread.
class TestGateway {
  public:
    explicit TestGateway(GatewayOptionsForTest o = {}) : store_(StoreLimits{}, 1) {
        ServerConfig cfg;
        cfg.random_bytes = gateway::secure_random;
        cfg.authenticate =
            o.authenticate ? o.authenticate : [this](std::string_view t, std::int64_t) {
                ++identifies;
                return AuthResult{true, std::string{t.empty() ? "anon" : t}, {}};
            };
        gateway::GatewayOptions opt;
        opt.port = 0;
        opt.concurrency_hint = 1;
        opt.tls_cert_file = o.cert;
        opt.tls_key_file = o.key;
        gw_ = std::make_unique<gateway::Gateway>(
            opt, cfg, store_,
            std::make_shared<spdlog::logger>("test",
                                             std::make_shared<spdlog::sinks::null_sink_mt>()));
        thread_ = std::thread([this] { gw_->run(); });
    }
    ~TestGateway() {
        gw_->drain();
        thread_.join();
    }
    std::string url(const char* scheme = "ws") const {
        return std::string{scheme} + "://127.0.0.1:" + std::to_string(gw_->port()) + "/";
    }
    std::uint16_t port() const { return gw_->port(); }
    std::atomic<int> identifies{0};

  private:
    store::MemoryStore store_;
    std::unique_ptr<gateway::Gateway> gw_;
    std::thread thread_;
};

ClientOptions options(const std::string& url) {
    ClientOptions o;
    o.url = url;
    o.token = "alice";
    o.backoff.initial = 50ms;
    o.backoff.max = 200ms;
    o.network_monitor = false;
    return o;
}

/// Collects values from callbacks and lets the test wait for a condition.
template <class T>
class Inbox {
  public:
    void push(T v) {
        std::lock_guard lk(mu_);
        items_.push_back(std::move(v));
        cv_.notify_all();
    }
    bool wait_size(std::size_t n, std::chrono::milliseconds timeout = 10s) {
        std::unique_lock lk(mu_);
        return cv_.wait_for(lk, timeout, [&] { return items_.size() >= n; });
    }
    std::vector<T> items() {
        std::lock_guard lk(mu_);
        return items_;
    }

  private:
    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<T> items_;
};

/// Waits until `pred(status)` holds (status changes arrive through on_status).
template <class C, class Pred>
bool wait_status(C& c, Pred pred, std::chrono::milliseconds timeout = 10s) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
        if (pred(c.status())) return true;
        (void)c.wait_connected(20ms);  // a bounded wait on the client's own condition variable
    }
    return pred(c.status());
}

/// A free loopback port with nothing listening (connections are refused).
std::uint16_t closed_port() {
    TestGateway g;
    return g.port();  // the gateway is gone when this returns
}

}  // namespace

TEST(Client, PublishesAreAckedAndDeliveredExactlyOnceInOrder) {
    TestGateway gw;
    Inbox<MessageReceived> got;  // outlives the clients that feed it
    Inbox<PublishOutcome> acks;
    Client sub{options(gw.url())};
    (void)sub.join("lobby", RoomOptions{[&](const MessageReceived& m) { got.push(m); }, {}, {}});
    ASSERT_TRUE(sub.wait_connected(10s)) << sub.status_line();

    Client pub{options(gw.url())};
    auto room = pub.join("lobby");
    for (int i = 0; i < 50; ++i)
        room.publish(std::to_string(i), [&](const PublishOutcome& r) { acks.push(r); });
    ASSERT_TRUE(acks.wait_size(50));
    ASSERT_TRUE(got.wait_size(50));
    auto a = acks.items();
    for (std::size_t i = 0; i < a.size(); ++i) {
        EXPECT_TRUE(a[i].ok()) << a[i].error.message();
        if (i > 0) {
            EXPECT_EQ(a[i].position.offset, a[i - 1].position.offset + 1);
        }
    }
    auto m = got.items();
    ASSERT_EQ(m.size(), 50u);
    for (std::size_t i = 0; i < m.size(); ++i)
        EXPECT_EQ(m[i].data, std::to_string(i));
    EXPECT_EQ(pub.pending(), 0u);
    EXPECT_EQ(pub.metrics().acked, 50u);
}

TEST(Client, InvalidOptionsAndRoomNamesAreRefusedClearly) {
    ClientOptions o = options("ftp://x/");
    EXPECT_THROW(Client{o}, std::invalid_argument);
    o = options("ws://127.0.0.1:1/");
    o.backoff.multiplier = 0.5;
    EXPECT_THROW(Client{o}, std::invalid_argument);
    Client c{options("ws://127.0.0.1:1/")};
    EXPECT_THROW(c.join(""), std::invalid_argument);
}

TEST(Client, CredentialsAreAskedOnEveryConnectAndRefreshedAfter4004) {
    std::atomic<int> valid_from{2};  // tokens "t0", "t1" are expired; t2+ are accepted
    TestGateway gw{GatewayOptionsForTest{[&](std::string_view t, std::int64_t) {
                                             const int n =
                                                 std::atoi(std::string{t.substr(1)}.c_str());
                                             if (n < valid_from)
                                                 return AuthResult{false, {}, "expired"};
                                             return AuthResult{true, "alice", {}};
                                         },
                                         {},
                                         {}}};
    auto o = options(gw.url());
    std::mutex mu;
    std::vector<bool> asked;  // the `refresh` flag of each request
    int next = 1;
    o.credentials = [&](bool refresh, CredentialsReply reply) {
        std::lock_guard lk(mu);
        asked.push_back(refresh);
        // A real application would fetch a token over HTTP, on another thread.
        std::thread([reply, t = "t" + std::to_string(next++)] { reply.ok(t); }).detach();
    };
    Client c{o};
    ASSERT_TRUE(c.wait_connected(10s)) << c.status_line();
    std::lock_guard lk(mu);
    ASSERT_EQ(asked.size(), 2u);  // t1 (expired) -> 4004 -> refresh -> t2
    EXPECT_FALSE(asked[0]);
    EXPECT_TRUE(asked[1]);
}

TEST(Client, RejectedCredentialsStopRetryingUntilRetryNow) {
    std::atomic<bool> accept{false};
    std::atomic<int> tries{0};
    TestGateway gw{GatewayOptionsForTest{
        [&](std::string_view, std::int64_t) {
            ++tries;
            return accept ? AuthResult{true, "alice", {}} : AuthResult{false, {}, "no"};
        },
        {},
        {}}};
    Client c{options(gw.url())};
    EXPECT_FALSE(c.wait_connected(10s));  // returns early: the client stopped for good
    auto s = c.status();
    EXPECT_EQ(s.state, ConnState::error);
    EXPECT_EQ(s.reason, StopReason::auth_failed);
    EXPECT_EQ(s.close_code, 4004);
    const int after_stop = tries.load();
    EXPECT_EQ(after_stop, 2);  // the attempt and one re-identify, then nothing
    accept = true;
    c.retry_now();
    ASSERT_TRUE(c.wait_connected(10s)) << c.status_line();
}

TEST(Client, ClosedAndReconnectedByTheApplication) {
    TestGateway gw;
    Client c{options(gw.url())};
    ASSERT_TRUE(c.wait_connected(10s));
    c.close();
    ASSERT_TRUE(wait_status(c, [](const ClientStatus& s) {
        return s.state == ConnState::disconnected && s.reason == StopReason::manual;
    }));
    EXPECT_FALSE(c.wait_connected(100ms));
    c.connect(true);
    EXPECT_TRUE(c.wait_connected(10s));
}

TEST(Client, ProbeMustAnswerBeforeTheSocketOpens) {
    TestGateway gw;
    auto o = options(gw.url());
    o.probe_url = "http://127.0.0.1:" + std::to_string(gw.port()) + "/healthz";
    {
        Client c{o};
        EXPECT_TRUE(c.wait_connected(10s)) << c.status_line();
    }
    o.probe_url = "http://127.0.0.1:" + std::to_string(closed_port()) + "/healthz";
    Client c{o};
    ASSERT_TRUE(wait_status(c, [](const ClientStatus& s) {
        return s.error == error::probe_failed;
    })) << c.status_line();
    EXPECT_EQ(c.metrics().connects, 0u);
    o.probe_url = "http://127.0.0.1:" + std::to_string(gw.port()) + "/no-such-page";
    Client d{o};
    ASSERT_TRUE(wait_status(d, [](const ClientStatus& s) {
        return s.error == error::probe_failed;
    })) << d.status_line();
    EXPECT_EQ(d.metrics().connects, 0u);
}

class TlsTest : public ::testing::Test {
  protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() /
               ("tether-client-tls-" + std::to_string(::getpid()) + "-" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::create_directories(dir_);
        cert_ = make_cert("local", "DNS:localhost,IP:127.0.0.1");
        gw_ = std::make_unique<TestGateway>(GatewayOptionsForTest{{}, cert_, key_of(cert_)});
    }
    void TearDown() override {
        gw_.reset();
        fs::remove_all(dir_);
    }
    /// A self-signed certificate for `san`; returns the certificate's path.
    std::string make_cert(const std::string& name, const std::string& san) {
        const auto cert = (dir_ / (name + ".pem")).string();
        const std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -keyout " +
                                key_of(cert) + " -out " + cert + " -days 1 -subj /CN=" + name +
                                " -addext subjectAltName=" + san + " 2>/dev/null";
        EXPECT_EQ(std::system(cmd.c_str()), 0);
        return cert;
    }
    static std::string key_of(const std::string& cert) { return cert + ".key"; }
    /// A self-signed certificate for 127.0.0.1 that expired yesterday (the
    /// openssl command cannot backdate one, so it is made with the library).
    std::string make_expired_cert(const std::string& name) {
        const auto cert = (dir_ / (name + ".pem")).string();
        EVP_PKEY* key = EVP_EC_gen("P-256");
        X509* x = X509_new();
        ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
        X509_gmtime_adj(X509_getm_notBefore(x), -2 * 86'400);
        X509_gmtime_adj(X509_getm_notAfter(x), -86'400);
        X509_set_pubkey(x, key);
        X509_NAME* subject = X509_get_subject_name(x);
        X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
                                   reinterpret_cast<const unsigned char*>(name.c_str()), -1, -1, 0);
        X509_set_issuer_name(x, subject);
        X509V3_CTX ctx;
        X509V3_set_ctx_nodb(&ctx);
        X509V3_set_ctx(&ctx, x, x, nullptr, nullptr, 0);
        X509_EXTENSION* san =
            X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, "IP:127.0.0.1");
        X509_add_ext(x, san, -1);
        X509_EXTENSION_free(san);
        EXPECT_GT(X509_sign(x, key, EVP_sha256()), 0);
        FILE* f = std::fopen(cert.c_str(), "w");
        PEM_write_X509(f, x);
        std::fclose(f);
        f = std::fopen(key_of(cert).c_str(), "w");
        PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
        std::fclose(f);
        X509_free(x);
        EVP_PKEY_free(key);
        return cert;
    }
    fs::path dir_;
    std::string cert_;
    std::unique_ptr<TestGateway> gw_;
};

TEST_F(TlsTest, VerifiedCertificateConnects) {
    auto o = options(gw_->url("wss"));
    o.ca_file = cert_;
    Client c{o};
    EXPECT_TRUE(c.wait_connected(10s)) << c.status_line();
}

/// A certificate that fails verification stops the client at once, with
/// its own stop reason and error code, after exactly one attempt.
template <class C>
void expect_certificate_stop(C& c) {
    ASSERT_TRUE(wait_status(c, [](const auto& s) {
        return s.state == ConnState::disconnected && s.reason == StopReason::certificate;
    })) << c.status_line();
    EXPECT_EQ(c.status().error, error::certificate_rejected) << c.status_line();
    EXPECT_EQ(c.metrics().attempts, 1u);
    EXPECT_EQ(c.metrics().connects, 0u);
    EXPECT_FALSE(c.wait_connected(10s));  // stopped for good: returns at once
}

TEST_F(TlsTest, UnknownIssuerStopsRetrying) {
    Client c{options(gw_->url("wss"))};  // the system store does not know our CA
    expect_certificate_stop(c);
}

TEST_F(TlsTest, WrongHostNameStopsRetrying) {
    // A trusted certificate, but for another name than the one we dial.
    const auto other = make_cert("other", "DNS:other.example");
    TestGateway gw{GatewayOptionsForTest{{}, other, key_of(other)}};
    auto o = options(gw.url("wss"));
    o.ca_file = other;
    Client c{o};
    expect_certificate_stop(c);
}

TEST_F(TlsTest, ExpiredCertificateStopsRetrying) {
    const auto old = make_expired_cert("expired");
    TestGateway gw{GatewayOptionsForTest{{}, old, key_of(old)}};
    auto o = options(gw.url("wss"));
    o.ca_file = old;
    Client c{o};
    expect_certificate_stop(c);
}

TEST_F(TlsTest, ReconnectingWebSocketStopsOnACertificateErrorToo) {
    ReconnectingWebSocketOptions o;
    o.url = gw_->url("wss");  // the system store does not know our CA
    o.subprotocol = "tether.v1";
    o.network_monitor = false;
    ReconnectingWebSocket ws{o};
    expect_certificate_stop(ws);
}

TEST_F(TlsTest, CertificateErrorsAreRetriedWhenAsked) {
    auto o = options(gw_->url("wss"));
    o.retry_certificate_errors = true;  // a deployment waiting for the certificate fix
    Client c{o};
    ASSERT_TRUE(wait_status(c, [](const ClientStatus& s) { return s.attempt >= 3; }))
        << c.status_line();
    EXPECT_EQ(c.status().state, ConnState::reconnecting);
    EXPECT_EQ(c.status().error, error::certificate_rejected);
}

TEST(Client, StateFileKeepsPendingMessagesAcrossARestart) {
    const auto path =
        (fs::temp_directory_path() / ("tether-state-" + std::to_string(::getpid()) + ".json"))
            .string();
    fs::remove(path);
    TestGateway gw;
    {
        // The first process never reaches a server: everything stays pending.
        auto o = options("ws://127.0.0.1:" + std::to_string(closed_port()) + "/");
        o.state_file = path;
        Client c{o};
        auto room = c.join("orders");
        for (int i = 0; i < 3; ++i)
            room.publish(std::to_string(i));
        ASSERT_TRUE(wait_status(c, [](const ClientStatus& s) { return s.pending == 3; }));
    }
    ASSERT_TRUE(fs::exists(path));
    auto o = options(gw.url());
    o.state_file = path;
    {
        // The second process, same state file, reachable server.
        Inbox<MessageReceived> got;
        Inbox<PublishOutcome> acks;
        Client sub{options(gw.url())};
        (void)sub.join("orders",
                       RoomOptions{[&](const MessageReceived& m) { got.push(m); }, {}, {}});
        ASSERT_TRUE(sub.wait_connected(10s));
        Client c{o};
        // One state file, one client: a second one is refused.
        EXPECT_THROW(Client{o}, std::invalid_argument);
        c.on_publish([&](const PublishOutcome& r) { acks.push(r); });
        ASSERT_TRUE(acks.wait_size(3)) << c.status_line();
        ASSERT_TRUE(got.wait_size(3));
        auto m = got.items();
        EXPECT_EQ(m[0].data, "0");
        EXPECT_EQ(m[1].data, "1");
        EXPECT_EQ(m[2].data, "2");
        ASSERT_TRUE(wait_status(c, [](const ClientStatus& s) { return s.pending == 0; }));
    }

    // A corrupt state file is a clear error, not a silent fresh start.
    {
        std::FILE* f = std::fopen(path.c_str(), "w");
        std::fputs("{not json", f);
        std::fclose(f);
    }
    EXPECT_THROW(Client{o}, std::invalid_argument);  // names the file (state_file.cpp)
    fs::remove(path);
    fs::remove(path + ".lock");
}

TEST(ReconnectingWebSocket, AuthFirstThenSubscriptionsAgainstARealServer) {
    // The tether gateway as "any server": IDENTIFY is the auth message, READY
    // the reply the validator wants, JOIN the subscription.
    TestGateway gw;
    ReconnectingWebSocketOptions o;
    o.url = gw.url();
    o.subprotocol = "tether.v1";
    o.network_monitor = false;
    o.backoff.initial = 50ms;
    o.auth = [] {
        return SocketMessage{
            R"({"op":"IDENTIFY","d":{"token":"bob","client":{"name":"raw","version":"1"}}})"};
    };
    o.auth_validator = [](const SocketMessage& m) -> std::optional<bool> {
        if (m.data.find("\"HELLO\"") != std::string::npos) return std::nullopt;  // not the reply
        return m.data.find("\"READY\"") != std::string::npos;
    };
    o.subscriptions = {SocketMessage{R"({"op":"JOIN","d":{"room":"raw"}})"}};
    Inbox<std::string> got;  // declared first: outlives the socket
    ReconnectingWebSocket ws{o};
    ws.on_message([&](const SocketMessage& m) { got.push(m.data); });
    ASSERT_TRUE(ws.wait_connected(10s)) << ws.status_line();
    // The server's greeting (not the auth reply) is data; READY is consumed by
    // the validator; the subscription's answer follows.
    ASSERT_TRUE(got.wait_size(2));
    EXPECT_NE(got.items()[0].find("HELLO"), std::string::npos) << got.items()[0];
    EXPECT_NE(got.items()[1].find("JOINED"), std::string::npos) << got.items()[1];
    // A PUBLISH through the raw socket comes back as an ACK and an EVENT.
    ws.send(R"({"op":"PUBLISH","d":{"id":"r1","room":"raw","data":{"x":1}}})");
    ASSERT_TRUE(got.wait_size(4));
    EXPECT_EQ(ws.metrics().auth_failures, 0u);
}

TEST(ReconnectingWebSocket, RejectedAuthReplyStopsRetrying) {
    TestGateway gw{GatewayOptionsForTest{[](std::string_view, std::int64_t) {
                                             return AuthResult{false, {}, "no"};
                                         },
                                         {},
                                         {}}};
    ReconnectingWebSocketOptions o;
    o.url = gw.url();
    o.subprotocol = "tether.v1";
    o.network_monitor = false;
    o.auth = [] { return SocketMessage{R"({"op":"IDENTIFY","d":{"token":"x"}})"}; };
    o.auth_validator = [](const SocketMessage& m) -> std::optional<bool> {
        if (m.data.find("\"HELLO\"") != std::string::npos) return std::nullopt;
        return m.data.find("\"READY\"") != std::string::npos;
    };
    ReconnectingWebSocket ws{o};
    EXPECT_FALSE(ws.wait_connected(10s));
    // The server answers a bad IDENTIFY by closing with 4004, a fatal code.
    EXPECT_EQ(ws.status().reason, StopReason::fatal);
    EXPECT_EQ(ws.status().close_code, 4004);
    EXPECT_EQ(ws.metrics().attempts, 1u);
}

TEST(Client, RunsOnTheApplicationsExecutor) {
    TestGateway gw;
    boost::asio::io_context io;
    std::promise<void> connected;
    auto c = std::make_unique<Client>(io.get_executor(), options(gw.url()));
    std::atomic<bool> done{false};
    c->on_status([&](const ClientStatus& s) {
        if (s.state == ConnState::connected && !done.exchange(true)) connected.set_value();
    });
    std::thread t([&] { io.run_for(10s); });
    EXPECT_EQ(connected.get_future().wait_for(10s), std::future_status::ready);
    c.reset();  // closes; no callback after this point
    io.stop();
    t.join();
}

// ---- a close frame is authoritative ---------------------------------------------------

/// A hand-made WebSocket server that answers the upgrade, sends one close
/// frame and resets the connection at once (SO_LINGER 0), without waiting
/// for the close handshake: the client's read of the frame and the reset
/// race, as they do when a server process is killed right after it decided
/// to refuse someone.
class CloseThenResetServer {
  public:
    CloseThenResetServer(std::uint16_t code, std::string reason)
        : acceptor_(io_, {boost::asio::ip::make_address("127.0.0.1"), 0}),
          code_(code),
          reason_(std::move(reason)) {
        accept();
        thread_ = std::thread([this] { io_.run(); });
    }
    ~CloseThenResetServer() {
        boost::asio::post(io_, [this] { acceptor_.close(); });
        thread_.join();
    }
    std::string url() const {
        return "ws://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()) + "/";
    }
    int accepted() const { return accepted_.load(); }

  private:
    using tcp = boost::asio::ip::tcp;
    void accept() {
        acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket s) {
            if (ec) return;
            ++accepted_;
            serve(std::move(s));
            accept();
        });
    }
    void serve(tcp::socket s) {
        // Blocking is fine here: one client at a time, on the server's thread.
        boost::asio::streambuf buf;
        boost::system::error_code ec;
        boost::asio::read_until(s, buf, "\r\n\r\n", ec);
        if (ec) return;
        std::string req{boost::asio::buffers_begin(buf.data()),
                        boost::asio::buffers_end(buf.data())};
        const auto at = req.find("Sec-WebSocket-Key: ");
        ASSERT_NE(at, std::string::npos);
        const auto key = req.substr(at + 19, req.find("\r\n", at) - at - 19);
        std::string in = key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
        unsigned char digest[20];
        EVP_Digest(in.data(), in.size(), digest, nullptr, EVP_sha1(), nullptr);
        unsigned char accept[32] = {};
        EVP_EncodeBlock(accept, digest, 20);
        std::string answer =
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Protocol: tether.v1\r\n"
            "Sec-WebSocket-Accept: " +
            std::string{reinterpret_cast<char*>(accept)} + "\r\n\r\n";
        std::string frame{'\x88', static_cast<char>(2 + reason_.size()),
                          static_cast<char>(code_ >> 8), static_cast<char>(code_ & 0xff)};
        frame += reason_;
        boost::asio::write(s, boost::asio::buffer(answer + frame), ec);
        s.set_option(boost::asio::socket_base::linger(true, 0), ec);
        s.close(ec);  // RST: no close handshake
    }
    boost::asio::io_context io_;
    tcp::acceptor acceptor_;
    std::uint16_t code_;
    std::string reason_;
    std::atomic<int> accepted_{0};
    std::thread thread_;
};

TEST(Client, AFatalCloseFrameIsHonouredEvenWhenTheConnectionIsResetRightAfter) {
    CloseThenResetServer server{4013, "not permitted"};
    Client c{options(server.url())};
    ASSERT_TRUE(wait_status(c, [](const ClientStatus& s) {
        return s.state == ConnState::disconnected && s.reason == StopReason::fatal;
    })) << c.status_line();
    EXPECT_EQ(c.status().close_code, 4013);
    EXPECT_EQ(c.status().close_reason, "not permitted");
    EXPECT_EQ(c.metrics().attempts, 1u);
    EXPECT_EQ(server.accepted(), 1);
}

TEST(ReconnectingWebSocket, AFatalCloseFrameIsHonouredEvenWhenTheConnectionIsResetRightAfter) {
    CloseThenResetServer server{4004, "authentication failed"};
    ReconnectingWebSocketOptions o;
    o.url = server.url();
    o.subprotocol = "tether.v1";
    o.network_monitor = false;
    o.backoff.initial = 50ms;
    ReconnectingWebSocket ws{o};
    ASSERT_TRUE(wait_status(ws, [](const SocketStatus& s) {
        return s.state == ConnState::disconnected && s.reason == StopReason::fatal;
    })) << ws.status_line();
    EXPECT_EQ(ws.status().close_code, 4004);
    EXPECT_EQ(ws.metrics().attempts, 1u);
    EXPECT_EQ(server.accepted(), 1);
}

// ---- no callback is dropped -------------------------------------------------------------

TEST(Client, PublishOnADestroyedClientReportsClientClosed) {
    Room room;
    {
        Client c{options("ws://127.0.0.1:" + std::to_string(closed_port()) + "/")};
        room = c.join("r");
    }
    std::optional<PublishOutcome> got;
    room.publish("1", [&](const PublishOutcome& r) { got = r; });  // runs at once, here
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(got->error, error::client_closed);
    EXPECT_FALSE(room.leave());
    EXPECT_FALSE(room.on_message([](const MessageReceived&) {}));
}

TEST(Client, PendingPublishesAreAnsweredWhenTheClientIsDestroyed) {
    Inbox<PublishOutcome> outcomes;
    {
        Client c{options("ws://127.0.0.1:" + std::to_string(closed_port()) + "/")};
        auto room = c.join("r");
        for (int i = 0; i < 3; ++i)
            room.publish(std::to_string(i), [&](const PublishOutcome& r) { outcomes.push(r); });
        ASSERT_TRUE(wait_status(c, [](const ClientStatus& s) { return s.pending == 3; }));
    }
    // Exactly once each, before the destructor returned.
    auto got = outcomes.items();
    ASSERT_EQ(got.size(), 3u);
    for (const auto& r : got) {
        EXPECT_EQ(r.error, error::client_closed);
        EXPECT_TRUE(r.possibly_delivered);
    }
}
