// The application side of a world: backend publishes into the rooms, each
// client publishing, joining and leaving, answering credential requests, and
// retrying after it stopped for good.

#include "sim/world.hpp"

namespace tether::sim {

void Workload::start() {
    schedule_backend();
    for (auto& c : w_.clients) {
        (void)c;
        schedule_client_traffic();
    }
}

void Workload::schedule_backend() {
    auto& s = w_.sched;
    s.at(s.now() + duration{s.rng().range(100, 1'200)}, [this] {
        if (!w_.traffic) return;
        auto& rng = w_.sched.rng();
        if (w_.net->server_up) {
            const auto& room = w_.room_names[rng.uniform(w_.room_names.size())];
            w_.server->publish_backend(w_.sched.now(), room,
                                       "{\"n\":" + std::to_string(rng.uniform(1'000'000)) + "}");
            w_.drain_server();
        }
        schedule_backend();
    });
}

void Workload::schedule_client_traffic() {
    auto& s = w_.sched;
    s.at(s.now() + duration{s.rng().range(300, 3'000)}, [this] {
        if (!w_.traffic) return;
        auto& rng = w_.sched.rng();
        auto& c = *w_.clients[rng.uniform(w_.clients.size())];
        const auto roll = rng.uniform(100);
        const auto& room = w_.room_names[rng.uniform(w_.room_names.size())];
        const auto now = w_.sched.now();
        c.input(Input::app, [&] {
            if (roll < 80) {
                auto res = c.core.publish(now, room,
                                          "{\"from\":" + std::to_string(c.index) + ",\"r\":" +
                                              std::to_string(rng.uniform(1'000'000)) + "}");
                if (res) {
                    w_.checker->published(c.index, *res, room);
                } else if (res.error() != error::outbox_full) {
                    throw Failure{Violation::other, "publish rejected: " + res.error().message()};
                }
            } else if (roll < 92) {
                w_.sched.trace("client %zu app: join %s", c.index, room.c_str());
                if (auto r = c.core.join(now, room); !r && r.error() != error::too_many_rooms)
                    throw Failure{Violation::other, "join rejected: " + r.error().message()};
            } else {
                w_.sched.trace("client %zu app: leave %s", c.index, room.c_str());
                (void)c.core.leave(now, room);
                w_.checker->left(c.index, room);
            }
        });
        schedule_client_traffic();
    });
}

void Workload::on_event(SimClient& c, const ClientEvent& ev) {
    auto& s = w_.sched;
    if (const auto* st = std::get_if<StatusChanged>(&ev)) {
        const bool stopped =
            st->status.state == ConnState::error || (st->status.state == ConnState::disconnected &&
                                                     st->status.reason != StopReason::offline);
        if (stopped) schedule_app_retry(c);
    } else if (const auto* cr = std::get_if<CredentialsNeeded>(&ev)) {
        if (cr->refresh) ++c.token_gen;
        s.trace("client %zu credentials needed (refresh=%d)", c.index, cr->refresh ? 1 : 0);
        const bool fails = s.rng().chance(0.05) && !w_.healing;
        s.at(s.now() + duration{s.rng().range(0, 300)}, [this, &c, fails] {
            c.input(Input::credentials, [&] {
                const auto now = w_.sched.now();
                if (fails)
                    c.core.credentials_failed(now, "identity provider unreachable");
                else
                    c.core.provide_credentials(
                        now, "tok-" + std::to_string(c.index) + "-" + std::to_string(c.token_gen));
            });
        });
    }
}

void Workload::schedule_app_retry(SimClient& c) {
    if (c.app_retry_pending) return;
    c.app_retry_pending = true;
    auto& s = w_.sched;
    s.at(s.now() + duration{s.rng().range(1'000, 10'000)}, [this, &c] {
        c.app_retry_pending = false;
        const auto& st = c.core.status().get();
        const bool stopped = st.state == ConnState::error || (st.state == ConnState::disconnected &&
                                                              st.reason != StopReason::offline);
        if (!stopped) return;
        w_.sched.trace("client %zu app: retry now", c.index);
        c.input(Input::app, [&] { c.core.retry_now(w_.sched.now()); });
    });
}

void Workload::heal() {
    w_.traffic = false;
    for (auto& c : w_.clients) {
        const auto& s = c->core.status().get();
        if (s.state == ConnState::error || s.state == ConnState::disconnected) {
            w_.sched.trace("client %zu app: retry now (healing)", c->index);
            c->input(Input::app, [&] { c->core.retry_now(w_.sched.now()); });
        }
    }
    // One last event per room: a live subscriber learns of a lost stream
    // (new epoch) from the next event, so convergence must include that path.
    for (const auto& room : w_.room_names)
        w_.server->publish_backend(w_.sched.now(), room, "{\"heal\":true}");
    w_.drain_server();
}

}  // namespace tether::sim
