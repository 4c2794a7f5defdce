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
    store.set_sink([&g](StoreResult r) { g.store_done(std::move(r)); });
    // Appends made by other gateway nodes on a shared store (Redis, next).
    store.on_remote_append([&g](RemoteAppend a) {
        g.on_engine([&g, a = std::move(a)] {
            g.engine.handle_remote_append(wall_ms(), a);
            g.flush();
        });
    });
}

Gateway::~Gateway() {
    bridge_->store.set_sink({});
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
        // Start-up: the engine reads the store; the listener starts once it is ready.
        bridge_->on_engine([g = bridge_.get()] { g->flush(); });
    });
    bridge_->ioc.run();
}

}  // namespace tether::gateway
