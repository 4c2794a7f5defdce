#include "gateway/gateway.hpp"

#include "gateway/bridge.hpp"
#include "gateway/listener.hpp"
#include "gateway/system.hpp"

namespace tether::gateway {

Gateway::Gateway(GatewayOptions options, ServerConfig engine_config, Store& store,
                 std::shared_ptr<spdlog::logger> log)
    : bridge_(std::make_unique<Bridge>(std::move(options), std::move(engine_config), store,
                                       std::move(log))) {
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
    auto to_every_shard = [&g](RemoteAppend a) {
        if (!a.frame) a.frame = std::make_shared<EncodedOnce>();  // encoded once for all shards
        auto shared = std::make_shared<const RemoteAppend>(std::move(a));
        for (auto& sh : g.shards)
            sh->remote_append(shared);
    };
    // With several shards, each hears of the others' appends in commit order.
    if (g.shards.size() > 1) store.set_commit_observer(to_every_shard);
    // Appends made by other gateway nodes on a shared store (Redis, next).
    store.on_remote_append(to_every_shard);
}

Gateway::~Gateway() {
    bridge_->store.set_sink({});
    bridge_->store.set_commit_observer({});
    bridge_->store.on_remote_append({});
}

std::uint16_t Gateway::port() const noexcept {
    return listener_->port();
}

void Gateway::drain() {
    bridge_->start_drain();
}

boost::asio::any_io_executor Gateway::executor() {
    return bridge_->ioc.get_executor();
}

void Gateway::run() {
    std::call_once(started_, [this] {
        // Start-up: the shards read the store; the listener starts once all are ready.
        for (auto& sh : bridge_->shards)
            sh->post([s = sh.get()] { s->flush(); });
    });
    bridge_->ioc.run();
}

}  // namespace tether::gateway
