#include "sim/backend.hpp"

#include <tether/core/random.hpp>
#include <tether/core/server_engine.hpp>

#include <utility>

namespace tether::sim {
namespace {

// Virtual time 0 maps to a fixed wall-clock instant, so store epochs (which
// start at the wall clock) look like real ones and stay deterministic.
constexpr std::int64_t kWallBaseMs = 1'700'000'000'000;
std::int64_t wall(time_point t) {
    return kWallBaseMs + to_ms(t);
}

class EngineBackend : public Backend {
  public:
    EngineBackend(Scheduler& sched, const EngineSetup& setup) : sched_(sched), rng_(setup.seed) {
        cfg_.server_name = "tether-sim";
        cfg_.heartbeat = setup.heartbeat;
        cfg_.session_ttl = setup.session_ttl;
        cfg_.publish_rate = setup.publish_rate;
        cfg_.publish_burst = setup.publish_burst;
        cfg_.replay_page_events = setup.page_events;
        cfg_.startup_page = 16;  // several pages even for small histories
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
            if (!engine_) return;
            engine_->handle_store(wall(sched_.now()), std::move(r));
            pump();
            if (on_output) on_output();
        });
        start(time_point{});
    }
    const char* name() const override { return "engine"; }

    void on_open(time_point now, std::uint64_t conn) override {
        engine_->handle_open(wall(now), conn);
        open_.insert(conn);
        pump();
    }
    void on_frame(time_point now, std::uint64_t conn, std::string_view text) override {
        engine_->handle_message(wall(now), conn, text);
        pump();
    }
    void on_disconnect(time_point now, std::uint64_t conn) override {
        open_.erase(conn);
        engine_->handle_close(wall(now), conn);
        pump();
    }
    void on_writable(time_point now, std::uint64_t conn) override {
        engine_->handle_writable(wall(now), conn);
        pump();
    }
    std::optional<time_point> next_tick() const override {
        auto t = engine_->poll_timeout();
        if (!t) return std::nullopt;
        return from_ms(*t - kWallBaseMs);
    }
    void on_tick(time_point now) override {
        engine_->handle_timeout(wall(now));
        pump();
    }
    std::vector<ServerOutput> take_outputs() override {
        std::vector<ServerOutput> out = std::exchange(injected_, {});
        while (auto t = engine_->poll_transmit()) {
            if (t->kind == ServerTransmit::Kind::close) open_.erase(t->conn);
            out.push_back(std::move(*t));
        }
        return out;
    }
    void publish_backend(time_point now, std::string_view room, std::string data) override {
        engine_->publish(wall(now), room, std::move(data), {});
        pump();
    }
    void lose_history(time_point, std::string_view room) override { store_->reset_stream(room); }
    std::vector<std::uint64_t> restart(time_point now, bool lose_sessions,
                                       bool lose_store) override {
        std::vector<std::uint64_t> dropped{open_.begin(), open_.end()};
        open_.clear();
        injected_.clear();
        engine_.reset();
        store_->forget_pending();
        if (lose_store)
            store_->replace(static_cast<std::uint64_t>(wall(now)));
        else if (lose_sessions)
            store_->lose_sessions();
        start(now);
        return dropped;
    }
    void drain(time_point now, std::int64_t retry_after_ms) override {
        engine_->drain(wall(now), retry_after_ms);
        pump();
    }
    void close_conn(time_point now, std::uint64_t conn, std::uint16_t code,
                    std::string reason) override {
        if (!open_.count(conn)) return;
        open_.erase(conn);
        engine_->handle_close(wall(now), conn);
        pump();
        injected_.push_back(
            ServerOutput{ServerOutput::Kind::close, conn, {}, code, std::move(reason)});
    }
    std::vector<std::uint64_t> connections() const override { return {open_.begin(), open_.end()}; }
    StreamInfo stream(std::string_view room) const override { return store_->stream(room); }
    const Archive& archive() const override { return archive_; }

  private:
    void start(time_point now) {
        engine_ = std::make_unique<ServerEngine>(cfg_, wall(now));
        pump();
    }
    /// Hands the engine's store requests to the store.
    void pump() {
        while (auto r = engine_->poll_store())
            store_->submit(std::move(*r));
    }

    Scheduler& sched_;
    std::vector<ServerOutput> injected_;
    ServerConfig cfg_;
    Rng rng_;
    Archive archive_;
    std::unique_ptr<DelayedStore> store_;
    std::unique_ptr<ServerEngine> engine_;
    std::set<std::uint64_t> open_;
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
