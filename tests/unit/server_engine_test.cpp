// The gateway engine with real stores: durability gates ACKs and fan-out,
// replay pages wait for the socket to drain, and limits answer as documented.
// Whole-protocol behaviour runs in the simulator and the Python suites.

#include <tether/core/close_codes.hpp>
#include <tether/core/random.hpp>
#include <tether/core/server_engine.hpp>
#include "store/memory_store.hpp"
#include "store/sqlite_store.hpp"

#include <gtest/gtest.h>

#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>
#include <numeric>
#include <set>

#include <unistd.h>

using namespace tether;
namespace p = tether::proto;

namespace {

ServerConfig config() {
    ServerConfig c;
    c.authenticate = [](std::string_view token, std::int64_t) {
        return token == "bad" ? AuthResult{false, {}, "bad"}
                              : AuthResult{true, std::string{token}, {}};
    };
    std::uint8_t counter = 0;
    c.random_bytes = [counter](std::span<std::uint8_t> out) mutable {
        for (auto& b : out)
            b = ++counter;
    };
    return c;
}

/// Drives an engine and its store: submits the engine's store requests,
/// hands the results back, collects what the engine transmits.
struct Driver {
    Driver(ServerEngine& engine, Store& s) : e(engine), store(s) {
        store.set_sink([this](StoreResult r) { results.push_back(std::move(r)); });
        pump();
        EXPECT_TRUE(e.ready());
    }
    ~Driver() { store.set_sink({}); }
    ServerEngine& e;
    Store& store;
    std::int64_t now = 1'000'000;
    std::vector<StoreResult> results;
    std::vector<ServerTransmit> out;
    /// Until quiet: requests to the store, results to the engine, frames out.
    void pump() {
        for (bool progress = true; progress;) {
            progress = false;
            while (auto r = e.poll_store()) {
                progress = true;
                store.submit(std::move(*r));
            }
            for (auto& r : std::exchange(results, {})) {
                progress = true;
                e.handle_store(now, std::move(r));
            }
        }
        while (auto t = e.poll_transmit())
            out.push_back(std::move(*t));
    }
    void drain() { pump(); }
    void send(std::uint64_t conn, const p::Message& m) {
        e.handle_message(now, conn, p::encode(m));
        pump();
    }
    void open(std::uint64_t conn) {
        e.handle_open(now, conn);
        pump();
    }
    std::vector<p::Message> frames(std::uint64_t conn) {
        std::vector<p::Message> v;
        for (auto& t : out)
            if (t.conn == conn && t.kind == ServerTransmit::Kind::send)
                v.push_back(*p::decode(t.text()));
        out.clear();
        return v;
    }
    template <class M>
    std::vector<M> of(std::uint64_t conn) {
        std::vector<M> v;
        for (auto& m : frames(conn))
            if (auto* x = std::get_if<M>(&m)) v.push_back(*x);
        return v;
    }
    void identify(std::uint64_t conn, std::string user) {
        open(conn);
        send(conn, p::Identify{std::move(user), {}});
        out.clear();
    }
    void publish(std::string_view room, std::string data) {
        e.publish(now, room, std::move(data), {});
        pump();
    }
};

}  // namespace

/// A memory store whose appends become durable only when the test says so,
/// like a durable store whose commit group is still in flight.
class ManualCommitStore : public store::MemoryStore {
  public:
    void submit(StoreRequest r) override {
        if (std::holds_alternative<store_op::Append>(r.op))
            held_.push_back(std::move(r));
        else
            MemoryStore::submit(std::move(r));
    }
    void commit() {
        for (auto& r : std::exchange(held_, {}))
            MemoryStore::submit(std::move(r));
    }

  private:
    std::vector<StoreRequest> held_;
};

TEST(ServerEngine, NoAckOrFanOutBeforeTheStoreIsDurable) {
    ManualCommitStore store;
    ServerEngine e{config(), 1'000'000};
    Driver d{e, store};
    d.identify(1, "alice");
    d.identify(2, "bob");
    d.send(2, p::Join{"r", std::nullopt});
    d.out.clear();
    d.send(1, p::Publish{"r", "m1", "1"});
    d.send(1, p::Publish{"r", "m1", "1"});  // a retry while the first is in flight
    EXPECT_TRUE(d.out.empty());             // neither ACK nor EVENT yet
    // A subscriber joining now must not see the undurable entry either.
    d.identify(3, "carol");
    d.send(3, p::Join{"r", p::StreamPosition{store.stream("r").epoch, 0}});
    EXPECT_EQ(std::get<p::Joined>(d.frames(3).at(0)).position.offset, 0u);
    store.commit();
    d.drain();
    auto out = std::move(d.out);
    d.out = out;
    const auto acks = d.of<p::Ack>(1);
    ASSERT_EQ(acks.size(), 2u);  // the retry is answered with the same offset
    EXPECT_EQ(acks[0].offset, 1u);
    EXPECT_EQ(acks[1].offset, 1u);
    d.out = out;
    ASSERT_EQ(d.of<p::Event>(2).size(), 1u);
    d.out = out;
    ASSERT_EQ(d.of<p::Event>(3).size(), 1u);
    EXPECT_EQ(store.stream("r").head, 1u);  // stored once
}

