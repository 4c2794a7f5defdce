// The client core driven by fuzzer bytes as a hostile or broken server and a
// capricious application: any frame (raw or well-formed with fuzzed fields),
// opens and closes of current and stale connections, timeouts, commands.
// Whatever happens: the core's assertions hold, every frame it sends
// decodes, and the application never sees an event twice or out of order
// (offsets strictly grow per room and epoch unless HistoryLost said so).
#include "fuzz_input.hpp"

#include <tether/core/assert.hpp>
#include <tether/core/client_core.hpp>
#include <tether/core/protocol.hpp>

#include <cstdio>
#include <map>

namespace {
using namespace tether;
namespace p = tether::proto;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    fuzz::Input in{data, size};
    ClientConfig cfg;
    cfg.seed = 7;
    cfg.outbox.count_max = 8;
    cfg.outbox.inflight_max = 3;
    cfg.dynamic_credentials = in.byte() % 2 == 0;
    ClientCore core{cfg};
    time_point now = from_ms(1'000);
    std::uint64_t conn = 0;  // the last `open` transmit
    std::vector<std::string> publish_ids;
    std::map<std::string, p::StreamPosition> delivered;

    auto drain = [&] {
        while (auto t = core.poll_transmit()) {
            if (t->kind == Transmit::Kind::open) conn = t->conn;
            if (t->kind == Transmit::Kind::send) {
                auto r = p::decode(t->data);
                if (!r) std::fprintf(stderr, "undecodable frame sent: %s\n", t->data.c_str());
                TETHER_ASSERT(r);
                if (auto* pub = std::get_if<p::Publish>(&(*r))) publish_ids.push_back(pub->id);
            }
        }
        while (auto e = core.poll_event()) {
            if (auto* m = std::get_if<MessageReceived>(&*e)) {
                auto it = delivered.find(m->room);
                if (it != delivered.end() && it->second.epoch == m->position.epoch)
                    TETHER_ASSERT(m->position.offset > it->second.offset);
                delivered[m->room] = m->position;
            } else if (auto* h = std::get_if<HistoryLost>(&*e)) {
                delivered.erase(h->room);
            } else if (auto* c = std::get_if<CredentialsNeeded>(&*e)) {
                (void)c;
                if (in.byte() % 4 == 0)
                    core.credentials_failed(now, "no token");
                else
                    core.provide_credentials(now, in.pick({"alice", "bob"}));
            }
        }
    };
    auto room = [&] { return in.pick({"a", "b", "c"}); };
    auto pos = [&] { return p::StreamPosition{in.byte() % 4 == 0 ? 2u : 1u, in.byte()}; };
    auto target = [&] { return in.byte() % 8 == 0 ? conn + 1 + in.byte() % 3 : conn; };

    TETHER_ASSERT(core.join(now, "a"));
    core.connect(now);
    drain();
    for (int steps = 0; steps < 500 && !in.empty(); ++steps) {
        const std::uint8_t op = in.byte();
        switch (op % 24) {
            case 0:
                core.handle_open(now, target());
                break;
            case 1: {
                static constexpr std::uint16_t kCodes[] = {1000, 1001, 1006, 1009, 1012, 1013,
                                                           4000, 4001, 4003, 4004, 4008, 4009,
                                                           4010, 4012, 4013, 4014};
                const std::uint8_t i = in.byte();
                const auto code = i < std::size(kCodes)
                                      ? kCodes[i]
                                      : static_cast<std::uint16_t>(1000 + in.u16() % 4000);
                // A close frame, a transport failure, a certificate
                // rejection, or a close frame followed by a reset.
                const auto how = in.byte() % 4;
                LinkClose why = how == 1   ? LinkClose::failed(error::connection_lost, in.str(16))
                                : how == 2 ? LinkClose::failed(error::certificate_rejected, {})
                                           : LinkClose::closed(code, in.str(16));
                if (how == 3) why.error = error::connection_lost;
                core.handle_close(now, target(), why);
                break;
            }
            case 2:
                now += duration{in.u16()};
                core.handle_timeout(now);
                break;
            case 3:
                core.handle_message(now, target(), in.str());
                break;
            case 4:
                core.handle_message(now, target(),
                                    p::encode(p::Hello{static_cast<std::int64_t>(100 + in.u16()),
                                                       60'000, "s", "1", "n"}));
                break;
            case 5:
                core.handle_message(now, target(),
                                    p::encode(p::Ready{in.pick({"s1", "s2"}), in.str(8), "alice"}));
                break;
            case 6:
                core.handle_message(
                    now, target(),
                    p::encode(p::Resumed{in.pick({"s1", "s2"}), in.pick({"", "rt-2"})}));
                break;
            case 7:
                core.handle_message(now, target(),
                                    p::encode(p::InvalidSession{in.byte() % 2 == 0}));
                break;
            case 8:
                core.handle_message(
                    now, target(), p::encode(p::HeartbeatAck{static_cast<std::int64_t>(in.u16())}));
                break;
            case 9:
                core.handle_message(now, target(),
                                    p::encode(p::Joined{room(), pos(), in.byte() % 3 != 0}));
                break;
            case 10:
                core.handle_message(
                    now, target(),
                    p::encode(p::JoinError{room(),
                                           in.pick({"bad_room", "rate_limited", "not_permitted"}),
                                           "no", in.byte() % 2 == 0}));
                break;
            case 11:
            case 12: {
                const std::string id = publish_ids.empty() || in.byte() % 5 == 0
                                           ? in.str(8)
                                           : publish_ids[in.byte() % publish_ids.size()];
                const auto ps = pos();
                core.handle_message(now, target(),
                                    p::encode(p::Ack{id, room(), ps.epoch, ps.offset}));
                break;
            }
            case 13: {
                const std::string id =
                    publish_ids.empty() ? in.str(8) : publish_ids[in.byte() % publish_ids.size()];
                std::optional<std::int64_t> retry;
                if (in.byte() % 2) retry = in.u16();
                core.handle_message(
                    now, target(),
                    p::encode(p::Nack{id, in.pick({"rate_limited", "bad_room", "internal"}), "x",
                                      retry}));
                break;
            }
            case 14:
            case 15:
            case 16:
                core.handle_message(now, target(),
                                    p::encode(p::Event{room(), pos(), in.pick({"1", "{}", "[]"})}));
                break;
            case 17:
                core.handle_message(
                    now, target(),
                    p::encode(p::Reconnect{"drain", static_cast<std::int64_t>(in.u16())}));
                break;
            case 18:
                (void)core.publish(now, room(), in.pick({"1", R"({"x":1})", "{"}));
                break;
            case 19:
                (void)core.join(now, room());
                break;
            case 20:
                (void)core.leave(now, room());
                break;
            case 21:
                core.set_online(now, in.byte() % 2 == 0);
                break;
            case 22:
                core.retry_now(now);
                break;
            default:
                in.byte() % 2 ? core.close(now) : core.connect(now, true);
                break;
        }
        drain();
    }
    return 0;
}
