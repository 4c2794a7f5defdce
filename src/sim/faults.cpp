// The faults of a world's fault phase, one every 0.5-8 s: dropped and
// half-open links, server restarts (with or without its sessions or its
// whole store), unreachable and hanging servers, slow links, history loss,
// revoked authentication, refusals, rate limits, offline flaps, drains,
// join errors, rooms closed to a user.

#include "sim/world.hpp"

#include <tether/core/close_codes.hpp>

namespace tether::sim {

void Faults::start() {
    schedule();
}

void Faults::schedule() {
    auto& s = w_.sched;
    s.at(s.now() + duration{s.rng().range(500, 8'000)}, [this] {
        if (w_.healing) return;
        inject();
        schedule();
    });
}

void Faults::inject() {
    auto& s = w_.sched;
    auto& rng = s.rng();
    auto& net = *w_.net;
    auto& server = *w_.server;
    ++w_.checker->stats.faults;
    // Most faults hit one client's connection.
    auto& client = *w_.clients[rng.uniform(w_.clients.size())];
    const auto local = client.core.connection();
    // World-wide ids start at 1: 0 is "no connection".
    const std::uint64_t conn = local ? net.global_of(client.index, *local).value_or(0) : 0;
    const auto now = s.now();
    switch (rng.uniform(16)) {
        case 0:
        case 1:
            s.trace("fault: drop connection of client %zu", client.index);
            if (conn != 0) net.close_client_side(conn, close_code::abnormal, "connection reset");
            break;
        case 2:
            s.trace("fault: half-open link of client %zu", client.index);
            if (conn != 0) net.half_open(conn);
            break;
        case 3: {
            const auto down = duration{rng.range(200, 25'000)};
            const bool lose = rng.chance(0.5);
            const bool lose_store = rng.chance(0.15);
            s.trace("fault: server restart (down %lld ms, sessions %s%s)",
                    static_cast<long long>(down.count()), lose ? "lost" : "kept",
                    lose_store ? ", store lost" : "");
            for (auto id : server.restart(now, lose, lose_store))
                net.close_client_side(id, close_code::abnormal, "server restarted");
            net.server_up = false;
            net.hang_connects = rng.chance(0.3);
            s.at(now + down, [this] {
                w_.sched.trace("server: up");
                w_.net->server_up = true;
            });
            break;
        }
        case 4:
            net.refuse_until = now + duration{rng.range(500, 15'000)};
            net.hang_connects = rng.chance(0.3);
            s.trace("fault: unreachable until %lld ms (%s)",
                    static_cast<long long>(to_ms(net.refuse_until)),
                    net.hang_connects ? "connects hang" : "connects refused");
            break;
        case 5:
            net.slow_until = now + duration{rng.range(1'000, 10'000)};
            s.trace("fault: slow link");
            break;
        case 6: {
            const auto& room = w_.room_names[rng.uniform(w_.room_names.size())];
            s.trace("fault: history lost in %s", room.c_str());
            server.lose_history(now, room);
            break;
        }
        case 7:
            s.trace("fault: authentication of client %zu revoked (4004)", client.index);
            if (rng.chance(0.4)) {
                server.reject_identify = true;
                s.at(now + duration{rng.range(1'000, 20'000)},
                     [this] { w_.server->reject_identify = false; });
            }
            if (conn != 0)
                server.close_conn(now, conn, close_code::authentication_failed, "token revoked");
            w_.drain_server();
            break;
        case 8:
            s.trace("fault: client %zu not permitted (4013)", client.index);
            if (conn != 0) server.close_conn(now, conn, close_code::not_permitted, "not permitted");
            w_.drain_server();
            break;
        case 9:
            s.trace("fault: publish rate limit");
            server.set_rate_limit(true, rng.range(100, 3'000));
            w_.checker->order_check = false;
            s.at(now + duration{rng.range(500, 8'000)},
                 [this] { w_.server->set_rate_limit(false, 0); });
            break;
        case 10:
            s.trace("fault: client %zu rate limited close (4008)", client.index);
            if (conn != 0) server.close_conn(now, conn, close_code::rate_limited, "rate limited");
            w_.drain_server();
            break;
        case 11: {
            const auto d = duration{rng.range(100, 40'000)};
            s.trace("fault: client %zu offline for %lld ms", client.index,
                    static_cast<long long>(d.count()));
            client.online = false;
            client.input(Input::online, [&] { client.core.set_online(now, false); });
            s.at(now + d, [this, &client] {
                if (client.online) return;
                client.online = true;
                w_.sched.trace("net: client %zu online", client.index);
                client.input(Input::online, [&] { client.core.set_online(w_.sched.now(), true); });
            });
            break;
        }
        case 12:
            s.trace("fault: server drain");
            server.drain(now, rng.range(500, 3'000));
            w_.drain_server();
            // The drained process exits; its successor starts shortly after.
            s.at(now + duration{rng.range(100, 3'000)}, [this] {
                w_.sched.trace("server: restarted after drain");
                for (auto id : w_.server->restart(w_.sched.now(), false, false))
                    w_.net->close_client_side(id, close_code::abnormal, "server restarted");
            });
            break;
        case 13:
            s.trace("fault: join errors");
            server.add_join_errors(static_cast<std::uint32_t>(rng.range(1, 2)));
            break;
        case 14: {
            if (rng.chance(0.3)) {
                const auto& room = w_.room_names[rng.uniform(w_.room_names.size())];
                s.trace("fault: room %s closed", room.c_str());
                server.forbidden_rooms.insert(room);
                if (conn != 0)
                    net.close_client_side(conn, close_code::abnormal, "connection reset");
            }
            break;
        }
        default:
            s.trace("fault: latency spike");
            net.slow_until = now + duration{rng.range(200, 2'000)};
            break;
    }
}

void Faults::heal() {
    w_.healing = true;
    w_.sched.trace("heal: faults stop");
    auto& net = *w_.net;
    net.server_up = true;
    net.refuse_until = {};
    net.slow_until = {};
    w_.server->reject_identify = false;
    w_.server->set_rate_limit(false, 0);
    for (auto& c : w_.clients) {
        if (c->online) continue;
        c->online = true;
        c->input(Input::online, [&] { c->core.set_online(w_.sched.now(), true); });
    }
}

}  // namespace tether::sim
