#include "sim/backend.hpp"

#include <tether/core/assert.hpp>
#include <tether/core/random.hpp>
#include <tether/core/server_engine.hpp>

#include <map>
#include <set>
#include <utility>

namespace tether::sim {
namespace {

// Virtual time 0 maps to a fixed wall-clock instant, so store epochs (which
// start at the wall clock) look like real ones and stay deterministic.
constexpr std::int64_t kWallBaseMs = 1'700'000'000'000;
/// Nodes: the low bits of a store request id are the engine's own id, the
/// top byte names the node (as request_shard names a shard).
constexpr std::uint64_t kIdMask = (std::uint64_t{1} << 56) - 1;
std::int64_t wall(time_point t) {
    return kWallBaseMs + to_ms(t);
}

class EngineBackend : public Backend {
  public:
    // One to three shards, drawn from the seed unless the setup fixes it.
    EngineBackend(Scheduler& sched, const EngineSetup& setup)
        : sched_(sched),
          rng_(setup.seed),
          remote_delay_max_(setup.store.notify_max),
          cluster_(setup.nodes > 1),
          notify_loss_(setup.notify_loss),
          notify_dup_(setup.notify_dup),
          head_check_(setup.head_check),
          shards_(cluster_           ? setup.nodes
                  : setup.shards > 0 ? setup.shards
                                     : 1 + static_cast<std::size_t>(rng_.uniform(3))) {
        cfg_.server_name = "tether-sim";
        cfg_.heartbeat = setup.heartbeat;
        cfg_.session_ttl = setup.session_ttl;
        cfg_.publish_rate = setup.publish_rate;
        cfg_.publish_burst = setup.publish_burst;
        cfg_.replay_page_events = setup.page_events;
        cfg_.startup_page = 16;  // several pages even for small histories
        cfg_.shard_count = shards_;
        tracked_.resize(shards_);
        cfg_.authenticate = [this](std::string_view token, std::int64_t) {
            // "tok-<client>-<generation>" is the user "user-<client>".
            if (reject_identify || token.rfind("tok-", 0) != 0)
                return AuthResult{false, {}, "rejected"};
            const auto dash = token.find('-', 4);
            return AuthResult{true, "user-" + std::string{token.substr(4, dash - 4)}, {}};
        };
        cfg_.authorize = [this](std::string_view, std::string_view room, bool) {
            return !forbidden_rooms.count(room);
        };
        cfg_.random_bytes = [this](std::span<std::uint8_t> out) {
            for (auto& b : out)
                b = static_cast<std::uint8_t>(rng_.next_u64());
        };
        StoreLimits limits;
        limits.history_size = setup.history_size;
        store_ = std::make_unique<DelayedStore>(
            sched_, setup.store, limits, static_cast<std::uint64_t>(wall(time_point{})), archive_);
        store_->set_sink([this](StoreResult r) {
            const auto shard = request_shard(r.id);
            if (shard >= engines_.size() || !engines_[shard]) return;
            if (cluster_) {
                r.id &= kIdMask;
                // A claim tells the node that held the session (Redis: the
                // claim's PUBLISH), late, lost or twice like any notification.
                const auto* c = std::get_if<store_result::Claimed>(&r.value);
                if (!r.error && c && c->ok) {
                    const SessionClaim claim{c->record.id, node_name(shard), c->record.generation};
                    for (std::size_t k = 0; k < shards_; ++k)
                        if (k != shard)
                            notify(k, [claim](ServerEngine& e, std::int64_t now) {
                                e.handle_session_claimed(now, claim);
                            });
                }
            }
            engines_[shard]->handle_store(wall(sched_.now()), std::move(r));
            pump();
            if (on_output) on_output();
        });
        if (cluster_) {
            // The other nodes hear of an append if they track its room, each
            // through its own ordered, delayed, lossy, duplicating channel.
            store_->set_commit_observer([this](RemoteAppend a) {
                const auto from = request_shard(a.request);
                auto shared = std::make_shared<const RemoteAppend>(
                    RemoteAppend{std::move(a.room), a.position, std::move(a.data),
                                 std::make_shared<EncodedOnce>()});
                for (std::size_t k = 0; k < shards_; ++k) {
                    if (k == from || tracked_[k].count(shared->room) == 0) continue;
                    notify(k, [shared](ServerEngine& e, std::int64_t now) {
                        e.handle_remote_append(now, *shared);
                    });
                }
            });
        } else if (shards_ > 1) {
            // The shards hear of each other's appends in commit order, each
            // after its own seeded delay (a shard's queue stays in order):
            // the seed decides how the shards interleave.
            store_->set_commit_observer([this](RemoteAppend a) {
                auto shared = std::make_shared<const RemoteAppend>(
                    RemoteAppend{std::move(a.room), a.position, std::move(a.data),
                                 std::make_shared<EncodedOnce>()});
                for (std::size_t k = 0; k < shards_; ++k) {
                    // As the gateway: only shards that track the room hear of it.
                    if (tracked_[k].count(shared->room) == 0) continue;
                    auto& clock = remote_clock_[k];
                    clock = std::max(clock, sched_.within(remote_delay_max_));
                    sched_.at(clock, [this, k, gen = generation_, shared] {
                        if (gen != generation_) return;  // the process restarted
                        engines_[k]->handle_remote_append(wall(sched_.now()), *shared);
                        pump();
                        if (on_output) on_output();
                    });
                }
            });
        }
        start(time_point{});
    }
    const char* name() const override {
        return cluster_ ? "engine-nodes" : shards_ > 1 ? "engine-sharded" : "engine";
    }

