// The client core driven directly in virtual time: the test plays the server
// by feeding protocol frames and reads back exactly what the core transmits.
// Whole fault schedules are covered by the simulator (tests/sim); these tests
// pin down individual rules with exact expectations.

#include <tether/core/client_core.hpp>
#include <tether/core/close_codes.hpp>

#include "core_harness.hpp"

#include <gtest/gtest.h>

#include <variant>

using namespace std::chrono_literals;
using namespace tether;
namespace p = tether::proto;

namespace {

class Harness : public test::CoreHarness<ClientCore, ClientEvent> {
  public:
    explicit Harness(ClientConfig c = {}) : CoreHarness(std::move(c), from_ms(1'000)) {}

    /// The next frame of type M; heartbeats in between are skipped unless M is one.
    template <class M>
    M expect_sent() {
        Transmit t = next_tx();
        auto r = p::decode(t.data);
        while (!std::is_same_v<M, p::Heartbeat> && t.kind == Transmit::Kind::send && r &&
               std::holds_alternative<p::Heartbeat>(*r)) {
            t = next_tx();
            r = p::decode(t.data);
        }
        EXPECT_EQ(t.kind, Transmit::Kind::send);
        EXPECT_TRUE(r) << t.data;
        if (!r || !std::holds_alternative<M>(*r)) {
            ADD_FAILURE() << "expected another message, got " << t.data;
            return M{};
        }
        return std::get<M>(*r);
    }
    void recv(std::uint64_t conn, const p::Message& m) {
        core.handle_message(now, conn, p::encode(m));
        drain();
    }
    /// Open -> HELLO -> IDENTIFY -> READY (or RESUME -> RESUMED when the
    /// client still holds a session); returns the connection id.
    std::uint64_t establish(std::string session = "s1") {
        const auto c = expect_open();
        open(c);
        recv(c, p::Hello{10'000, 60'000, "srv", "1", "n1"});
        Transmit t = next_tx();
        auto r = p::decode(t.data);
        EXPECT_TRUE(r) << t.data;
        if (r && std::holds_alternative<p::Resume>(*r))
            recv(c, p::Resumed{std::get<p::Resume>(*r).session_id, {}});
        else
            recv(c, p::Ready{session, "rt-" + session, "alice"});
        return c;
    }
};

ClientConfig no_jitter() {
    ClientConfig c;
    c.backoff.jitter_ratio = 0;
    return c;
}

}  // namespace

TEST(ClientCore, ReconnectOrderAuthThenRejoinThenReplayThenOutbox) {
    Harness h;
    EXPECT_TRUE(h.core.join(h.now, "lobby"));
    EXPECT_TRUE(h.core.publish(h.now, "lobby", R"({"queued":1})"));
    h.core.connect(h.now);
    h.drain();
    EXPECT_EQ(h.status().state, ConnState::connecting);
    const auto c = h.expect_open();
    h.open(c);
    h.recv(c, p::Hello{10'000, 60'000, "srv", "1", "n1"});
    auto id = h.expect_sent<p::Identify>();
    EXPECT_EQ(id.client.name, "tether-cpp");
    EXPECT_TRUE(h.tx.empty());  // nothing before the answer to IDENTIFY
    h.recv(c, p::Ready{"s1", "rt", "alice"});
    auto join = h.expect_sent<p::Join>();
    EXPECT_EQ(join.room, "lobby");
    EXPECT_FALSE(join.since);
    EXPECT_TRUE(h.tx.empty());  // the outbox waits for the rejoin
    EXPECT_EQ(h.status().phase, Phase::joining);
    h.recv(c, p::Joined{"lobby", {1, 2}, true});
    auto pub = h.expect_sent<p::Publish>();
    EXPECT_EQ(pub.data, R"({"queued":1})");
    EXPECT_EQ(h.status().state, ConnState::connected);
    EXPECT_EQ(h.status().phase, Phase::sending);
    EXPECT_EQ(h.status().sending_total, 1u);
    h.recv(c, p::Ack{pub.id, "lobby", 1, 3});
    EXPECT_EQ(h.status().phase, Phase::none);
    EXPECT_EQ(h.core.pending(), 0u);
    ASSERT_EQ(h.events_of<PublishAcked>().size(), 1u);
    EXPECT_EQ(h.events_of<PublishAcked>()[0].position, (p::StreamPosition{1, 3}));

    // Drop: resume with the position, replay is delivered before `connected`.
    h.closed(c, 1006);
    EXPECT_EQ(h.status().state, ConnState::reconnecting);
    EXPECT_TRUE(h.core.publish(h.now, "lobby", R"({"while":"away"})"));
    const auto c2 = h.expect_open();
    h.open(c2);
    h.recv(c2, p::Hello{10'000, 60'000, "srv", "1", "n1"});
    auto resume = h.expect_sent<p::Resume>();
    EXPECT_EQ(resume.session_id, "s1");
    ASSERT_EQ(resume.rooms.size(), 1u);
    EXPECT_EQ(resume.rooms[0].position, (p::StreamPosition{1, 2}));
    h.recv(c2, p::Resumed{"s1", {}});
    h.recv(c2, p::Joined{"lobby", {1, 4}, true});
    EXPECT_EQ(h.status().phase, Phase::catching_up);
    EXPECT_TRUE(h.tx.empty());
    h.recv(c2, p::Event{"lobby", {1, 3}, "3"});
    EXPECT_TRUE(h.tx.empty());
    h.recv(c2, p::Event{"lobby", {1, 4}, "4"});
    EXPECT_EQ(h.expect_sent<p::Publish>().data, R"({"while":"away"})");
    EXPECT_EQ(h.status().state, ConnState::connected);
    auto msgs = h.events_of<MessageReceived>();
    ASSERT_EQ(msgs.size(), 2u);
    EXPECT_TRUE(msgs[0].replayed);
    EXPECT_EQ(h.core.metrics().resumes_ok, 1u);
    EXPECT_EQ(h.core.metrics().reconnects, 1u);
}

TEST(ClientCore, DuplicatesDroppedAndGapsNeverSkipped) {
    Harness h;
    EXPECT_TRUE(h.core.join(h.now, "r"));
    h.core.connect(h.now);
    h.drain();
    const auto c = h.establish();
    h.expect_sent<p::Join>();
    h.recv(c, p::Joined{"r", {1, 0}, true});
    h.recv(c, p::Event{"r", {1, 1}, "1"});
    h.recv(c, p::Event{"r", {1, 1}, "1"});  // duplicate
    EXPECT_EQ(h.events_of<MessageReceived>().size(), 1u);
    EXPECT_EQ(h.core.metrics().duplicates, 1u);
    h.recv(c, p::Event{"r", {1, 3}, "3"});  // gap: 2 is missing
    auto close = h.next_tx();
    EXPECT_EQ(close.kind, Transmit::Kind::close);
    EXPECT_EQ(close.code, close_code::unknown_error);
    EXPECT_NE(close.reason.find("gap"), std::string::npos);
    EXPECT_EQ(h.events_of<MessageReceived>().size(), 1u);  // 3 was not shown
    // The resume asks for everything after 1.
    const auto c2 = h.expect_open();
    h.open(c2);
    h.recv(c2, p::Hello{10'000, 60'000, "", "", ""});
    EXPECT_EQ(h.expect_sent<p::Resume>().rooms.at(0).position, (p::StreamPosition{1, 1}));
}

TEST(ClientCore, HistoryLossIsReportedNeverHidden) {
    Harness h;
    EXPECT_TRUE(h.core.join(h.now, "r"));
    h.core.connect(h.now);
    h.drain();
    auto c = h.establish();
    h.expect_sent<p::Join>();
    h.recv(c, p::Joined{"r", {1, 5}, true});
    h.closed(c, 1006);
    c = h.expect_open();
    h.open(c);
    h.recv(c, p::Hello{10'000, 60'000, "", "", ""});
    h.expect_sent<p::Resume>();
    h.recv(c, p::InvalidSession{false});  // session gone: identify, rejoin with position
    h.expect_sent<p::Identify>();
    h.recv(c, p::Ready{"s2", "rt2", "alice"});
    EXPECT_EQ(h.expect_sent<p::Join>().since, (p::StreamPosition{1, 5}));
    h.recv(c, p::Joined{"r", {2, 7}, false});  // the store lost the stream
    auto lost = h.events_of<HistoryLost>();
    ASSERT_EQ(lost.size(), 1u);
    EXPECT_EQ(lost[0].last_delivered, (p::StreamPosition{1, 5}));
    EXPECT_EQ(lost[0].resumed_at, (p::StreamPosition{2, 7}));
    h.recv(c, p::Event{"r", {2, 8}, "8"});
    EXPECT_EQ(h.events_of<MessageReceived>().back().position, (p::StreamPosition{2, 8}));
    EXPECT_EQ(h.core.metrics().resumes_failed, 1u);
}

TEST(ClientCore, HeartbeatTimeoutClosesWith4000AndBacksOff) {
    Harness h{no_jitter()};
    h.core.connect(h.now);
    h.drain();
    const auto c = h.establish();
    auto hb = h.expect_sent<p::Heartbeat>();  // first one jittered within the interval
    h.now += 15ms;
    h.recv(c, p::HeartbeatAck{hb.ts});
    ASSERT_EQ(h.events_of<LatencySample>().size(), 1u);
    EXPECT_EQ(h.events_of<LatencySample>()[0].rtt, 15ms);
    h.expect_sent<p::Heartbeat>();  // unanswered: the link went half-open
    const auto sent_at = h.now;
    auto close = h.next_tx();
    EXPECT_EQ(close.kind, Transmit::Kind::close);
    EXPECT_EQ(close.code, 4000);
    EXPECT_EQ(close.reason, "heartbeat timeout");
    EXPECT_EQ(h.now - sent_at, 10s);  // ack timeout defaults to the interval
    EXPECT_EQ(h.status().state, ConnState::reconnecting);
    EXPECT_EQ(*h.status().next_retry_at - h.now, 500ms);
    // The close handshake never completes on a half-open link: torn down.
    auto abort = h.next_tx();
    EXPECT_EQ(abort.kind, Transmit::Kind::abort);
    EXPECT_EQ(abort.conn, c);
    EXPECT_EQ(h.expect_open(), c + 1);
}

TEST(ClientCore, CloseThatNeverCompletesIsTornDownAfterCloseTimeout) {
    Harness h;
    h.core.connect(h.now);
    h.drain();
    const auto c = h.establish();
    h.core.close(h.now);
    h.drain();
    auto close = h.next_tx();
    EXPECT_EQ(close.kind, Transmit::Kind::close);
    EXPECT_EQ(close.code, 1000);
    const auto t0 = h.now;
    auto abort = h.next_tx();
    EXPECT_EQ(abort.kind, Transmit::Kind::abort);
    EXPECT_EQ(abort.conn, c);
    EXPECT_EQ(h.now - t0, 2s);
    EXPECT_EQ(h.status().state, ConnState::disconnected);
    EXPECT_EQ(h.status().reason, StopReason::manual);
    EXPECT_FALSE(h.core.poll_timeout());  // closed: nothing scheduled, no retries
}

TEST(ClientCore, FatalCloseStopsUntilTheApplicationRetries) {
    Harness h;
    h.core.connect(h.now);
    h.drain();
    const auto c = h.establish();
    h.closed(c, 4013, "not permitted");
    EXPECT_EQ(h.status().state, ConnState::disconnected);
    EXPECT_EQ(h.status().reason, StopReason::fatal);
    EXPECT_EQ(h.status().close_code, 4013);
    h.advance(10min);
    EXPECT_TRUE(h.tx.empty());
    h.core.retry_now(h.now);
    h.drain();
    EXPECT_EQ(h.next_tx().kind, Transmit::Kind::open);
}

TEST(ClientCore, FatalReasonIsConfigurable) {
    ClientConfig cfg;
    cfg.fatal_reasons = {"banned"};
    Harness h{cfg};
    h.core.connect(h.now);
    h.drain();
    const auto c = h.establish();
    h.closed(c, 4000, "you are banned");
    EXPECT_EQ(h.status().reason, StopReason::fatal);
}

TEST(ClientCore, AuthFailureReidentifiesOnceWithFreshCredentialsThenErrors) {
    ClientConfig cfg;
    cfg.dynamic_credentials = true;
    Harness h{cfg};
    h.core.connect(h.now);
    h.drain();
    ASSERT_EQ(h.events_of<CredentialsNeeded>().size(), 1u);
    EXPECT_FALSE(h.events_of<CredentialsNeeded>()[0].refresh);
    h.core.provide_credentials(h.now, "old");
    h.drain();
    auto c = h.establish();
    h.closed(c, 4004, "token expired");
    // Escalation: at once, asking for a fresh token, and IDENTIFY (not RESUME).
    ASSERT_EQ(h.events_of<CredentialsNeeded>().size(), 2u);
    EXPECT_TRUE(h.events_of<CredentialsNeeded>()[1].refresh);
    EXPECT_EQ(h.status().state, ConnState::reconnecting);
    h.core.provide_credentials(h.now, "fresh");
    h.drain();
    c = h.expect_open();
    h.open(c);
    h.recv(c, p::Hello{10'000, 60'000, "", "", ""});
    EXPECT_EQ(h.expect_sent<p::Identify>().token, "fresh");
    h.closed(c, 4004, "still bad");  // the one re-identify failed
    EXPECT_EQ(h.status().state, ConnState::error);
    EXPECT_EQ(h.status().reason, StopReason::auth_failed);
    h.advance(10min);
    EXPECT_TRUE(h.tx.empty());
    EXPECT_EQ(h.events_of<CredentialsNeeded>().size(), 2u);
    h.core.retry_now(h.now);  // the application's "Reconnect" button
    h.drain();
    EXPECT_EQ(h.events_of<CredentialsNeeded>().size(), 3u);
}

TEST(ClientCore, MaxAttemptsEscalatesThenErrors) {
    ClientConfig cfg = no_jitter();
    cfg.backoff.attempts_max = 2;
    Harness h{cfg};
    h.core.connect(h.now);
    h.drain();
    for (int i = 0; i < 3; ++i)
        h.closed(h.expect_open(), 1006, "refused");  // first try + 2 retries
    // Exhausted: one immediate re-identify...
    const auto c = h.expect_open();
    EXPECT_EQ(h.status().state, ConnState::reconnecting);
    h.closed(c, 1006, "refused");
    // ...then error until the application retries.
    EXPECT_EQ(h.status().state, ConnState::error);
    EXPECT_EQ(h.status().reason, StopReason::max_attempts);
    EXPECT_FALSE(h.core.poll_timeout());
}

TEST(ClientCore, OfflinePausesAndOnlineReconnectsAtOnceWithResetBackoff) {
    Harness h{no_jitter()};
    h.core.connect(h.now);
    h.drain();
    const auto c = h.establish();
    h.core.set_online(h.now, false);
    h.drain();
    auto close = h.next_tx();
    EXPECT_EQ(close.kind, Transmit::Kind::close);
    EXPECT_EQ(close.code, 1001);
    EXPECT_EQ(close.conn, c);
    EXPECT_EQ(h.status().state, ConnState::disconnected);
    EXPECT_EQ(h.status().reason, StopReason::offline);
    h.closed(c, 1001);
    h.advance(5min);
    EXPECT_TRUE(h.tx.empty());  // no attempts while offline
    h.core.set_online(h.now, true);
    h.drain();
    const auto c2 = h.next_tx();
    EXPECT_EQ(c2.kind, Transmit::Kind::open);  // immediately
    h.closed(c2.conn, 1006);
    EXPECT_EQ(*h.status().next_retry_at - h.now, 500ms);  // backoff was reset
}

TEST(ClientCore, FlappingLinkKeepsBackingOff) {
    Harness h{no_jitter()};
    h.core.connect(h.now);
    h.drain();
    std::vector<duration> waits;
    for (int i = 0; i < 4; ++i) {
        const auto c = h.establish("s" + std::to_string(i));
        h.advance(1s);  // up for less than the 5 s stable period
        h.closed(c, 1006);
        waits.push_back(*h.status().next_retry_at - h.now);
    }
    EXPECT_EQ(waits, (std::vector<duration>{500ms, 1000ms, 2000ms, 4000ms}));
    const auto c = h.establish("s9");
    h.advance(6s);  // stable
    h.closed(c, 1006);
    EXPECT_EQ(*h.status().next_retry_at - h.now, 500ms);
}

TEST(ClientCore, ServerReconnectRetryAfterIsHonouredAndCapped) {
    ClientConfig cfg = no_jitter();
    cfg.backoff.retry_after_max = 5s;
    Harness h{cfg};
    h.core.connect(h.now);
    h.drain();
    auto c = h.establish();
    h.recv(c, p::Reconnect{"draining", 2'500});
    EXPECT_EQ(h.next_tx().kind, Transmit::Kind::close);
    EXPECT_EQ(*h.status().next_retry_at - h.now, 2500ms);
    h.closed(c, 1000);
    c = h.establish();
    h.recv(c, p::Reconnect{"draining", 3'600'000});
    EXPECT_EQ(*h.status().next_retry_at - h.now, 5s);
}

TEST(ClientCore, JoinInFlightWhenLinkDropsIsRetried) {
    Harness h;
    h.core.connect(h.now);
    h.drain();
    auto c = h.establish();
    EXPECT_TRUE(h.core.join(h.now, "r"));
    h.drain();
    h.expect_sent<p::Join>();
    h.closed(c, 1006);  // no JOINED ever came
    c = h.expect_open();
    h.open(c);
    h.recv(c, p::Hello{10'000, 60'000, "", "", ""});
    auto resume = h.expect_sent<p::Resume>();
    EXPECT_TRUE(resume.rooms.empty());  // never joined: no position to resume
    h.recv(c, p::Resumed{"s1", {}});
    EXPECT_EQ(h.expect_sent<p::Join>().room, "r");
    h.recv(c, p::Joined{"r", {1, 0}, true});
    EXPECT_EQ(h.core.rooms().at(0).state, RoomState::joined);
}

TEST(ClientCore, JoinWithoutAnswerIsResentThenTheLinkIsReplaced) {
    ClientConfig cfg;
    cfg.heartbeat_ack_timeout = std::chrono::hours(1);  // isolate the join timeout
    Harness h{cfg};
    h.core.connect(h.now);
    h.drain();
    h.establish();
    EXPECT_TRUE(h.core.join(h.now, "r"));
    h.drain();
    for (int i = 0; i < 3; ++i)
        h.expect_sent<p::Join>();
    auto close = h.next_tx();
    while (close.kind == Transmit::Kind::send)
        close = h.next_tx();  // heartbeats
    EXPECT_EQ(close.kind, Transmit::Kind::close);
    EXPECT_NE(close.reason.find("join timeout"), std::string::npos);
    EXPECT_EQ(h.core.rooms().size(), 1u);  // the room is kept, not abandoned
}

TEST(ClientCore, FatalJoinErrorMovesRoomToErrorRetryableOneRetries) {
    Harness h;
    h.core.connect(h.now);
    h.drain();
    const auto c = h.establish();
    EXPECT_TRUE(h.core.join(h.now, "vip"));
    EXPECT_TRUE(h.core.join(h.now, "busy"));
    h.drain();
    h.expect_sent<p::Join>();
    h.expect_sent<p::Join>();
    h.recv(c, p::JoinError{"vip", "not_permitted", "members only", true});
    h.recv(c, p::JoinError{"busy", "rate_limited", "slow down", false});
    bool vip_error = false;
    for (const auto& e : h.events_of<RoomStatusChanged>())
        if (e.room == "vip" && e.state == RoomState::error) vip_error = true;
    EXPECT_TRUE(vip_error);
    ASSERT_EQ(h.core.rooms().size(), 1u);  // vip no longer tracked
    const auto t0 = h.now;
    EXPECT_EQ(h.expect_sent<p::Join>().room, "busy");
    EXPECT_EQ(h.now - t0, 1s);
}

TEST(ClientCore, OutboxBoundsRejectNewOrDropOldest) {
    ClientConfig cfg;
    cfg.outbox.count_max = 2;
    Harness reject{cfg};
    EXPECT_TRUE(reject.core.publish(reject.now, "r", "1").has_value());
    EXPECT_TRUE(reject.core.publish(reject.now, "r", "2").has_value());
    auto r3 = reject.core.publish(reject.now, "r", "3");
    EXPECT_FALSE(r3);
    EXPECT_EQ(r3.error(), error::outbox_full);

    cfg.outbox.overflow = OverflowPolicy::drop_oldest;
    Harness drop{cfg};
    auto first = drop.core.publish(drop.now, "r", "1");
    EXPECT_TRUE(drop.core.publish(drop.now, "r", "2"));
    EXPECT_TRUE(drop.core.publish(drop.now, "r", "3").has_value());
    drop.drain();
    auto failed = drop.events_of<PublishFailed>();
    ASSERT_EQ(failed.size(), 1u);
    EXPECT_EQ(failed[0].id, first.value());
    EXPECT_EQ(failed[0].error, error::dropped);
    EXPECT_FALSE(failed[0].possibly_delivered);
    EXPECT_EQ(drop.core.pending(), 2u);
    EXPECT_EQ(drop.core.metrics().dropped, 1u);

    cfg = {};
    cfg.outbox.bytes_max = 10;
    Harness bytes{cfg};
    EXPECT_TRUE(bytes.core.publish(bytes.now, "r", "123456").has_value());
    EXPECT_EQ(bytes.core.publish(bytes.now, "r", "123456").error(), error::outbox_full);
    EXPECT_EQ(bytes.core.publish(bytes.now, "r", "12345678901").error(), error::too_large);
}

TEST(ClientCore, PublishValidatesInput) {
    Harness h;
    EXPECT_EQ(h.core.publish(h.now, "", "1").error(), error::invalid_room);
    EXPECT_EQ(h.core.publish(h.now, std::string(500, 'r'), "1").error(), error::invalid_room);
    EXPECT_EQ(h.core.publish(h.now, "r", "{not json").error(), error::invalid_data);
    EXPECT_EQ(h.core.join(h.now, "\xC3\x28").error(), error::invalid_room);
}

TEST(ClientCore, MessagesExpireIfNotAcknowledgedInTime) {
    ClientConfig cfg;
    cfg.outbox.message_ttl = 30s;
    Harness h{cfg};
    auto res = h.core.publish(h.now, "r", "1");
    h.core.connect(h.now);
    h.drain();
    h.closed(h.expect_open(), 1006);  // server down
    h.advance(31s);
    auto failed = h.events_of<PublishFailed>();
    ASSERT_EQ(failed.size(), 1u);
    EXPECT_EQ(failed[0].id, res.value());
    EXPECT_EQ(failed[0].error, error::expired);
    EXPECT_EQ(h.core.pending(), 0u);
}

TEST(ClientCore, RateLimitedPublishIsHeldThenResentInOrder) {
    Harness h;
    h.core.connect(h.now);
    h.drain();
    const auto c = h.establish();
    const auto a = h.core.publish(h.now, "r", "1").value();
    const auto b = h.core.publish(h.now, "r", "2").value();
    h.drain();
    EXPECT_EQ(h.expect_sent<p::Publish>().id, a);
    EXPECT_EQ(h.expect_sent<p::Publish>().id, b);
    h.recv(c, p::Nack{a, "rate_limited", "slow", 700});
    h.recv(c, p::Nack{b, "rate_limited", "slow", 700});
    const auto t0 = h.now;
    EXPECT_EQ(h.expect_sent<p::Publish>().id, a);
    EXPECT_EQ(h.now - t0, 700ms);
    EXPECT_EQ(h.expect_sent<p::Publish>().id, b);
    h.recv(c, p::Nack{a, "too_large", "no", std::nullopt});
    auto failed = h.events_of<PublishFailed>();
    ASSERT_EQ(failed.size(), 1u);
    EXPECT_EQ(failed[0].error, error::too_large);
}

TEST(ClientCore, RetriedPublishKeepsItsIdAcrossReconnects) {
    Harness h;
    h.core.connect(h.now);
    h.drain();
    auto c = h.establish();
    const auto id = h.core.publish(h.now, "r", "1").value();
    h.drain();
    EXPECT_EQ(h.expect_sent<p::Publish>().id, id);
    h.closed(c, 1006);  // ack lost with the link
    c = h.expect_open();
    h.open(c);
    h.recv(c, p::Hello{10'000, 60'000, "", "", ""});
    h.expect_sent<p::Resume>();
    h.recv(c, p::Resumed{"s1", {}});
    EXPECT_EQ(h.expect_sent<p::Publish>().id, id);  // same id: the server dedupes
    h.recv(c, p::Ack{id, "r", 1, 9});
    h.recv(c, p::Ack{id, "r", 1, 9});  // a duplicate ack changes nothing
    EXPECT_EQ(h.events_of<PublishAcked>().size(), 1u);
}

TEST(ClientCore, SnapshotRestoreResendsPendingWithTheirIdsAndRejoinsFromPositions) {
    Harness a;
    EXPECT_TRUE(a.core.join(a.now, "lobby"));
    a.core.connect(a.now);
    a.drain();
    auto c = a.establish();
    a.expect_sent<p::Join>();
    a.recv(c, p::Joined{"lobby", {7, 2}, true});
    a.recv(c, p::Event{"lobby", {7, 3}, "3"});
    const auto v0 = a.core.state_version();
    const auto id1 = a.core.publish(a.now, "lobby", R"("one")").value();
    const auto id2 = a.core.publish(a.now, "lobby", R"("two")").value();
    EXPECT_GT(a.core.state_version(), v0);
    a.recv(c, p::Ack{id1, "lobby", 7, 4});  // "two" stays unacknowledged
    const ClientSnapshot snap = a.core.snapshot();
    ASSERT_EQ(snap.outbox.size(), 1u);
    EXPECT_EQ(snap.outbox[0].id, id2);
    ASSERT_EQ(snap.rooms.size(), 1u);
    EXPECT_EQ(snap.rooms[0].position, (p::StreamPosition{7, 3}));

    // A new process: a different seed, the same state.
    ClientConfig cfg;
    cfg.seed = 99;
    Harness b(cfg);
    ASSERT_TRUE(b.core.restore(b.now, snap));
    EXPECT_EQ(b.core.snapshot(), snap);
    EXPECT_EQ(b.core.pending(), 1u);
    b.core.connect(b.now);
    b.drain();
    c = b.establish();
    auto join = b.expect_sent<p::Join>();
    EXPECT_EQ(join.room, "lobby");
    EXPECT_EQ(join.since, (p::StreamPosition{7, 3}));
    b.recv(c, p::Joined{"lobby", {7, 4}, true});
    b.recv(c, p::Event{"lobby", {7, 4}, R"("one")"});
    auto pub = b.expect_sent<p::Publish>();
    EXPECT_EQ(pub.id, id2);  // the same id: the server's dedupe makes it count once
    // New ids continue the old sequence instead of restarting it.
    const auto id3 = b.core.publish(b.now, "lobby", "3").value();
    EXPECT_EQ(id3.substr(0, id3.find('-')), id2.substr(0, id2.find('-')));
    EXPECT_NE(id3, id2);
    EXPECT_NE(id3, id1);

    // restore() is refused once started, and a bad snapshot changes nothing.
    EXPECT_EQ(b.core.restore(b.now, snap).error().code, error::bad_call);
    Harness d;
    ClientSnapshot bad = snap;
    bad.rooms.push_back({"", std::nullopt});
    EXPECT_EQ(d.core.restore(d.now, bad).error().code, error::invalid_state);
    EXPECT_EQ(d.core.pending(), 0u);
    EXPECT_TRUE(d.core.rooms().empty());
}

TEST(ClientCore, ResumeTokensAreUsedOnceAndReplacedByTheServer) {
    Harness h;
    h.core.connect(h.now);
    h.drain();
    auto c = h.establish("s1");  // READY: resume token "rt-s1"
    h.closed(c, 1006);
    c = h.expect_open();
    h.open(c);
    h.recv(c, p::Hello{10'000, 60'000, "srv", "1", "n1"});
    EXPECT_EQ(h.expect_sent<p::Resume>().resume_token, "rt-s1");
    h.recv(c, p::Resumed{"s1", "rt-fresh"});
    h.closed(c, 1006);
    c = h.expect_open();
    h.open(c);
    h.recv(c, p::Hello{10'000, 60'000, "srv", "1", "n1"});
    EXPECT_EQ(h.expect_sent<p::Resume>().resume_token, "rt-fresh");
    // A server that sends no new token (older servers): the old one stays.
    h.recv(c, p::Resumed{"s1", {}});
    h.closed(c, 1006);
    c = h.expect_open();
    h.open(c);
    h.recv(c, p::Hello{10'000, 60'000, "srv", "1", "n1"});
    EXPECT_EQ(h.expect_sent<p::Resume>().resume_token, "rt-fresh");
}

TEST(ClientCore, InvalidTokensNeverReachTheWire) {
    // Found by fuzz_client_core: a token that is not UTF-8 made an IDENTIFY
    // the server could only refuse with 4002.
    ClientConfig bad;
    bad.token = "\xff\xfe";
    EXPECT_THROW(ClientCore{bad}, std::invalid_argument);
    ClientConfig cfg;
    cfg.dynamic_credentials = true;
    cfg.backoff.jitter_ratio = 0;
    Harness h(cfg);
    h.core.connect(h.now);
    h.drain();
    h.core.provide_credentials(h.now, "\xff\xfe");
    h.drain();
    for (const auto& t : h.tx)
        EXPECT_NE(t.kind, Transmit::Kind::open);
    EXPECT_EQ(h.status().state, ConnState::reconnecting);
    EXPECT_NE(h.status().close_reason.find("not UTF-8"), std::string::npos);
}

TEST(ClientCore, StaleConnectionsAreIgnoredAndAborted) {
    Harness h;
    h.core.connect(h.now);
    h.drain();
    const auto c = h.expect_open();
    h.closed(c, 1006);
    h.open(c);  // a late open of the failed socket
    auto abort = h.next_tx(0s);
    EXPECT_EQ(abort.kind, Transmit::Kind::abort);
    EXPECT_EQ(abort.conn, c);
    h.recv(c, p::Hello{10'000, 60'000, "", "", ""});
    EXPECT_TRUE(h.tx.empty());  // nothing from a stale socket reaches the session
    EXPECT_EQ(h.status().state, ConnState::reconnecting);
}

TEST(ClientCore, NeverTwoAttemptsAtOnce) {
    Harness h;
    h.core.connect(h.now);
    h.drain();
    h.expect_open();
    h.core.retry_now(h.now);
    h.core.connect(h.now, true);
    h.drain();
    EXPECT_TRUE(h.tx.empty());
}

TEST(ClientCore, ProtocolViolationsCloseWithDecodeError) {
    Harness h;
    h.core.connect(h.now);
    h.drain();
    auto c = h.expect_open();
    h.open(c);
    h.core.handle_message(h.now, c, "{garbage");
    h.drain();
    auto close = h.next_tx();
    EXPECT_EQ(close.code, 4002);
    EXPECT_NE(close.reason.find("invalid_json"), std::string::npos);
    c = h.expect_open();
    h.open(c);
    h.recv(c, p::Ready{"s", "t", "u"});  // READY before HELLO/IDENTIFY
    EXPECT_EQ(h.next_tx().code, 4002);
}

TEST(ClientCore, StageTimeoutsReplaceTheConnection) {
    Harness h;
    h.core.connect(h.now);
    h.drain();
    h.expect_open();
    const auto t0 = h.now;
    auto abort = h.next_tx();  // the socket never opened
    EXPECT_EQ(abort.kind, Transmit::Kind::abort);
    EXPECT_EQ(h.now - t0, 10s);
    EXPECT_EQ(h.status().close_reason, "open timeout");
}

TEST(ClientCore, StatusObservableSupportsWaitingWithDeadline) {
    Harness h;
    WaitResult got = WaitResult::abandoned;
    auto w = h.core.status().wait_for(
        [](const ClientStatus& s) { return s.state == ConnState::connected; },
        [&](WaitResult r, const ClientStatus&) { got = r; }, h.now + 5s);
    h.core.connect(h.now);
    h.drain();
    h.advance(6s);  // never opened
    EXPECT_EQ(got, WaitResult::timed_out);
    EXPECT_EQ(h.core.status().waiter_count(), 0u);
    auto w2 = h.core.status().wait_for(
        [](const ClientStatus& s) { return s.state == ConnState::connected; },
        [&](WaitResult r, const ClientStatus&) { got = r; });
    h.establish();
    EXPECT_EQ(got, WaitResult::satisfied);
}

TEST(ClientCore, DescribeIsReadable) {
    ClientStatus s;
    s.state = ConnState::reconnecting;
    s.attempt = 3;
    s.next_retry_at = from_ms(2'100);
    EXPECT_EQ(describe(s, from_ms(0)), "reconnecting (attempt 3, next in 2.1 s)");
    s = {};
    s.state = ConnState::connected;
    s.phase = Phase::sending;
    s.sending_done = 2;
    s.sending_total = 5;
    s.pending = 3;
    EXPECT_EQ(describe(s, from_ms(0)), "connected (sending 2 of 5)");
    s = {};
    s.state = ConnState::error;
    s.reason = StopReason::auth_failed;
    s.close_code = 4004;
    s.close_reason = "bad token";
    EXPECT_EQ(describe(s, from_ms(0)), "error: re-authentication failed (close 4004 bad token)");
}

TEST(ClientCore, InvalidConfigIsRejectedClearly) {
    EXPECT_TRUE(ClientConfig{}.validate());
    ClientConfig cfg;
    cfg.backoff.jitter_ratio = 3;
    EXPECT_EQ(cfg.validate().error().code, error::invalid_config);
    EXPECT_THROW(ClientCore{cfg}, std::invalid_argument);
    cfg = {};
    cfg.outbox.count_max = 0;
    EXPECT_EQ(cfg.validate().error().code, error::invalid_config);
    EXPECT_FALSE(cfg.validate().error().message.empty());  // says what to fix
    EXPECT_THROW(ClientCore{cfg}, std::invalid_argument);
    cfg = {};
    cfg.fatal_codes = {99};
    EXPECT_EQ(cfg.validate().error().code, error::invalid_config);
}
