// A program outside the tether tree, built only against the installed package:
// the sans-I/O core and the network client (tether::core, tether::client).
#include <tether/client.hpp>
#include <tether/core/client_core.hpp>
#include <tether/reconnecting_websocket.hpp>
#include <tether/version.hpp>

#include <chrono>
#include <cstdio>

int main() {
    tether::ClientCore core{tether::ClientConfig{}};
    core.connect(tether::from_ms(0));
    auto t = core.poll_transmit();
    bool ok = t && t->kind == tether::Transmit::Kind::open &&
              tether::proto::decode(R"({"op":"HEARTBEAT_ACK","d":{"ts":1}})");

    // Nothing listens on port 1: the client must report a refused attempt.
    tether::ClientOptions o;
    o.url = "ws://127.0.0.1:1/";
    o.network_monitor = false;
    tether::Client client{o};
    client.close();
    ok = ok && !client.wait_connected(std::chrono::seconds(5));
    tether::ReconnectingWebSocketOptions r;
    r.url = "ws://127.0.0.1:1/";
    r.network_monitor = false;
    tether::ReconnectingWebSocket ws{r};
    ws.close();
    ok = ok && !ws.wait_connected(std::chrono::seconds(5));
    if (tether::version_string != TETHER_PACKAGE_VERSION) {
        std::printf("consumer: header version %s, package version %s\n", TETHER_VERSION_STRING,
                    TETHER_PACKAGE_VERSION);
        ok = false;
    }
    std::puts(ok ? "consumer: ok" : "consumer: broken");
    return ok ? 0 : 1;
}