    void on_open(time_point now, std::uint64_t conn) override {
        const auto shard = static_cast<std::size_t>(conn % shards_);
        conn_shard_[conn] = shard;
        engines_[shard]->handle_open(wall(now), conn);
        pump();
    }
    void on_frame(time_point now, std::uint64_t conn, std::string_view text) override {
        auto it = conn_shard_.find(conn);
        if (it == conn_shard_.end()) return;
        auto frame = proto::decode(text, cfg_.limits);
        if (auto owner = engines_[it->second]->owner_shard(conn, frame)) {
            // A RESUME of another shard's session: the connection moves there.
            auto handoff = engines_[it->second]->release(conn);
            TETHER_ASSERT(handoff.has_value());
            it->second = *owner;
            engines_[*owner]->adopt(wall(now), conn, *handoff);
            sched_.trace("conn %llu moves to shard %zu", static_cast<unsigned long long>(conn),
                         *owner);
        }
        engines_[it->second]->handle_decoded(wall(now), conn, std::move(frame));
        pump();
    }
    void on_disconnect(time_point now, std::uint64_t conn) override {
        auto it = conn_shard_.find(conn);
        if (it == conn_shard_.end()) return;
        const auto shard = it->second;
        conn_shard_.erase(it);
        engines_[shard]->handle_close(wall(now), conn);
        pump();
    }
    void on_writable(time_point now, std::uint64_t conn) override {
        auto it = conn_shard_.find(conn);
        if (it == conn_shard_.end()) return;
        engines_[it->second]->handle_writable(wall(now), conn);
        pump();
    }
    std::optional<time_point> next_tick() const override {
        std::optional<std::int64_t> t;
        for (const auto& e : engines_)
            if (auto n = e->poll_timeout(); n && (!t || *n < *t)) t = n;
        if (!t) return std::nullopt;
        return from_ms(*t - kWallBaseMs);
    }
    void on_tick(time_point now) override {
        for (auto& e : engines_)
            e->handle_timeout(wall(now));
        pump();
    }
    std::vector<ServerOutput> take_outputs() override {
        std::vector<ServerOutput> out = std::exchange(injected_, {});
        for (auto& e : engines_) {
            while (auto t = e->poll_transmit()) {
                if (t->kind == ServerTransmit::Kind::close) conn_shard_.erase(t->conn);
                out.push_back(std::move(*t));
            }
        }
        return out;
    }
    void publish_backend(time_point now, std::string_view room, std::string data) override {
        // Any shard may publish for the backend; the seed picks one.
        engines_[rng_.uniform(shards_)]->publish(wall(now), room, std::move(data), {});
        pump();
    }
    void lose_history(time_point, std::string_view room) override {
        if (cluster_ && rng_.chance(0.5)) {
            const auto count = 1 + rng_.uniform(3);
            sched_.trace("store: the newest %llu entries of %.*s lost, new epoch",
                         static_cast<unsigned long long>(count), static_cast<int>(room.size()),
                         room.data());
            store_->lose_newest(room, count);
            return;
        }
        store_->reset_stream(room);
    }
    std::vector<std::uint64_t> restart(time_point now, bool lose_sessions,
                                       bool lose_store) override {
        std::vector<std::uint64_t> dropped;
        for (const auto& [conn, shard] : conn_shard_)
            dropped.push_back(conn);
        conn_shard_.clear();
        injected_.clear();
        engines_.clear();
        ++generation_;
        store_->forget_pending();
        if (lose_store)
            store_->replace(static_cast<std::uint64_t>(wall(now)));
        else if (lose_sessions)
            store_->lose_sessions();
        start(now);
        return dropped;
    }
    void drain(time_point now, std::int64_t retry_after_ms) override {
        for (auto& e : engines_)
            e->drain(wall(now), retry_after_ms);
        pump();
    }
    void close_conn(time_point now, std::uint64_t conn, std::uint16_t code,
                    std::string reason) override {
        auto it = conn_shard_.find(conn);
        if (it == conn_shard_.end()) return;
        const auto shard = it->second;
        conn_shard_.erase(it);
        engines_[shard]->handle_close(wall(now), conn);
        pump();
        injected_.push_back(
            ServerOutput{ServerOutput::Kind::close, conn, {}, code, std::move(reason)});
    }
    std::vector<std::uint64_t> connections() const override {
        std::vector<std::uint64_t> v;
        for (const auto& [conn, shard] : conn_shard_)
            v.push_back(conn);
        return v;
    }
    StreamInfo stream(std::string_view room) const override { return store_->stream(room); }
    const Archive& archive() const override { return archive_; }