TEST(ServerEngine, ReplayIsPagedAndWaitsForTheSocketToDrain) {
    store::MemoryStore store;
    auto cfg = config();
    cfg.replay_page_events = 10;
    ServerEngine e{cfg, 1'000'000};
    Driver d{e, store};
    for (int i = 0; i < 35; ++i)
        d.publish("r", std::to_string(i));
    d.identify(1, "alice");
    d.send(1, p::Join{"r", p::StreamPosition{store.stream("r").epoch, 2}});
    auto first = d.frames(1);
    ASSERT_EQ(first.size(), 11u);  // JOINED + one page
    EXPECT_EQ(std::get<p::Joined>(first[0]).position.offset, 35u);
    EXPECT_EQ(std::get<p::Event>(first[1]).position.offset, 3u);
    d.publish("r", R"("live")");  // held back: the room is still replaying
    EXPECT_TRUE(d.frames(1).empty());
    std::vector<std::uint64_t> offsets;
    for (int page = 0; page < 4; ++page) {
        e.handle_writable(d.now, 1);
        d.drain();
        for (auto& m : d.frames(1)) {
            ASSERT_TRUE(std::holds_alternative<p::Event>(m)) << p::encode(m);
            offsets.push_back(std::get<p::Event>(m).position.offset);
        }
    }
    std::vector<std::uint64_t> expected;
    for (std::uint64_t o = 13; o <= 36; ++o)
        expected.push_back(o);
    EXPECT_EQ(offsets, expected);  // the rest, then the live event, no gap, no duplicate
    EXPECT_EQ(e.metrics().replay_pages, 4u);
}

