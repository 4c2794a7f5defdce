#include "gateway/bridge.hpp"

#include "gateway/system.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace tether::gateway {

namespace asio = boost::asio;

namespace {

std::vector<std::unique_ptr<asio::io_context>> make_loops(unsigned threads) {
    std::vector<std::unique_ptr<asio::io_context>> v;
    for (unsigned i = 0; i < std::max(1u, threads); ++i)
        v.push_back(std::make_unique<asio::io_context>(1));
    return v;
}

GatewayOptions clamped(GatewayOptions o) {
    o.shards = std::clamp<std::size_t>(o.shards, 1, ServerConfig::kShardsMax);
    return o;
}

ServerConfig shard_config(ServerConfig cfg, std::size_t index, std::size_t count) {
    cfg.shard_index = index;
    cfg.shard_count = count;
    // The session limit is the gateway's: each shard keeps its share.
    cfg.sessions_max = std::max<std::size_t>(1, (cfg.sessions_max + count - 1) / count);
    return cfg;
}

}  // namespace

EngineStats& EngineStats::operator+=(const EngineStats& o) {
    auto& m = metrics;
    const auto& n = o.metrics;
    m.connections_opened += n.connections_opened;
    m.identifies += n.identifies;
    m.auth_failures += n.auth_failures;
    m.resumes_ok += n.resumes_ok;
    m.resumes_failed += n.resumes_failed;
    m.joins += n.joins;
    m.join_errors += n.join_errors;
    m.publishes += n.publishes;
    m.publish_dupes += n.publish_dupes;
    m.nacks += n.nacks;
    m.deliveries += n.deliveries;
    m.replayed += n.replayed;
    m.replay_pages += n.replay_pages;
    m.heartbeats += n.heartbeats;
    m.idle_closes += n.idle_closes;
    m.sessions_expired += n.sessions_expired;
    m.store_requests += n.store_requests;
    m.store_errors += n.store_errors;
    m.gap_fills += n.gap_fills;
    m.sessions_claimed += n.sessions_claimed;
    m.sessions_taken += n.sessions_taken;
    for (const auto& [code, count] : n.closes_by_code)
        m.closes_by_code[code] += count;
    connections += o.connections;
    sessions += o.sessions;
    rooms += o.rooms;
    store_in_flight += o.store_in_flight;
    appends_in_flight += o.appends_in_flight;
    return *this;
}

// ---- Shard -------------------------------------------------------------------------------

Shard::Shard(Bridge& b, std::size_t i, ServerConfig cfg)
    : bridge(b),
      index(i),
      strand(asio::make_strand(*b.contexts[i % b.contexts.size()])),
      engine(shard_config(std::move(cfg), i, b.opt.shards), wall_ms()),
      timer_(strand) {}

void Shard::flush() {
    for (;;) {
        bool progress = false;
        while (auto t = engine.poll_transmit()) {
            progress = true;
            auto it = conns.find(t->conn);
            if (it == conns.end()) continue;
            if (t->kind == ServerTransmit::Kind::send) {
                it->second->send(std::move(t->frame));
            } else {
                it->second->close(t->code, std::move(t->reason));
                conns.erase(it);
            }
        }
        while (auto r = engine.poll_store()) {
            progress = true;
            bridge.store.submit(std::move(*r));  // may complete at once: into inbox_
        }
        {
            std::lock_guard lock{inbox_mu_};
            taking_.swap(inbox_);
        }
        for (auto& in : taking_) {
            progress = true;
            if (auto* r = std::get_if<StoreResult>(&in))
                engine.handle_store(wall_ms(), std::move(*r));
            else if (auto* claim = std::get_if<SessionClaim>(&in))
                engine.handle_session_claimed(wall_ms(), *claim);
            else
                engine.handle_remote_append(wall_ms(),
                                            *std::get<std::shared_ptr<const RemoteAppend>>(in));
        }
        taking_.clear();
        if (!progress) break;
    }
    if (!ready_announced_ && engine.ready()) {
        ready_announced_ = true;
        bridge.shard_ready(*this);
    }
    arm_timer();
}

void Shard::push(Input in) {
    bool kick = false;
    {
        std::lock_guard lock{inbox_mu_};
        kick = inbox_.empty();
        inbox_.push_back(std::move(in));
    }
    // An input from inside flush() is taken by its loop; one from another
    // thread wakes this strand (once per batch).
    if (kick && !strand.running_in_this_thread()) post([this] { flush(); });
}

