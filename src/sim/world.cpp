#include "sim/world.hpp"

#include <tether/core/close_codes.hpp>

#include <algorithm>

namespace tether::sim {

// ---- a client ------------------------------------------------------------------------

SimClient::SimClient(World& w, std::size_t i, ClientConfig c)
    : index(i), cfg(c), core(std::move(c)), w_(w) {}

void SimClient::drain(Input kind, const ClientStatus& before) {
    while (auto t = core.poll_transmit()) {
        if (t->kind == Transmit::Kind::open && !cfg.dynamic_credentials)
            w_.checker->on_attempt(index, kind, before, core.status().get(), online);
        w_.net->transmit(index, *t);
    }
    while (auto e = core.poll_event()) {
        if (std::holds_alternative<CredentialsNeeded>(*e))
            w_.checker->on_attempt(index, Input::app, core.status().get(), core.status().get(),
                                   online);
        w_.checker->on_event(index, *e, core);
        w_.workload.on_event(*this, *e);
    }
    w_.checker->after_input(index, core, online);
}

void SimClient::link_opened(std::uint64_t local) {
    input(Input::network, [&] { core.handle_open(w_.sched.now(), local); });
}

void SimClient::link_message(std::uint64_t local, const std::string& text) {
    input(Input::network, [&] { core.handle_message(w_.sched.now(), local, text); });
}

void SimClient::link_closed(std::uint64_t local, LinkClose why) {
    input(Input::network, [&] { core.handle_close(w_.sched.now(), local, why); });
}

// ---- the world -------------------------------------------------------------------------

World::World(const Options& o) : opt(o), sched(o.seed, o.keep_trace) {
    server = make_backend();
    const auto latency = duration{sched.rng().range(1, 40)};
    net = std::make_unique<Network>(sched, *server, latency);
    checker = std::make_unique<Checker>(sched, *server, *net, opt.sabotage);
    // One client (most seeds of old), or three or four sharing the rooms.
    const auto roll = sched.rng().uniform(10);
    const std::size_t n = roll < 4 ? 1 : roll < 8 ? 3 : 4;
    for (std::size_t i = 0; i < n; ++i) {
        auto cfg = client_config(i);
        checker->add_client(cfg);
        clients.push_back(std::make_unique<SimClient>(*this, i, std::move(cfg)));
        net->add_client(*clients.back());
    }
    server->on_output = [this] { drain_server(); };
    const auto room_count = sched.rng().range(2, 4);
    for (std::int64_t i = 0; i < room_count; ++i)
        room_names.push_back("room-" + std::to_string(i));
    sched.trace(
        "seed %llu: %s server, %zu client(s), latency %lld ms, heartbeat %lld ms, session ttl "
        "%lld ms, history %zu, store delays %lld/%lld ms",
        static_cast<unsigned long long>(opt.seed), server->name(), n,
        static_cast<long long>(latency.count()),
        static_cast<long long>(server_cfg.heartbeat.count()),
        static_cast<long long>(server_cfg.session_ttl.count()), server_cfg.history_max,
        static_cast<long long>(store_delays.execute_max.count()),
        static_cast<long long>(store_delays.notify_max.count()));
}

std::unique_ptr<Backend> World::make_backend() {
    auto& rng = sched.rng();
    SimServer::Config c;
    c.heartbeat = duration{rng.range(2'000, 8'000)};
    c.session_ttl = duration{rng.range(5'000, 90'000)};
    c.history_max = static_cast<std::size_t>(rng.range(20, 400));
    server_cfg = c;
    if (rng.chance(0.3)) {
        // The at-least-once simulated server: overlapping replays and
        // duplicated live events exercise the clients' dedupe.
        sloppy_overlap = static_cast<std::uint64_t>(rng.range(1, 3));
        return make_sim_backend(c, sloppy_overlap);
    }
    // The real gateway engine; some seeds run it with tight publish limits
    // and tiny replay pages, most on a store whose requests and results take
    // their time and overtake each other.
    EngineSetup e;
    e.history_size = c.history_max;
    e.heartbeat = c.heartbeat;
    e.session_ttl = c.session_ttl;
    const bool tight = rng.chance(0.3);
    e.publish_rate = tight ? static_cast<double>(rng.range(2, 6)) / 2.0 : 50.0;
    e.publish_burst = tight ? static_cast<double>(rng.range(1, 5)) : 100.0;
    e.page_events = static_cast<std::size_t>(rng.chance(0.5) ? rng.range(1, 8) : 256);
    if (rng.chance(0.75)) {
        store_delays.execute_max = duration{rng.range(0, 80)};
        store_delays.notify_max = duration{rng.range(0, 120)};
    }
    e.store = store_delays;
    if (rng.chance(0.25)) {
        // Several gateway nodes on one shared store (as on Redis): their
        // notifications are late, lost and duplicated.
        e.nodes = static_cast<std::size_t>(rng.range(2, 3));
        e.notify_loss = rng.chance(0.5) ? static_cast<double>(rng.range(1, 30)) / 100.0 : 0.0;
        e.notify_dup = rng.chance(0.5) ? static_cast<double>(rng.range(1, 30)) / 100.0 : 0.0;
        e.head_check = duration{rng.range(500, 3'000)};
    }
    e.seed = rng.next_u64();
    return make_engine_backend(sched, e);
}

ClientConfig World::client_config(std::size_t index) {
    auto& rng = sched.rng();
    ClientConfig c;
    c.seed = rng.next_u64();
    c.token = "tok-" + std::to_string(index) + "-1";  // the user "user-<index>"
    c.dynamic_credentials = rng.chance(0.3);
    const auto pick = rng.uniform(10);
    if (pick < 6) {
        c.backoff = BackoffPolicy{};  // the default
    } else if (pick < 8) {
        c.backoff.strategy = BackoffStrategy::decorrelated_jitter;
        c.backoff.initial = duration{rng.range(200, 1'000)};
        c.backoff.max = duration{rng.range(5'000, 20'000)};
    } else {
        c.backoff.strategy = BackoffStrategy::linear;
        c.backoff.initial = duration{rng.range(300, 1'000)};
        c.backoff.step = duration{rng.range(100, 2'000)};
        c.backoff.max = duration{rng.range(3'000, 15'000)};
    }
    if (rng.chance(0.2)) c.backoff.first_retry_offset = duration{rng.range(0, 2'000)};
    if (rng.chance(0.2)) c.backoff.attempts_max = static_cast<std::uint32_t>(rng.range(3, 12));
    if (rng.chance(0.3)) c.heartbeat_ack_timeout = duration{rng.range(1'000, 6'000)};
    if (rng.chance(0.3)) {
        c.outbox.count_max = static_cast<std::size_t>(rng.range(5, 40));
        c.outbox.overflow =
            rng.chance(0.5) ? OverflowPolicy::drop_oldest : OverflowPolicy::reject_new;
    }
    if (rng.chance(0.2)) c.outbox.message_ttl = duration{rng.range(2'000, 60'000)};
    return c;
}

bool World::converged() const {
    std::vector<const ClientCore*> cores;
    for (const auto& c : clients)
        cores.push_back(&c->core);
    return checker->converged(cores);
}

bool World::step() {
    // Sources of work: scheduled world actions, every client's timers and
    // the server's housekeeping (only while its process is up).
    std::optional<time_point> next = sched.next();
    std::size_t source = clients.size() + 1;  // the queue
    for (std::size_t i = 0; i < clients.size(); ++i) {
        const auto t = clients[i]->core.poll_timeout();
        if (t && (!next || *t < *next)) {
            next = t;
            source = i;
        }
    }
    const auto server_t = net->server_up ? server->next_tick() : std::nullopt;
    if (server_t && (!next || *server_t < *next)) {
        next = server_t;
        source = clients.size();
    }
    if (!next) return false;
    if (source == clients.size() + 1) {
        sched.run_next();
    } else if (source < clients.size()) {
        // A deadline already passed means "due now" (e.g. a message's TTL ran
        // out while it was in flight on a link that just dropped).
        auto& c = *clients[source];
        sched.advance_to(*next);
        c.input(Input::timeout, [&] { c.core.handle_timeout(sched.now()); });
        const auto again = c.core.poll_timeout();
        if (again && *again <= sched.now())
            throw Failure{Violation::busy_loop, "client " + std::to_string(source) +
                                                    ": poll_timeout did not advance after "
                                                    "handle_timeout"};
    } else {
        sched.advance_to(*next);
        server->on_tick(sched.now());
        drain_server();
        const auto again = server->next_tick();
        if (again && *again <= sched.now())
            throw Failure{Violation::busy_loop, "the server's timeout did not advance"};
    }
    if (++checker->stats.steps > 4'000'000)
        throw Failure{Violation::other, "step budget exhausted"};
    return true;
}

Result World::run() {
    Result res;
    try {
        for (auto& c : clients) {
            c->input(Input::app, [&] {
                for (std::size_t i = 0; i < room_names.size(); ++i)
                    if (sched.rng().chance(0.7) || i == 0)
                        if (!c->core.join(sched.now(), room_names[i]))
                            throw Failure{Violation::other, "initial join refused"};
                c->core.connect(sched.now());
            });
        }
        workload.start();
        faults.start();
        const time_point fault_end = sched.now() + opt.fault_phase;
        while (sched.now() < fault_end && step()) {
        }
        sched.advance_to(fault_end);
        faults.heal();
        workload.heal();
        const time_point deadline = sched.now() + opt.heal_bound;
        const time_point heal_start = sched.now();
        bool done = converged();
        while (!done && sched.now() < deadline && step())
            done = converged();
        if (!done) {
            std::string why = "did not converge within the heal bound:";
            for (const auto& c : clients)
                why += " [" + describe(c->core.status().get(), sched.now()) + "]";
            throw Failure{Violation::convergence, why};
        }
        checker->stats.converged_after_ms = (sched.now() - heal_start).count();
        checker->final_checks();
        sched.trace("converged after %lld ms: %llu delivered, %llu acked",
                    static_cast<long long>(checker->stats.converged_after_ms),
                    static_cast<unsigned long long>(checker->stats.delivered),
                    static_cast<unsigned long long>(checker->stats.acked));
    } catch (const Failure& f) {
        res.ok = false;
        res.violation = f.kind;
        res.failure = f.what;
        res.failed_at_ms = to_ms(sched.now());
        sched.trace("FAILED: %s", f.what.c_str());
    }
    checker->stats.virtual_ms = to_ms(sched.now());
    res.stats = checker->stats;
    res.trace_hash = sched.trace_hash();
    res.trace = sched.take_lines();
    return res;
}

}  // namespace tether::sim
