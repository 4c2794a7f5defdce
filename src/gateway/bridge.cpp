#include "gateway/bridge.hpp"

#include "gateway/system.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace tether::gateway {

namespace asio = boost::asio;

Bridge::Bridge(GatewayOptions o, ServerConfig cfg, Store& s, std::shared_ptr<spdlog::logger> l)
    : opt(std::move(o)),
      store(s),
      log(std::move(l)),
      limits(cfg.limits),
      message_bytes_max(cfg.message_bytes_max),
      room_bytes_max(cfg.room_name_bytes_max),
      ioc(static_cast<int>(std::max(1u, opt.concurrency_hint))),
      engine_strand(asio::make_strand(ioc)),
      engine(std::move(cfg), wall_ms()),
      admin_bucket(RateLimit{opt.admin_rate, opt.admin_burst}, wall_ms()),
      timer_(engine_strand),
      drain_timer_(engine_strand) {}

void Bridge::flush() {
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
            store.submit(std::move(*r));  // may complete at once: into results_
        }
        {
            std::lock_guard lock{results_mu_};
            taking_.swap(results_);
        }
        for (auto& r : taking_) {
            progress = true;
            engine.handle_store(wall_ms(), std::move(r));
        }
        taking_.clear();
        if (!progress) break;
    }
    if (!ready_announced && engine.ready()) {
        // Connections are accepted only once the sessions are loaded (until
        // then they would be refused with 1013).
        ready_announced = true;
        log->info("ready: {} session(s) loaded", engine.session_count());
        if (on_ready) on_ready();
    }
    arm_timer();
}

void Bridge::store_done(StoreResult r) {
    bool kick = false;
    {
        std::lock_guard lock{results_mu_};
        kick = results_.empty();
        results_.push_back(std::move(r));
    }
    // A result from inside flush() is taken by its loop; one from the store's
    // own thread wakes the engine strand (once per batch).
    if (kick && !engine_strand.running_in_this_thread()) on_engine([this] { flush(); });
}

void Bridge::arm_timer() {
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

void Bridge::connection_closed(std::uint64_t id) {
    on_engine([this, id] {
        conns.erase(id);
        engine.handle_close(wall_ms(), id);
        flush();
    });
}

void Bridge::start_drain() {
    on_engine([this] {
        if (draining) return;
        draining = true;
        log->info("draining: asking {} connection(s) to reconnect", conns.size());
        if (on_drain_started) on_drain_started();
        engine.drain(wall_ms(), opt.drain_retry_after_ms);
        flush();
        drain_timer_.expires_after(std::chrono::milliseconds(opt.drain_timeout.count()));
        drain_timer_.async_wait([this](boost::system::error_code e) {
            if (e) return;
            log->warn("drain timeout: {} connection(s) still open, stopping", conns.size());
            finish_drain();
        });
        maybe_finish_drain();
    });
}

void Bridge::maybe_finish_drain() {
    if (draining && live_ws.load() == 0) finish_drain();
}

void Bridge::finish_drain() {
    if (drained) return;
    drained = true;
    log->info("drained ({} store request(s) in flight)", engine.store_in_flight());
    ioc.stop();
}

bool Bridge::take_admin_token() {
    return admin_bucket.take(RateLimit{opt.admin_rate, opt.admin_burst}, wall_ms());
}

}  // namespace tether::gateway