void Shard::store_done(StoreResult r) {
    push(std::move(r));
}

void Shard::session_claimed(SessionClaim claim) {
    push(std::move(claim));
}

void Shard::remote_append(std::shared_ptr<const RemoteAppend> a) {
    push(std::move(a));
}

void Shard::arm_timer() {
    const auto next = engine.poll_timeout();
    if (!next || (timer_for_ && *timer_for_ == *next)) return;
    timer_for_ = next;
    timer_.expires_after(std::chrono::milliseconds(std::max<std::int64_t>(0, *next - wall_ms())));
    timer_.async_wait([this](boost::system::error_code ec) {
        if (ec) return;
        timer_for_.reset();
        engine.handle_timeout(wall_ms());
        flush();
    });
}

void Shard::connection_closed(std::uint64_t id) {
    post([this, id] {
        conns.erase(id);
        engine.handle_close(wall_ms(), id);
        flush();
    });
}

EngineStats Shard::stats() const {
    return EngineStats{engine.metrics(),    engine.connection_count(), engine.session_count(),
                       engine.room_count(), engine.store_in_flight(),  engine.appends_in_flight()};
}

// ---- Bridge ------------------------------------------------------------------------------

Bridge::Bridge(GatewayOptions o, const ServerConfig& cfg, Store& s,
               std::shared_ptr<spdlog::logger> l)
    : opt(clamped(std::move(o))),
      store(s),
      log(std::move(l)),
      limits(cfg.limits),
      message_bytes_max(cfg.message_bytes_max),
      room_bytes_max(cfg.room_name_bytes_max),
      contexts(make_loops(opt.concurrency_hint)),
      control(asio::make_strand(*contexts.front())),
      interest(opt.shards),
      admin_bucket(RateLimit{opt.admin_rate, opt.admin_burst}, wall_ms()),
      drain_timer_(control) {
    for (auto& c : contexts)
        busy.push_back(asio::make_work_guard(*c));  // a loop waits for work until the drain ends
    for (std::size_t i = 0; i < opt.shards; ++i) {
        ServerConfig c = cfg;
        if (opt.shards > 1)
            c.on_room_interest = [this, i](std::string_view room, bool tracked) {
                interest.track(i, room, tracked);
            };
        shards.push_back(std::make_unique<Shard>(*this, i, std::move(c)));
    }
}

Shard& Bridge::shard_for_connection(std::uint64_t id, const asio::execution_context& loop) {
    const std::size_t n = contexts.size();
    std::size_t i = 0;
    while (i < n && contexts[i].get() != &loop)
        ++i;
    if (i == n || shards.size() < n) return *shards[id % shards.size()];
    // Shards i, i + n, i + 2n, ... live on loop i.
    const std::size_t here = (shards.size() - i + n - 1) / n;
    return *shards[i + n * (id % here)];
}

void Bridge::shard_ready(Shard&) {
    // Connections are accepted only once every shard loaded its sessions
    // (until then they would be refused with 1013).
    if (shards_ready.fetch_add(1) + 1 != shards.size()) return;
    on_control([this] {
        log->info("ready: {} shard(s)", shards.size());
        if (on_ready) on_ready();
    });
}

void Bridge::start_drain() {
    on_control([this] {
        if (draining.exchange(true)) return;
        log->info("draining: asking every connection to reconnect");
        if (on_drain_started) on_drain_started();
        for (auto& sh : shards)
            sh->post([s = sh.get()] {
                s->engine.drain(wall_ms(), s->bridge.opt.drain_retry_after_ms);
                s->flush();
            });
        drain_timer_.expires_after(std::chrono::milliseconds(opt.drain_timeout.count()));
        drain_timer_.async_wait([this](boost::system::error_code e) {
            if (e) return;
            log->warn("drain timeout: {} connection(s) still open, stopping", live_ws.load());
            finish_drain();
        });
        maybe_finish_drain();
    });
}

void Bridge::maybe_finish_drain() {
    on_control([this] {
        if (draining.load() && live_ws.load() == 0) finish_drain();
    });
}

void Bridge::finish_drain() {
    if (drained) return;
    drained = true;
    log->info("drained");
    busy.clear();
    for (auto& c : contexts)
        c->stop();
}

bool Bridge::take_admin_token() {
    return admin_bucket.take(RateLimit{opt.admin_rate, opt.admin_burst}, wall_ms());
}

}  // namespace tether::gateway
