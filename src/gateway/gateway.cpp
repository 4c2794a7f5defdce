#include "gateway/gateway.hpp"

#include "gateway/bridge.hpp"
#include "gateway/listener.hpp"
#include "gateway/system.hpp"

#include <vector>

namespace tether::gateway {

Gateway::Gateway(GatewayOptions options, const ServerConfig& engine_config, Store& store,
                 std::shared_ptr<spdlog::logger> log)
    : bridge_(std::make_unique<Bridge>(std::move(options), engine_config, store, std::move(log))) {
    Bridge& g = *bridge_;
    load_tls(g);
    listener_ = std::make_unique<Listener>(g);
    g.on_drain_started = [l = listener_.get()] { l->close(); };
    g.on_ready = [l = listener_.get()] { l->start(); };
    // Each result goes back to the shard that asked (the top byte of its id).
    store.set_sink([&g](StoreResult r) {
        const auto shard = request_shard(r.id);
        if (shard < g.shards.size()) g.shards[shard]->store_done(std::move(r));
    });
    // Every shard that tracks the room hears of an append, in commit order.
    auto to_shards = [&g](RemoteAppend a) {
        const auto bucket = RoomInterest::bucket(a.room);
        std::vector<Shard*> to;
        for (auto& sh : g.shards)
            if (g.shards.size() == 1 || g.interest.tracked(sh->index, bucket))
                to.push_back(sh.get());
        if (to.empty()) return;
        if (!a.frame) a.frame = std::make_shared<EncodedOnce>();  // encoded once for all
        const auto shared = std::make_shared<const RemoteAppend>(std::move(a));
        for (auto* sh : to)
            sh->remote_append(shared);
    };
    if (g.shards.size() > 1) store.set_commit_observer(to_shards);
    // Appends made by other gateway nodes on a shared store (Redis, next).
    store.on_remote_append(to_shards);
    // Sessions another node took: the shard that owns the id lets go.
    store.on_session_claimed([&g](SessionClaim c) {
        const auto shard = session_shard(c.id, g.shards.size());
        g.shards[shard]->session_claimed(std::move(c));
    });
}

Gateway::~Gateway() {
    bridge_->store.set_sink({});
    bridge_->store.set_commit_observer({});
    bridge_->store.on_remote_append({});
    bridge_->store.on_session_claimed({});
}

std::uint16_t Gateway::port() const noexcept {
    return listener_->port();
}

void Gateway::drain() {
    bridge_->start_drain();
}

boost::asio::any_io_executor Gateway::executor() {
    return bridge_->contexts.front()->get_executor();
}

void Gateway::run() {
    std::call_once(started_, [this] {
        // Start-up: the shards read the store; the listener starts once all are ready.
        for (auto& sh : bridge_->shards)
            sh->post([s = sh.get()] { s->flush(); });
    });
    // Each call runs the next loop (calls beyond the loops share them).
    auto& b = *bridge_;
    b.contexts[b.next_runner.fetch_add(1) % b.contexts.size()]->run();
}

}  // namespace tether::gateway