  private:
    void start(time_point now) {
        remote_clock_.assign(shards_, time_point{});
        for (auto& t : tracked_)
            t.clear();
        for (std::size_t k = 0; k < shards_; ++k) {
            ServerConfig c = cfg_;
            c.shard_index = cluster_ ? 0 : k;
            c.shard_count = cluster_ ? 1 : shards_;
            c.shared_store = cluster_;
            c.node_id = node_name(k);
            c.on_room_interest = [this, k](std::string_view room, bool tracked) {
                if (tracked)
                    tracked_[k].emplace(room);
                else
                    tracked_[k].erase(std::string{room});
            };
            engines_.push_back(std::make_unique<ServerEngine>(std::move(c), wall(now)));
        }
        if (cluster_) sched_.at(now + head_check_, [this, gen = generation_] { check_heads(gen); });
        pump();
    }
    static std::string node_name(std::size_t k) { return "node-" + std::to_string(k + 1); }
    /// Runs `f` on node `k` after its channel's delay: maybe never, maybe twice.
    void notify(std::size_t k, std::function<void(ServerEngine&, std::int64_t)> f) {
        if (rng_.chance(notify_loss_)) {
            sched_.trace("node %zu: a notification is lost", k + 1);
            return;
        }
        const int copies = rng_.chance(notify_dup_) ? 2 : 1;
        for (int i = 0; i < copies; ++i) {
            auto& clock = remote_clock_[k];
            clock = std::max(clock, sched_.within(remote_delay_max_));
            sched_.at(clock, [this, k, gen = generation_, f] {
                if (gen != generation_) return;  // the process restarted
                f(*engines_[k], wall(sched_.now()));
                pump();
                if (on_output) on_output();
            });
        }
    }
    /// Every node hears of the head of each room it tracks (the Redis
    /// store's head check, which repairs lost notifications).
    void check_heads(std::uint64_t gen) {
        if (gen != generation_) return;
        for (std::size_t k = 0; k < shards_; ++k) {
            const auto rooms = tracked_[k];
            for (const auto& room : rooms) {
                const auto info = store_->stream(room);
                RemoteAppend head{room, {info.epoch, info.head}, {}, nullptr, 0, true, info.first};
                engines_[k]->handle_remote_append(wall(sched_.now()), head);
            }
        }
        pump();
        if (on_output) on_output();
        sched_.at(sched_.now() + head_check_, [this, gen] { check_heads(gen); });
    }
    /// Hands the engines' store requests to the store.
    void pump() {
        for (std::size_t k = 0; k < engines_.size(); ++k)
            while (auto r = engines_[k]->poll_store()) {
                if (cluster_) r->id |= std::uint64_t{k} << 56;
                store_->submit(std::move(*r));
            }
    }
    Scheduler& sched_;
    std::vector<ServerOutput> injected_;
    ServerConfig cfg_;
    Rng rng_;
    duration remote_delay_max_;
    bool cluster_ = false;  ///< the engines are nodes on one shared store, not shards
    double notify_loss_ = 0.0;
    double notify_dup_ = 0.0;
    duration head_check_{2'000};
    std::size_t shards_ = 1;  ///< engines: shards, or nodes when cluster_
    Archive archive_;
    std::unique_ptr<DelayedStore> store_;
    std::vector<std::unique_ptr<ServerEngine>> engines_;
    std::map<std::uint64_t, std::size_t> conn_shard_;          ///< open connections and their shard
    std::vector<std::set<std::string, std::less<>>> tracked_;  ///< per shard: the rooms it tracks
    std::vector<time_point> remote_clock_;  ///< per shard: when its last remote append arrives
    std::uint64_t generation_ = 0;          ///< bumped by a restart
};

/// Adapts SimServer to the Backend interface.
class SimBackend : public Backend {
  public:
    SimBackend(SimServer::Config c, std::uint64_t overlap) : server_(c) {
        server_.sloppy_overlap = overlap;
    }
    const char* name() const override { return "sloppy-sim"; }
    void on_open(time_point now, std::uint64_t conn) override {
        sync(now), server_.on_open(now, conn);
    }
    void on_frame(time_point now, std::uint64_t conn, std::string_view text) override {
        sync(now), server_.on_frame(now, conn, text);
    }
    void on_disconnect(time_point now, std::uint64_t conn) override {
        sync(now), server_.on_disconnect(now, conn);
    }
    void on_writable(time_point, std::uint64_t) override {}
    std::optional<time_point> next_tick() const override { return std::nullopt; }
    void on_tick(time_point) override {}
    std::vector<ServerOutput> take_outputs() override { return server_.take_outputs(); }
    void publish_backend(time_point now, std::string_view room, std::string data) override {
        sync(now), server_.publish_backend(room, std::move(data));
    }
    void lose_history(time_point, std::string_view room) override { server_.lose_history(room); }
    std::vector<std::uint64_t> restart(time_point now, bool lose_sessions,
                                       bool lose_store) override {
        sync(now);
        auto ids = server_.drop_all();
        if (lose_sessions || lose_store) server_.lose_sessions();
        if (lose_store)
            for (const auto& [room, s] : server_.streams())
                server_.lose_history(room);
        return ids;
    }
    void drain(time_point now, std::int64_t retry_after_ms) override {
        sync(now), server_.drain(retry_after_ms);
    }
    void close_conn(time_point now, std::uint64_t conn, std::uint16_t code,
                    std::string reason) override {
        sync(now), server_.close_conn(conn, code, std::move(reason));
    }
    std::vector<std::uint64_t> connections() const override { return server_.connections(); }
    StreamInfo stream(std::string_view room) const override {
        auto it = server_.streams().find(room);
        if (it == server_.streams().end()) return StreamInfo{1, 0, 1};
        const auto& s = it->second;
        return StreamInfo{s.epoch, s.head,
                          s.history.empty() ? s.head + 1 : s.history.front().offset};
    }
    const Archive& archive() const override { return server_.archive(); }
    void set_rate_limit(bool on, std::int64_t retry_after_ms) override {
        server_.rate_limit = on;
        server_.rate_limit_retry_ms = retry_after_ms;
    }
    void add_join_errors(std::uint32_t count) override { server_.join_error_budget += count; }

  private:
    void sync(time_point now) {
        server_.set_now(now);
        server_.reject_identify = reject_identify;
        server_.forbidden_rooms = forbidden_rooms;
    }
    SimServer server_;
};

}  // namespace

std::unique_ptr<Backend> make_engine_backend(Scheduler& sched, const EngineSetup& setup) {
    return std::make_unique<EngineBackend>(sched, setup);
}

std::unique_ptr<Backend> make_sim_backend(SimServer::Config config, std::uint64_t sloppy_overlap) {
    return std::make_unique<SimBackend>(config, sloppy_overlap);
}

}  // namespace tether::sim
