// The generic reconnecting-socket core driven in virtual time: the test plays
// the socket and the server and checks exactly what the core asks for.

#include <tether/core/close_codes.hpp>
#include <tether/core/socket_core.hpp>

#include "core_harness.hpp"

#include <gtest/gtest.h>

#include <variant>

using namespace std::chrono_literals;
using namespace tether;
using Kind = Transmit::Kind;

namespace {

struct Harness : test::CoreHarness<SocketCore, SocketEvent> {
    explicit Harness(SocketConfig c = {}) : CoreHarness(std::move(c), from_ms(5'000)) {}

    Transmit take() {
        EXPECT_FALSE(tx.empty());
        if (tx.empty()) return {};
        auto t = tx.front();
        tx.erase(tx.begin());
        return t;
    }
    /// Runs timers until an open appears; returns its connection id.
    std::uint64_t next_open(duration limit = 120s) { return expect_open(limit); }
    std::vector<std::string> sent_texts() {
        std::vector<std::string> out;
        for (auto& t : tx)
            if (t.kind == Kind::send) out.push_back(t.data);
        return out;
    }
};

SocketConfig base() {
    SocketConfig c;
    c.backoff.jitter_ratio = 0;
    return c;
}

}  // namespace

TEST(SocketCore, AuthFirstThenSubscriptionsThenQueueOnEveryConnect) {
    auto cfg = base();
    cfg.auth_message = SocketMessage{R"({"type":"auth","key":"k"})"};
    cfg.await_auth_reply = true;
    cfg.subscriptions = {SocketMessage{"sub trades"}, SocketMessage{"sub orders"}};
    Harness h(cfg);
    EXPECT_TRUE(h.core.send(h.now, SocketMessage{"early"}));  // queued before connect
    h.core.connect(h.now);
    h.drain();
    auto c = h.next_open();
    EXPECT_EQ(h.status().state, ConnState::connecting);
    h.core.handle_open(h.now, c);
    h.drain();
    EXPECT_EQ(h.sent_texts(), (std::vector<std::string>{R"({"type":"auth","key":"k"})"}));
    EXPECT_TRUE(h.core.awaiting_auth(c));
    h.tx.clear();
    h.core.handle_message(h.now, c, SocketMessage{"auth ok"});
    h.core.handle_auth_reply(h.now, c, true);
    h.drain();
    EXPECT_EQ(h.sent_texts(), (std::vector<std::string>{"sub trades", "sub orders", "early"}));
    EXPECT_EQ(h.status().state, ConnState::connected);
    h.tx.clear();

    // The link drops: everything is re-sent in the same order on the next connect.
    h.closed(c, 1006, "");
    h.drain();
    EXPECT_EQ(h.status().state, ConnState::reconnecting);
    EXPECT_TRUE(h.core.send(h.now, SocketMessage{"while away"}));
    c = h.next_open();
    h.core.handle_open(h.now, c);
    h.core.handle_auth_reply(h.now, c, true);
    h.drain();
    EXPECT_EQ(h.sent_texts(), (std::vector<std::string>{R"({"type":"auth","key":"k"})",
                                                        "sub trades", "sub orders", "while away"}));
}

TEST(SocketCore, RejectedAuthStopsRetryingUntilRetryNow) {
    auto cfg = base();
    cfg.auth_message = SocketMessage{"auth"};
    cfg.await_auth_reply = true;
    Harness h(cfg);
    h.core.connect(h.now);
    h.drain();
    auto c = h.next_open();
    h.core.handle_open(h.now, c);
    h.core.handle_auth_reply(h.now, c, false, "bad key");
    h.drain();
    EXPECT_EQ(h.status().state, ConnState::error);
    EXPECT_EQ(h.status().reason, StopReason::auth_failed);
    EXPECT_EQ(h.core.metrics().auth_failures, 1u);
    h.tx.clear();
    h.advance(10min);
    for (auto& t : h.tx)
        EXPECT_NE(t.kind, Kind::open);
    h.core.retry_now(h.now);
    h.drain();
    EXPECT_NE(h.next_open(1ms), 0u);
}

TEST(SocketCore, MissingPongClosesAndReconnectsWithinBackoff) {
    auto cfg = base();
    cfg.ping_interval = 1s;
    cfg.pong_timeout = 500ms;
    Harness h(cfg);
    h.core.connect(h.now);
    h.drain();
    auto c = h.next_open();
    h.core.handle_open(h.now, c);
    h.drain();
    h.advance(1s);
    auto ping = h.take();
    EXPECT_EQ(ping.kind, Kind::ping);
    EXPECT_EQ(ping.data, "ping");
    h.advance(100ms);
    h.core.handle_pong(h.now, c);  // answered: the link is alive
    h.drain();
    ASSERT_TRUE(h.core.metrics().last_rtt);
    EXPECT_EQ(*h.core.metrics().last_rtt, 100ms);
    // Next ping is never answered: closed with 4000 at ping + timeout.
    const auto ping_at = h.now + 900ms;
    h.advance(900ms);
    EXPECT_EQ(h.take().kind, Kind::ping);
    h.advance(499ms);
    EXPECT_EQ(h.status().state, ConnState::connected);
    h.advance(1ms);
    auto close = h.take();
    EXPECT_EQ(close.kind, Kind::close);
    EXPECT_EQ(close.code, close_code::unknown_error);
    EXPECT_EQ(close.reason, "pong timeout");
    EXPECT_EQ(h.now, ping_at + 500ms);
    EXPECT_EQ(h.status().state, ConnState::reconnecting);
    // Reconnect after the first backoff delay (500 ms without jitter).
    const auto lost_at = h.now;
    h.next_open();
    EXPECT_EQ(h.now - lost_at, 500ms);
}

TEST(SocketCore, AppLevelPingIsATextFrameAndTheDriverMatchesPongs) {
    auto cfg = base();
    cfg.liveness = LivenessMode::app_message;
    cfg.ping_payload = R"({"op":"ping"})";
    cfg.ping_interval = 2s;
    Harness h(cfg);
    h.core.connect(h.now);
    h.drain();
    auto c = h.next_open();
    h.core.handle_open(h.now, c);
    h.drain();
    h.advance(2s);
    auto t = h.take();
    EXPECT_EQ(t.kind, Kind::send);
    EXPECT_EQ(t.data, R"({"op":"ping"})");
    h.core.handle_pong(h.now, c);
    h.advance(20s);
    EXPECT_EQ(h.status().state, ConnState::reconnecting);  // later pings unanswered
    EXPECT_EQ(h.core.metrics().liveness_timeouts, 1u);
}

TEST(SocketCore, FatalCloseCodeOrReasonStopsRetrying) {
    auto cfg = base();
    cfg.fatal_reasons = {"banned"};
    Harness h(cfg);
    h.core.connect(h.now);
    h.drain();
    auto c = h.next_open();
    h.core.handle_open(h.now, c);
    h.closed(c, 4004, "bad token");
    h.drain();
    EXPECT_EQ(h.status().state, ConnState::disconnected);
    EXPECT_EQ(h.status().reason, StopReason::fatal);
    EXPECT_EQ(h.status().close_code, 4004);
    h.tx.clear();
    h.advance(10min);
    EXPECT_TRUE(h.tx.empty());
    h.core.retry_now(h.now);
    h.drain();
    c = h.next_open(1ms);
    h.core.handle_open(h.now, c);
    h.closed(c, 1000, "you are banned");
    h.drain();
    EXPECT_EQ(h.status().reason, StopReason::fatal);
}

TEST(SocketCore, OfflinePausesAndOnlineAttemptsAtOnce) {
    Harness h(base());
    h.core.connect(h.now);
    h.drain();
    auto c = h.next_open();
    h.core.handle_open(h.now, c);
    h.drain();
    h.core.set_online(h.now, false);
    h.drain();
    auto close = h.take();
    EXPECT_EQ(close.kind, Kind::close);
    EXPECT_EQ(close.code, close_code::going_away);
    EXPECT_EQ(h.status().reason, StopReason::offline);
    h.closed(c, 1001, "");
    h.drain();
    h.tx.clear();
    h.advance(1h);
    for (auto& t : h.tx)
        EXPECT_NE(t.kind, Kind::open) << "attempt while offline";
    h.tx.clear();
    h.core.set_online(h.now, true);
    h.drain();
    EXPECT_NE(h.next_open(0ms), 0u);  // immediately, no backoff wait
}

TEST(SocketCore, MaxAttemptsStopsWithAReason) {
    auto cfg = base();
    cfg.backoff.attempts_max = 2;
    Harness h(cfg);
    h.core.connect(h.now);
    h.drain();
    for (int i = 0; i < 3; ++i) {
        auto c = h.next_open();
        h.closed(c, 1006, "refused");
        h.drain();
    }
    EXPECT_EQ(h.status().state, ConnState::disconnected);
    EXPECT_EQ(h.status().reason, StopReason::max_attempts);
    EXPECT_EQ(h.core.metrics().attempts, 3u);
}

TEST(SocketCore, QueueBoundsRejectOrDropOldestAndReport) {
    auto cfg = base();
    cfg.queue_count_max = 2;
    {
        Harness h(cfg);
        EXPECT_TRUE(h.core.send(h.now, {"a"}));
        EXPECT_TRUE(h.core.send(h.now, {"b"}));
        EXPECT_EQ(h.core.send(h.now, {"c"}).error(), error::queue_full);
        EXPECT_EQ(h.status().queued, 2u);
    }
    cfg.overflow = OverflowPolicy::drop_oldest;
    cfg.message_bytes_max = 4;
    Harness h(cfg);
    EXPECT_TRUE(h.core.send(h.now, {"a"}));
    EXPECT_TRUE(h.core.send(h.now, {"b"}));
    EXPECT_TRUE(h.core.send(h.now, {"c"}));
    EXPECT_EQ(h.core.send(h.now, {"too long"}).error(), error::too_large);
    h.drain();
    ASSERT_FALSE(h.events.empty());
    bool dropped_a = false;
    for (auto& e : h.events)
        if (auto* d = std::get_if<SocketDropped>(&e))
            dropped_a = d->message.data == "a" && d->error == error::dropped;
    EXPECT_TRUE(dropped_a);
    EXPECT_EQ(h.core.metrics().dropped, 2u);
    h.core.close(h.now, true);
    h.drain();
    EXPECT_EQ(h.status().queued, 0u);
}

TEST(SocketCore, StaleSocketsAreAbortedAndCannotDriveTheState) {
    Harness h(base());
    h.core.connect(h.now);
    h.drain();
    auto c = h.next_open();
    h.core.handle_open(h.now, c);
    h.closed(c, 1006, "");
    h.drain();
    h.core.handle_open(h.now, c);  // a late open of the dead socket
    h.drain();
    auto t = h.take();
    EXPECT_EQ(t.kind, Kind::abort);
    EXPECT_EQ(t.conn, c);
    h.core.handle_message(h.now, c, {"late"});
    h.drain();
    EXPECT_EQ(h.core.metrics().received, 0u);
}

TEST(SocketCore, InvalidConfigIsRejected) {
    SocketConfig c;
    c.backoff.initial = -1ms;
    EXPECT_THROW(SocketCore{c}, std::invalid_argument);
    EXPECT_EQ(c.validate().error().code, error::invalid_config);
    SocketConfig d;
    d.ping_payload = std::string(200, 'x');
    EXPECT_EQ(d.validate().error().code, error::invalid_config);
    EXPECT_TRUE(SocketConfig{}.validate());
}