TEST(ServerEngine, IdleConnectionsAreClosedAndTheirSessionsKept) {
    store::MemoryStore store;
    auto cfg = config();
    cfg.heartbeat = duration{1'000};
    ServerEngine e{cfg, 1'000'000};
    Driver d{e, store};
    e.handle_open(d.now, 1);
    d.send(1, p::Identify{"alice", {}});
    const auto ready = d.of<p::Ready>(1).at(0);
    d.now += 8'000;  // > 2 x heartbeat + 5 s
    e.handle_timeout(d.now);
    d.drain();
    ASSERT_EQ(d.out.size(), 1u);
    EXPECT_EQ(d.out[0].code, close_code::unknown_error);
    EXPECT_EQ(d.out[0].reason, "heartbeat timeout");
    d.out.clear();
    e.handle_open(d.now, 2);
    d.send(2, p::Resume{ready.session_id, ready.resume_token, {}});
    EXPECT_EQ(d.of<p::Resumed>(2).size(), 1u);
}

TEST(ServerEngine, SessionsExpireAfterTheirRetentionWindow) {
    store::MemoryStore store;
    auto cfg = config();
    cfg.session_ttl = duration{60'000};
    ServerEngine e{cfg, 1'000'000};
    Driver d{e, store};
    e.handle_open(d.now, 1);
    d.send(1, p::Identify{"alice", {}});
    const auto ready = d.of<p::Ready>(1).at(0);
    e.handle_close(d.now, 1);
    d.now += 61'000;
    e.handle_timeout(d.now);
    e.handle_open(d.now, 2);
    d.send(2, p::Resume{ready.session_id, ready.resume_token, {}});
    ASSERT_EQ(d.of<p::InvalidSession>(2).size(), 1u);
    EXPECT_EQ(e.metrics().sessions_expired, 1u);
    d.drain();
    EXPECT_TRUE(store.sessions().empty());
}

TEST(ServerEngine, PublishFloodIsClosedWith4008) {
    store::MemoryStore store;
    auto cfg = config();
    cfg.publish_rate = 1;
    cfg.publish_burst = 1;
    ServerEngine e{cfg, 1'000'000};
    Driver d{e, store};
    d.identify(1, "alice");
    for (int i = 0; i < 300; ++i)
        e.handle_message(d.now, 1, p::encode(p::Publish{"r", std::to_string(i), "1"}));
    d.drain();
    ASSERT_FALSE(d.out.empty());
    EXPECT_EQ(d.out.back().kind, ServerTransmit::Kind::close);
    EXPECT_EQ(d.out.back().code, close_code::rate_limited);
}

TEST(ServerEngine, RateLimitedPublishHoldsTheOnesBehindItSoOrderIsKept) {
    store::MemoryStore store;
    auto cfg = config();
    cfg.publish_rate = 10;
    cfg.publish_burst = 1;
    ServerEngine e{cfg, 1'000'000};
    Driver d{e, store};
    d.identify(1, "alice");
    // Pipelined: "a" takes the only token, "b" is rate limited, "c" must not overtake "b".
    for (const char* id : {"a", "b", "c"})
        e.handle_message(d.now, 1, p::encode(p::Publish{"r", id, "1"}));
    d.drain();
    auto nacks = d.of<p::Nack>(1);
    ASSERT_EQ(nacks.size(), 2u);
    EXPECT_EQ(nacks[0].id, "b");
    EXPECT_EQ(nacks[1].id, "c");
    EXPECT_EQ(nacks[1].reason, "held behind b");
    ASSERT_TRUE(nacks[1].retry_after_ms);
    d.now += 100;                          // a token again
    d.send(1, p::Publish{"r", "c", "1"});  // still behind b
    ASSERT_EQ(d.of<p::Nack>(1).size(), 1u);
    d.send(1, p::Publish{"r", "b", "1"});
    // "d" was pipelined before "c" came back: it must not overtake "c" either.
    d.now += 100;
    d.send(1, p::Publish{"r", "d", "1"});
    d.send(1, p::Publish{"r", "c", "1"});
    e.handle_timeout(d.now);
    d.drain();
    std::vector<p::Ack> acks;
    std::vector<p::Nack> held;
    for (auto& f : d.frames(1)) {
        if (auto* a = std::get_if<p::Ack>(&f)) acks.push_back(*a);
        if (auto* n = std::get_if<p::Nack>(&f)) held.push_back(*n);
    }
    ASSERT_EQ(held.size(), 1u);
    EXPECT_EQ(held[0].id, "d");
    EXPECT_EQ(held[0].reason, "held behind c");
    ASSERT_EQ(acks.size(), 2u);
    EXPECT_EQ(acks[0].id, "b");
    EXPECT_EQ(acks[1].id, "c");
    EXPECT_EQ(acks[1].offset, acks[0].offset + 1);
    // A client that dropped its held message is not stuck: the gate opens by itself.
    e.handle_message(d.now, 1, p::encode(p::Publish{"r", "x", "1"}));
    e.handle_message(d.now, 1, p::encode(p::Publish{"r", "y", "1"}));
    d.drain();
    ASSERT_EQ(d.of<p::Nack>(1).size(), 2u);  // x rate limited, y held behind it
    d.now += 10'000;
    d.send(1, p::Publish{"r", "z", "1"});
    e.handle_timeout(d.now);
    d.drain();
    EXPECT_EQ(d.of<p::Ack>(1).size(), 1u);
}

TEST(ServerEngine, AUserIdNoClientCouldDecodeIsRefused) {
    // Found by fuzz_server_engine: an authenticator that cut a name in the
    // middle of a UTF-8 sequence made the engine send an undecodable READY.
    store::MemoryStore store;
    auto cfg = config();
    cfg.authenticate = [](std::string_view token, std::int64_t) {
        if (token == "cut") return AuthResult{true, "\xc3", {}};
        if (token == "empty") return AuthResult{true, "", {}};
        return AuthResult{true, std::string(2000, 'u'), {}};
    };
    ServerEngine e{cfg, 1'000'000};
    Driver d{e, store};
    for (const char* token : {"cut", "empty", "long"}) {
        e.handle_open(d.now, 1);
        d.send(1, p::Identify{token, {}});
        ASSERT_FALSE(d.out.empty());
        EXPECT_EQ(d.out.back().kind, ServerTransmit::Kind::close) << token;
        EXPECT_EQ(d.out.back().code, close_code::authentication_failed) << token;
        d.out.clear();
        e.handle_close(d.now, 1);
    }
    EXPECT_EQ(e.session_count(), 0u);
}

TEST(ServerEngine, DrainSendsJitteredReconnectThenRefuses) {
    store::MemoryStore store;
    ServerEngine e{config(), 1'000'000};
    Driver d{e, store};
    d.identify(1, "a");
    d.identify(2, "b");
    e.drain(d.now, 1'000);
    d.drain();
    std::vector<std::int64_t> retry;
    for (auto& t : d.out)
        if (t.kind == ServerTransmit::Kind::send)
            retry.push_back(*std::get<p::Reconnect>(*p::decode(t.text())).retry_after_ms);
    ASSERT_EQ(retry.size(), 2u);
    for (auto r : retry) {
        EXPECT_GE(r, 1'000);
        EXPECT_LT(r, 2'000);
    }
    d.out.clear();
    e.handle_open(d.now, 3);
    d.drain();
    ASSERT_EQ(d.out.size(), 1u);
    EXPECT_EQ(d.out[0].code, close_code::try_again_later);
}

/// Two gateway nodes on one backing store, as Redis would serve them: each
/// node's appends reach the other node through the store's fan-out.
class ClusterStore : public Store {
  public:
    ClusterStore(store::MemoryStore& shared, std::vector<ClusterStore*>& nodes)
        : shared_(shared), nodes_(nodes) {
        nodes_.push_back(this);
    }
    void submit(StoreRequest r) override {
        std::optional<std::pair<std::string, std::string>> appended;
        if (auto* a = std::get_if<store_op::Append>(&r.op)) appended.emplace(a->room, a->data);
        StoreResult got;
        shared_.set_sink([&](StoreResult x) { got = std::move(x); });
        shared_.submit(std::move(r));
        if (appended) {
            const auto pos = std::get<store_result::Appended>(got.value).position;
            for (auto* n : nodes_)
                if (n != this && n->remote_)
                    pending_.push_back(
                        {n, RemoteAppend{appended->first, pos, appended->second, nullptr}});
        }
        complete(std::move(got));
    }
    void flush() override {}
    /// Delivers queued fan-out, like pub/sub messages arriving a moment later.
    void deliver(std::size_t max = SIZE_MAX) {
        for (std::size_t i = 0; i < max && !pending_.empty(); ++i) {
            auto [n, a] = pending_.front();
            pending_.erase(pending_.begin());
            n->remote_(a);
        }
    }
    void drop_next() { pending_.erase(pending_.begin()); }
    void on_remote_append(const std::function<void(RemoteAppend)>& f) override { remote_ = f; }

  private:
    store::MemoryStore& shared_;
    std::vector<ClusterStore*>& nodes_;
    std::function<void(RemoteAppend)> remote_;
    std::vector<std::pair<ClusterStore*, RemoteAppend>> pending_;
};

TEST(ServerEngine, AppendsOnOneNodeReachSubscribersOfAnotherWithoutGaps) {
    store::MemoryStore shared;
    std::vector<ClusterStore*> nodes;
    ClusterStore sa{shared, nodes}, sb{shared, nodes};
    ServerEngine a{config(), 1'000'000}, b{config(), 1'000'000};
    Driver da{a, sa}, db{b, sb};
    sa.on_remote_append([&](RemoteAppend r) { a.handle_remote_append(1'000'000, r); });
    sb.on_remote_append([&](RemoteAppend r) {
        b.handle_remote_append(1'000'000, r);
        db.pump();  // the gap's catch-up reads the store
    });
    db.identify(7, "sub-on-b");
    db.send(7, p::Join{"r", std::nullopt});
    db.out.clear();
    da.identify(1, "pub-on-a");
    for (int i = 1; i <= 5; ++i)
        da.send(1, p::Publish{"r", "m" + std::to_string(i), std::to_string(i)});
    sa.deliver(2);   // offsets 1 and 2 arrive at node b
    sa.drop_next();  // the pub/sub message for 3 is lost
    sa.deliver();    // 4 and 5 arrive: b notices the jump and catches up from the store
    std::vector<std::uint64_t> got;
    for (int round = 0; round < 4; ++round) {  // each replay page waits for the socket
        b.handle_writable(db.now, 7);
        db.drain();
    }
    for (auto& m : db.frames(7))
        got.push_back(std::get<p::Event>(m).position.offset);
    EXPECT_EQ(got, (std::vector<std::uint64_t>{1, 2, 3, 4, 5}));
    EXPECT_GE(b.metrics().gap_fills, 1u);
}

// ---- session persistence: one copy in memory (the engine's), issue #6

/// Runs one request on a store and waits (bounded) for its result.
StoreResult run(Store& s, StoreOp op) {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<StoreResult> got;
    s.set_sink([&](StoreResult r) {
        std::lock_guard lk(mu);
        got = std::move(r);
        cv.notify_all();
    });
    s.submit(StoreRequest{1, std::move(op)});
    std::unique_lock lk(mu);
    EXPECT_TRUE(cv.wait_for(lk, std::chrono::seconds(10), [&] { return got.has_value(); }));
    lk.unlock();
    s.set_sink({});
    return got.value_or(StoreResult{});
}

std::vector<SessionRecord> sessions_of(Store& s) {
    auto r = run(s, store_op::LoadSessions{});
    return std::get<store_result::Sessions>(r.value).sessions;
}

TEST(Store, SqliteSessionsAreReadFromTheDatabaseNotCached) {
    const auto dir = std::filesystem::temp_directory_path() /
                     ("tether-store-test-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    {
        store::SqliteStore s{dir, store::FsyncMode::batch, {}, 1'000};
        EXPECT_EQ(s.loaded_sessions(), 0u);
        (void)run(s, store_op::SaveSession{{"a", "token-a", "alice", {"r1", "r2"}, 0}});
        (void)run(s, store_op::SaveSession{{"b", "token-b", "bob", {}, 5'000}});
        (void)run(s, store_op::SaveSession{{"a", "token-a2", "alice", {"r1"}, 0}});  // replaces
        (void)run(s, store_op::EraseSession{"b"});
        const auto got = sessions_of(s);  // the writer thread answers, after what is queued
        ASSERT_EQ(got.size(), 1u);
        EXPECT_EQ(got[0].resume_token, "token-a2");
        EXPECT_EQ(got[0].rooms, std::vector<std::string>{"r1"});
    }
    store::SqliteStore reopened{dir, store::FsyncMode::batch, {}, 2'000};
    EXPECT_EQ(reopened.loaded_sessions(), 1u);
    const auto got = sessions_of(reopened);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].id, "a");
    EXPECT_EQ(got[0].user, "alice");
    std::filesystem::remove_all(dir);
}

TEST(Store, SqliteReadsOnlyWhatItCommittedAndKeepsThePublishLogPastTheHistory) {
    const auto dir =
        std::filesystem::temp_directory_path() / ("tether-store-log-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    StoreLimits limits;
    limits.history_size = 2;  // the history keeps two events, the log all five
    {
        store::SqliteStore s{dir, store::FsyncMode::batch, limits, 1'000};
        for (int i = 1; i <= 5; ++i) {
            auto r = run(s, store_op::Append{"r", std::to_string(i), "alice",
                                             "id-" + std::to_string(i), 1'000});
            ASSERT_FALSE(r.error);
            EXPECT_EQ(std::get<store_result::Appended>(r.value).position.offset,
                      static_cast<std::uint64_t>(i));
        }
        auto range = run(s, store_op::ReadRange{"r", 0});
        EXPECT_EQ(std::get<store_result::Range>(range.value).events.size(), 2u);
    }
    // The publish log outlived the history and the process: a retry of the
    // first publish is answered with its offset and stores nothing.
    store::SqliteStore reopened{dir, store::FsyncMode::batch, limits, 2'000};
    EXPECT_EQ(reopened.publish_log_size(), 5u);
    auto retry = run(reopened, store_op::Append{"r", "1", "alice", "id-1", 2'000, 0});
    ASSERT_FALSE(retry.error);
    const auto& again = std::get<store_result::Appended>(retry.value);
    EXPECT_TRUE(again.duplicate);
    EXPECT_EQ(again.position.offset, 1u);
    // Outside its window (dedupe_since_ms after the record) it is new.
    auto late = run(reopened, store_op::Append{"r", "1", "alice", "id-1", 2'000, 1'500});
    EXPECT_FALSE(std::get<store_result::Appended>(late.value).duplicate);
    EXPECT_EQ(std::get<store_result::Appended>(late.value).position.offset, 6u);
    // Another user's id-1 is another publish.
    auto bob = run(reopened, store_op::Append{"r", "1", "bob", "id-1", 2'000, 0});
    EXPECT_FALSE(std::get<store_result::Appended>(bob.value).duplicate);
    EXPECT_EQ(reopened.stream("r").head, 7u);
    // The room came back from the file too: bob's id-1 in another room is new.
    auto moved = run(reopened, store_op::Append{"q", "1", "bob", "id-1", 2'000, 0});
    EXPECT_FALSE(std::get<store_result::Appended>(moved.value).duplicate);
    EXPECT_EQ(std::get<store_result::Appended>(moved.value).position.offset, 1u);
    std::filesystem::remove_all(dir);
}

TEST(Store, ThePublishLogIsBoundedPerUserAndInAll) {
    StoreLimits limits;
    limits.dedupe_per_user_max = 2;
    limits.dedupe_records_max = 3;
    store::MemoryStore s{limits};
    auto append = [&](const std::string& user, const char* id) {
        auto r = run(s, store_op::Append{"r", "1", user, id, 1'000, 0});
        return std::get<store_result::Appended>(r.value);
    };
    // The bound in all forgets the oldest record of the stripe it fills:
    // bob shares alice's stripe here, carol does not.
    std::string bob, carol;
    for (int i = 0; bob.empty() || carol.empty(); ++i) {
        const auto name = "user-" + std::to_string(i);
        const bool same =
            store::MemoryStore::log_stripe_of(name) == store::MemoryStore::log_stripe_of("alice");
        if (same && bob.empty()) bob = name;
        if (!same && carol.empty()) carol = name;
    }
    append("alice", "a1");
    append("alice", "a2");
    append("alice", "a3");  // alice's oldest, a1, is forgotten
    EXPECT_EQ(s.publish_log_size(), 2u);
    EXPECT_TRUE(append("alice", "a3").duplicate);
    EXPECT_TRUE(append("alice", "a2").duplicate);
    append(bob, "b1");
    append(bob, "b2");  // four records: the oldest of the stripe (alice's a2) goes
    EXPECT_EQ(s.publish_log_size(), 3u);
    EXPECT_FALSE(append("alice", "a2").duplicate);  // stored again; a3 goes
    EXPECT_TRUE(append(bob, "b1").duplicate);
    EXPECT_FALSE(append("alice", "a3").duplicate);
    EXPECT_EQ(s.publish_log_size(), 3u);
    // carol's stripe holds nothing else: it keeps her newest record, one over
    // the bound (at most one per other stripe), and forgets her older ones.
    append(carol, "c1");
    EXPECT_EQ(s.publish_log_size(), 4u);
    append(carol, "c2");
    EXPECT_EQ(s.publish_log_size(), 4u);
    EXPECT_TRUE(append(carol, "c2").duplicate);
    EXPECT_FALSE(append(carol, "c1").duplicate);
}

TEST(Store, ARenewedRecordMovesToTheEndOfBothOrdersAndTheAgeTrimForgetsTheOldest) {
    StoreLimits limits;
    limits.dedupe_per_user_max = 2;
    store::MemoryStore s{limits};
    auto append = [&](const char* id, std::int64_t at, std::int64_t since = 0) {
        auto r = run(s, store_op::Append{"r", "1", "alice", id, at, since});
        return std::get<store_result::Appended>(r.value);
    };
    const auto a1 = append("a1", 1'000);
    append("a2", 2'000);
    // a1 again, outside its window: stored again, now alice's newest.
    const auto renewed = append("a1", 3'000, 2'500);
    EXPECT_FALSE(renewed.duplicate);
    EXPECT_NE(renewed.position.offset, a1.position.offset);
    EXPECT_EQ(s.publish_log_size(), 2u);
    append("a3", 4'000);  // over alice's two: her oldest now is a2
    EXPECT_EQ(s.publish_log_size(), 2u);
    EXPECT_FALSE(append("a2", 5'000).duplicate);  // a2 was forgotten; a1 goes now
    EXPECT_FALSE(append("a1", 6'000).duplicate);  // so a1 is new again; a3 goes
    EXPECT_EQ(s.publish_log_size(), 2u);
    // The age trim forgets records older than its cut, oldest first.
    (void)run(s, store_op::Trim{6'000, 5'500});
    EXPECT_EQ(s.publish_log_size(), 1u);
    EXPECT_TRUE(append("a1", 6'100).duplicate);
    (void)run(s, store_op::Trim{7'000, 7'000});
    EXPECT_EQ(s.publish_log_size(), 0u);
    EXPECT_FALSE(append("a1", 7'100).duplicate);
}

TEST(Store, AnIdReusedInAnotherRoomIsANewPublish) {
    // Found by fuzz_server_engine: the retry check matched (user, id) alone,
    // so the reuse was acknowledged for room b with room a's offset -- an
    // offset b does not hold.
    store::MemoryStore s;
    auto first = run(s, store_op::Append{"a", "1", "alice", "id1", 1'000, 0});
    EXPECT_FALSE(std::get<store_result::Appended>(first.value).duplicate);
    auto retry = run(s, store_op::Append{"a", "1", "alice", "id1", 1'000, 0});
    EXPECT_TRUE(std::get<store_result::Appended>(retry.value).duplicate);
    auto other = run(s, store_op::Append{"b", "2", "alice", "id1", 1'000, 0});
    const auto& appended = std::get<store_result::Appended>(other.value);
    EXPECT_FALSE(appended.duplicate);
    EXPECT_EQ(appended.position.offset, 1u);
    EXPECT_EQ(s.stream("b").head, 1u);
    // The log now names room b for alice's id1.
    EXPECT_TRUE(std::get<store_result::Appended>(
                    run(s, store_op::Append{"b", "2", "alice", "id1", 1'000, 0}).value)
                    .duplicate);
}

TEST(Store, MemoryStoreKeepsOrDiscardsSessionsAsConfigured) {
    store::MemoryStore keep;
    (void)run(keep, store_op::SaveSession{{"a", "t", "alice", {}, 0}});
    EXPECT_EQ(keep.sessions().size(), 1u);
    (void)run(keep, store_op::EraseSession{"a"});
    EXPECT_TRUE(keep.sessions().empty());

    store::MemoryStore discard{{}, 1, store::MemoryStore::Sessions::discard};
    (void)run(discard, store_op::SaveSession{{"a", "t", "alice", {}, 0}});
    EXPECT_TRUE(discard.sessions().empty());
    (void)run(discard, store_op::EraseSession{"a"});  // nothing to erase: no error
}

TEST(ServerEngine, ARetryAfterARestartIsRecognisedEvenWhenItsEventLeftTheHistory) {
    // Found by the simulator with three clients: the dedupe window was
    // rebuilt from the room history, which had already been trimmed past the
    // original, so the retry was stored twice.
    StoreLimits limits;
    limits.history_size = 2;
    store::MemoryStore store{limits};
    {
        ServerEngine e{config(), 1'000'000};
        Driver d{e, store};
        d.identify(1, "alice");
        d.send(1, p::Publish{"r", "first", "1"});
        for (int i = 0; i < 5; ++i)
            d.publish("r", std::to_string(i));  // pushes "first" out of the history
    }
    ServerEngine e{config(), 1'000'000};  // a restarted process on the same store
    Driver d{e, store};
    d.identify(2, "alice");
    d.send(2, p::Publish{"r", "first", "1"});  // the client never saw its ack
    const auto acks = d.of<p::Ack>(2);
    ASSERT_EQ(acks.size(), 1u);
    EXPECT_EQ(acks[0].offset, 1u);          // the original offset
    EXPECT_EQ(store.stream("r").head, 6u);  // stored once
}

TEST(ServerEngine, SessionsAndTheirRoomsSurviveAnEngineRestartOnTheStore) {
    store::MemoryStore store;  // keeps sessions, like a durable store
    p::Ready ready;
    {
        ServerEngine e{config(), 1'000'000};
        Driver d{e, store};
        e.handle_open(d.now, 1);
        d.send(1, p::Identify{"alice", {}});
        ready = d.of<p::Ready>(1).at(0);
        d.send(1, p::Join{"r1", std::nullopt});
        d.send(1, p::Join{"r2", std::nullopt});
        d.send(1, p::Leave{"r1"});
        ASSERT_EQ(e.sessions().size(), 1u);
        EXPECT_EQ(e.sessions()[0].rooms, std::vector<std::string>{"r2"});
    }
    auto cfg = config();  // another process: its random bytes differ from the first's
    cfg.random_bytes = [counter = std::uint8_t{100}](std::span<std::uint8_t> out) mutable {
        for (auto& b : out)
            b = ++counter;
    };
    ServerEngine e{cfg, 1'001'000};
    Driver d{e, store};
    d.now = 1'001'000;
    const auto s = e.session(ready.session_id);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->user, "alice");
    EXPECT_EQ(s->rooms, std::vector<std::string>{"r2"});
    e.handle_open(d.now, 7);
    d.send(7, p::Resume{ready.session_id, ready.resume_token, {}});
    EXPECT_EQ(d.of<p::Resumed>(7).size(), 1u);
    e.handle_open(d.now, 8);  // the token was used: a replay of it is refused
    d.send(8, p::Resume{ready.session_id, ready.resume_token, {}});
    EXPECT_EQ(d.of<p::InvalidSession>(8).size(), 1u);
}

TEST(ServerEngine, ARepeatingRandomSourceNeverHandsOutAnExistingSession) {
    store::MemoryStore store;
    auto cfg = config();
    cfg.random_bytes = [](std::span<std::uint8_t> out) { std::fill(out.begin(), out.end(), 7); };
    ServerEngine e{cfg, 1'000'000};
    Driver d{e, store};
    e.handle_open(d.now, 1);
    d.send(1, p::Identify{"alice", {}});
    const auto alice = d.of<p::Ready>(1).at(0);
    e.handle_open(d.now, 2);
    d.send(2, p::Identify{"mallory", {}});
    ASSERT_FALSE(d.out.empty());
    EXPECT_EQ(d.out.back().kind, ServerTransmit::Kind::close);
    EXPECT_EQ(d.out.back().code, close_code::try_again_later);
    ASSERT_EQ(e.sessions().size(), 1u);
    EXPECT_EQ(e.sessions()[0].user, "alice");
    EXPECT_TRUE(e.sessions()[0].connected);
    EXPECT_EQ(e.session(alice.session_id)->user, "alice");
}

// ---- shards ------------------------------------------------------------------------------

namespace {

/// Several engine shards on one store, driven like the gateway drives them:
/// each result back to the shard that asked (request_shard), each committed
/// append to every shard in commit order, a RESUME of another shard's
/// session moved there (owner_shard, release, adopt).
ServerConfig sharded_config() {
    auto c = config();
    // Ids must hash onto every shard: a source that does not repeat soon.
    c.random_bytes = [rng = std::make_shared<Rng>(7)](std::span<std::uint8_t> out) {
        for (auto& b : out)
            b = static_cast<std::uint8_t>(rng->next_u64());
    };
    return c;
}

struct ShardedDriver {
    ShardedDriver(std::size_t shards, Store& s, ServerConfig cfg = sharded_config()) : store(s) {
        for (std::size_t k = 0; k < shards; ++k) {
            auto c = cfg;
            c.shard_index = k;
            c.shard_count = shards;
            engines.push_back(std::make_unique<ServerEngine>(c, now));
        }
        inbox.resize(shards);
        store.set_sink(
            [this](StoreResult r) { inbox.at(request_shard(r.id)).emplace_back(std::move(r)); });
        store.set_commit_observer([this](RemoteAppend a) {
            auto shared = std::make_shared<RemoteAppend>(std::move(a));
            shared->frame = std::make_shared<EncodedOnce>();
            for (auto& q : inbox)
                q.emplace_back(shared);
        });
        pump();
        for (auto& e : engines)
            EXPECT_TRUE(e->ready());
    }
    ~ShardedDriver() {
        store.set_sink({});
        store.set_commit_observer({});
    }
    using Input = std::variant<StoreResult, std::shared_ptr<RemoteAppend>>;
    Store& store;
    std::int64_t now = 1'000'000;
    std::vector<std::unique_ptr<ServerEngine>> engines;
    std::vector<std::deque<Input>> inbox;
    std::map<std::uint64_t, std::size_t> shard_of;  // connection -> shard
    std::vector<ServerTransmit> out;
    std::size_t moves = 0;

    void pump() {
        for (bool progress = true; progress;) {
            progress = false;
            for (std::size_t k = 0; k < engines.size(); ++k) {
                while (auto r = engines[k]->poll_store()) {
                    progress = true;
                    store.submit(std::move(*r));
                }
                for (auto& in : std::exchange(inbox[k], {})) {
                    progress = true;
                    if (auto* r = std::get_if<StoreResult>(&in))
                        engines[k]->handle_store(now, std::move(*r));
                    else
                        engines[k]->handle_remote_append(
                            now, *std::get<std::shared_ptr<RemoteAppend>>(in));
                }
            }
        }
        for (auto& e : engines)
            while (auto t = e->poll_transmit())
                out.push_back(std::move(*t));
    }
    void open(std::uint64_t conn) {
        shard_of[conn] = conn % engines.size();
        engines[shard_of[conn]]->handle_open(now, conn);
        pump();
    }
    void send(std::uint64_t conn, const p::Message& m) {
        auto frame = p::decode(p::encode(m));
        auto& shard = shard_of.at(conn);
        if (auto owner = engines[shard]->owner_shard(conn, frame)) {
            auto h = engines[shard]->release(conn);
            ASSERT_TRUE(h.has_value());
            shard = *owner;
            engines[shard]->adopt(now, conn, *h);
            ++moves;
        }
        engines[shard]->handle_decoded(now, conn, std::move(frame));
        pump();
    }
    template <class M>
    std::vector<M> of(std::uint64_t conn) {
        std::vector<M> v;
        for (auto& t : out)
            if (t.conn == conn && t.kind == ServerTransmit::Kind::send)
                if (auto m = p::decode(t.text()); m)
                    if (auto* x = std::get_if<M>(&*m)) v.push_back(*x);
        return v;
    }
    p::Ready identify(std::uint64_t conn, std::string user) {
        open(conn);
        send(conn, p::Identify{std::move(user), {}});
        auto r = of<p::Ready>(conn);
        return r.empty() ? p::Ready{} : r.back();
    }
};

}  // namespace

TEST(Shards, ConfigIsValidated) {
    auto c = config();
    c.shard_count = 0;
    EXPECT_FALSE(c.validate());
    c.shard_count = 257;
    EXPECT_FALSE(c.validate());
    c.shard_count = 4;
    c.shard_index = 4;
    EXPECT_FALSE(c.validate());
    c.shard_index = 3;
    EXPECT_TRUE(c.validate());
    EXPECT_EQ(session_shard("anything", 1), 0u);
}

TEST(Shards, SessionsAreBornOnTheShardTheirIdHashesTo) {
    store::MemoryStore store;
    ShardedDriver d{3, store};
    for (std::uint64_t conn = 1; conn <= 12; ++conn) {
        const auto ready = d.identify(conn, "u" + std::to_string(conn));
        ASSERT_FALSE(ready.session_id.empty());
        EXPECT_EQ(session_shard(ready.session_id, 3), conn % 3) << ready.session_id;
        EXPECT_TRUE(d.engines[conn % 3]->session(ready.session_id).has_value());
    }
    // Four connections opened on each shard, so four sessions each.
    for (std::size_t k = 0; k < 3; ++k)
        EXPECT_EQ(d.engines[k]->session_count(), 4u);
}

TEST(Shards, AResumeOnAnotherShardMovesTheConnectionThere) {
    store::MemoryStore store;
    ShardedDriver d{4, store};
    const auto ready = d.identify(1, "alice");  // session of shard 1
    d.send(1, p::Join{"r", std::nullopt});
    d.engines[1]->handle_close(d.now, 1);
    d.pump();
    // Connection 6 opens on shard 2 and resumes the session of shard 1.
    d.open(6);
    ASSERT_EQ(d.shard_of.at(6), 2u);
    EXPECT_EQ(d.engines[2]->owner_shard(6, p::decode(p::encode(p::Heartbeat{1}))), std::nullopt);
    d.send(6, p::Resume{ready.session_id,
                        ready.resume_token,
                        {p::RoomPosition{"r", p::StreamPosition{store.stream("r").epoch, 0}}}});
    EXPECT_EQ(d.moves, 1u);
    EXPECT_EQ(d.shard_of.at(6), 1u);
    ASSERT_EQ(d.of<p::Resumed>(6).size(), 1u);
    EXPECT_EQ(d.engines[2]->connection_count(), 0u);  // released without a close
    EXPECT_EQ(d.engines[1]->connection_count(), 1u);
    for (const auto& t : d.out)
        EXPECT_NE(t.kind, ServerTransmit::Kind::close);
    // Authenticated now: a second RESUME is refused where it is, not moved.
    EXPECT_EQ(d.engines[1]->owner_shard(6, p::decode(p::encode(p::Resume{"elsewhere", "x", {}}))),
              std::nullopt);
    // A wrong token is refused by the owner with the usual answer.
    d.open(7);
    d.send(7, p::Resume{ready.session_id, "wrong", {}});
    EXPECT_EQ(d.of<p::InvalidSession>(7).size(), 1u);
}

TEST(Shards, SessionsReloadOntoTheirShardsAfterARestart) {
    store::MemoryStore store;
    std::vector<p::Ready> readies;
    {
        ShardedDriver d{3, store};
        for (std::uint64_t conn = 1; conn <= 9; ++conn)
            readies.push_back(d.identify(conn, "u" + std::to_string(conn)));
    }
    ShardedDriver d{3, store};
    std::size_t total = 0;
    for (auto& e : d.engines)
        total += e->session_count();
    EXPECT_EQ(total, 9u);  // each loaded once, by its owner
    for (const auto& r : readies)
        EXPECT_TRUE(d.engines[session_shard(r.session_id, 3)]->session(r.session_id).has_value());
}

TEST(Shards, EveryEventReachesEveryShardOnceInOrderAndEachPublishIsAckedOnce) {
    {
        auto store = std::make_unique<store::MemoryStore>();
        ShardedDriver d{3, *store};
        // Subscribers on every shard, each in two rooms; publishers on every shard.
        const std::vector<std::string> rooms{"a", "b"};
        for (std::uint64_t sub = 1; sub <= 3; ++sub) {
            d.identify(sub, "sub" + std::to_string(sub));
            for (const auto& room : rooms)
                d.send(sub, p::Join{room, std::nullopt});
        }
        for (std::uint64_t pub = 4; pub <= 6; ++pub)
            d.identify(pub, "pub" + std::to_string(pub));
        d.out.clear();
        int n = 0;
        for (int round = 0; round < 10; ++round)
            for (std::uint64_t pub = 4; pub <= 6; ++pub)
                for (const auto& room : rooms)
                    d.send(pub, p::Publish{room, std::to_string(++n), std::to_string(n)});
        // A retry is acknowledged with the original offset and stored once.
        d.send(4, p::Publish{"a", "1", "1"});
        for (std::uint64_t pub = 4; pub <= 6; ++pub) {
            const auto acks = d.of<p::Ack>(pub);
            EXPECT_EQ(acks.size(), pub == 4 ? 21u : 20u);
            std::set<std::string> ids;
            for (const auto& a : acks)
                ids.insert(a.id);
            EXPECT_EQ(ids.size(), 20u);  // every publish once (the retry repeats one)
        }
        for (std::uint64_t sub = 1; sub <= 3; ++sub) {
            std::map<std::string, std::vector<std::uint64_t>> got;
            for (const auto& ev : d.of<p::Event>(sub))
                got[ev.room].push_back(ev.position.offset);
            for (const auto& room : rooms) {
                std::vector<std::uint64_t> want(30);
                std::iota(want.begin(), want.end(), 1);
                EXPECT_EQ(got[room], want) << "subscriber " << sub << " room " << room;
            }
        }
        for (const auto& room : rooms)  // stored once each
            EXPECT_EQ(store->stream(room).head, 30u);
        // Every shard fanned out the others' appends: nobody missed one.
        for (auto& e : d.engines)
            EXPECT_EQ(e->metrics().gap_fills, 0u);
    }
}
