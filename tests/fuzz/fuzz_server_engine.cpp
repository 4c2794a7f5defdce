// The server engine driven by fuzzer bytes: connections open and close,
// frames arrive (raw bytes or well-formed messages with fuzzed fields,
// including RESUMEs of real and forged sessions), time passes, and the
// store's results come back when and in the order the fuzzer chooses
// (appends of one room in order, as the Store contract says). Whatever
// happens, the engine's own assertions hold, every frame it sends decodes,
// every close code is a documented one, and nothing is acknowledged that the
// store does not hold at that offset.
#include "fuzz_input.hpp"

#include <tether/core/assert.hpp>
#include <tether/core/close_codes.hpp>
#include <tether/core/protocol.hpp>
#include <tether/core/server_engine.hpp>

#include "store/memory_store.hpp"

#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <set>

namespace {

using namespace tether;
namespace p = tether::proto;

std::string data_value(fuzz::Input& in) {
    return in.pick({"1", R"({"a":1})", "\"text\"", "[1,2,3]", "null", "{", "", "\"\\ud800\""});
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    fuzz::Input in{data, size};
    StoreLimits limits;
    limits.dedupe_per_user_max = 8;
    store::MemoryStore store{limits, 1};
    ServerConfig cfg;
    cfg.publish_rate = 5;
    cfg.publish_burst = 3;
    cfg.replay_page_events = 2;
    cfg.authenticate = [](std::string_view token, std::int64_t) {
        if (token.empty() || token == "bad") return AuthResult{false, {}, "refused"};
        // Cuts names anywhere, as a careless authenticator might: the engine
        // must refuse what it could not send back.
        return AuthResult{true, std::string{token.substr(0, 8)}, {}};
    };
    std::uint64_t counter = 0;
    cfg.random_bytes = [&counter](std::span<std::uint8_t> out) {
        for (auto& b : out)
            b = static_cast<std::uint8_t>(++counter * 131);
    };
    ServerEngine engine{cfg, 1'000'000};
    std::int64_t now = 1'000'000;
    std::set<std::uint64_t> open;
    std::vector<p::Ready> readies;  // real sessions, for RESUMEs

    // Results wait here until the fuzzer hands them back; id 0 is the
    // fuzzer's own reads (the ack check).
    struct Waiting {
        StoreResult result;
        std::string append_room;  // set for appends: they complete in order per room
    };
    std::vector<Waiting> waiting;
    std::optional<StoreResult> own;
    std::string last_room;
    store.set_sink([&](StoreResult r) {
        if (r.id == 0) return void(own = std::move(r));
        waiting.push_back(Waiting{std::move(r), std::exchange(last_room, {})});
    });
    auto submit_all = [&] {
        while (auto r = engine.poll_store()) {
            if (auto* a = std::get_if<store_op::Append>(&r->op)) last_room = a->room;
            store.submit(std::move(*r));
        }
    };
    auto deliver = [&](std::size_t i) {
        // An append may not overtake an earlier append of its room.
        for (std::size_t j = 0; j < i; ++j)
            if (!waiting[i].append_room.empty() &&
                waiting[j].append_room == waiting[i].append_room) {
                i = j;
                break;
            }
        auto r = std::move(waiting[i].result);
        waiting.erase(waiting.begin() + static_cast<std::ptrdiff_t>(i));
        engine.handle_store(now, std::move(r));
        submit_all();
    };
    auto stored_at = [&](const std::string& room, std::uint64_t offset) {
        store.submit(StoreRequest{0, store_op::ReadRange{room, offset - 1, offset, 1, 1u << 20}});
        const auto& range = std::get<store_result::Range>(own->value);
        return !range.events.empty() && range.events.front().offset == offset;
    };
    submit_all();
    while (!waiting.empty())
        deliver(0);  // start-up
    TETHER_ASSERT(engine.ready());

    auto drain = [&] {
        while (auto t = engine.poll_transmit()) {
            if (t->kind == ServerTransmit::Kind::close) {
                TETHER_ASSERT(close_code::info(t->code).name != "unknown");
                open.erase(t->conn);
                continue;
            }
            auto r = p::decode(t->text());
            if (!r) std::fprintf(stderr, "undecodable frame sent: %s\n", t->text().c_str());
            TETHER_ASSERT(r);  // the server never sends a frame it could not read itself
            if (auto* ready = std::get_if<p::Ready>(&(*r))) readies.push_back(*ready);
            if (auto* ack = std::get_if<p::Ack>(&(*r)))
                TETHER_ASSERT(stored_at(ack->room, ack->offset));
        }
    };

    for (int steps = 0; steps < 400 && !in.empty(); ++steps) {
        const std::uint8_t op = in.byte();
        const std::uint64_t conn = 1 + op % 4;
        switch (op >> 4) {
            case 0:
                if (!open.count(conn)) {
                    engine.handle_open(now, conn);
                    open.insert(conn);
                }
                break;
            case 1:
                if (open.count(conn)) {
                    engine.handle_close(now, conn);
                    open.erase(conn);
                }
                break;
            case 2:
                now += in.u16() * 10;
                engine.handle_timeout(now);
                break;
            case 3:
                if (open.count(conn)) engine.handle_message(now, conn, in.str());
                break;
            case 4:
                if (open.count(conn))
                    engine.handle_message(
                        now, conn,
                        p::encode(p::Identify{in.pick({"alice", "bob", "bad", ""}),
                                              {in.str(16), in.str(16)}}));
                break;
            case 5: {
                if (!open.count(conn)) break;
                p::Resume r;
                if (!readies.empty() && in.byte() % 4 != 0) {
                    const auto& real = readies[in.byte() % readies.size()];
                    r.session_id = real.session_id;
                    // Right token, or a forged one for a real session.
                    r.resume_token = in.byte() % 3 == 0 ? in.str(64) : real.resume_token;
                } else {
                    r.session_id = in.str(40);
                    r.resume_token = in.str(64);
                }
                if (in.byte() % 2)
                    r.rooms.push_back({in.pick({"a", "b"}),
                                       p::StreamPosition{in.byte() % 3 == 0 ? 7u : 1u, in.byte()}});
                engine.handle_message(now, conn, p::encode(r));
                break;
            }
            case 6:
                if (open.count(conn)) {
                    std::optional<p::StreamPosition> since;
                    if (in.byte() % 2) since = p::StreamPosition{1, in.byte()};
                    engine.handle_message(
                        now, conn, p::encode(p::Join{in.pick({"a", "b", "", "x\x01"}), since}));
                }
                break;
            case 7:
                if (open.count(conn))
                    engine.handle_message(now, conn, p::encode(p::Leave{in.pick({"a", "b"})}));
                break;
            case 8:
            case 9:
            case 10:
                if (open.count(conn))
                    engine.handle_message(
                        now, conn,
                        p::encode(p::Publish{in.pick({"a", "b"}), in.pick({"id1", "id2", "id3"}),
                                             data_value(in)}));
                break;
            case 11:
                if (open.count(conn))
                    engine.handle_message(
                        now, conn, p::encode(p::Heartbeat{static_cast<std::int64_t>(in.u16())}));
                break;
            case 12:
                if (open.count(conn)) engine.handle_writable(now, conn);
                break;
            case 13:
                engine.publish(now, in.pick({"a", "b"}), "1", {});
                break;
            case 14:
                // One store result, in the fuzzer's order.
                if (!waiting.empty()) deliver(in.byte() % waiting.size());
                break;
            default:
                while (!waiting.empty())
                    deliver(0);
                engine.handle_timeout(now);
                break;
        }
        submit_all();
        drain();
    }
    return 0;
}
