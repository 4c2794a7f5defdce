// A program outside the tether tree, built only against the installed package.
#include <tether/core/client_core.hpp>

#include <cstdio>

int main() {
    tether::ClientCore core{tether::ClientConfig{}};
    core.connect(tether::from_ms(0));
    auto t = core.poll_transmit();
    const bool ok = t && t->kind == tether::Transmit::Kind::open &&
                    tether::proto::decode(R"({"op":"HEARTBEAT_ACK","d":{"ts":1}})");
    std::puts(ok ? "consumer: ok" : "consumer: broken");
    return ok ? 0 : 1;
}
