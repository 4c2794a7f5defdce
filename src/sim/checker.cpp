#include "sim/checker.hpp"

#include <algorithm>
#include <set>

namespace tether::sim {

Checker::Checker(Scheduler& sched, Backend& server, Network& net, Sabotage sabotage)
    : sched_(sched),
      server_(server),
      net_(net),
      sabotage_(sabotage),
      sabotage_at_(1 + sched_.rng().uniform(20)) {}

void Checker::fail(std::size_t c, Violation kind, const std::string& what) const {
    throw Failure{kind, "client " + std::to_string(c) + ": " + what};
}

void Checker::add_client(const ClientConfig& cfg) {
    PerClient pc;
    pc.cfg = cfg;
    Backoff b{cfg.backoff};
    pc.retry_lo = b.delay_bounds(1).lo;
    for (std::uint32_t n = 1; n <= 64; ++n)
        pc.retry_hi = std::max(pc.retry_hi, b.delay_bounds(n).hi);
    pc.retry_hi = std::max(pc.retry_hi, cfg.backoff.retry_after_max);
    clients_.push_back(std::move(pc));
    ++stats.clients;
}

void Checker::published(std::size_t c, const std::string& id, const std::string& room) {
    clients_[c].publishes[id] = PublishRecord{room, ++publish_index_, false, false, {}};
    ++stats.published;
}

void Checker::left(std::size_t c, const std::string& room) {
    clients_[c].rooms.erase(room);
}

// ---- attempts ------------------------------------------------------------------------

void Checker::on_attempt(std::size_t c, Input kind, const ClientStatus& before,
                         const ClientStatus& after, bool online) {
    auto& pc = clients_[c];
    const auto now = sched_.now();
    ++stats.attempts;
    if (!online) fail(c, Violation::attempt, "connection attempt while offline");
    if (const auto alive = net_.alive_links(c); !alive.empty())
        fail(c, Violation::attempt,
             "connection attempt while conn#" + std::to_string(alive.front()) + " is still alive");
    const bool stopped =
        before.state == ConnState::error ||
        (before.state == ConnState::disconnected && before.reason != StopReason::offline);
    if (stopped && kind != Input::app)
        fail(c, Violation::attempt, "attempt after a fatal or manual stop without the application");
    // An attempt outside a scheduled retry must have a reason: the
    // application, coming online, or the one re-identify after a fatal close
    // or exhausted attempts.
    const bool scheduled = before.next_retry_at && *before.next_retry_at <= now;
    const bool first =
        before.state == ConnState::disconnected || before.state == ConnState::connecting;
    const bool reauth = std::find(pc.cfg.reauth_codes.begin(), pc.cfg.reauth_codes.end(),
                                  after.close_code) != pc.cfg.reauth_codes.end();
    const bool escalation = reauth || pc.cfg.backoff.attempts_max.has_value();
    if (kind == Input::timeout && !scheduled && !escalation && !first)
        fail(c, Violation::attempt, "unscheduled attempt from a timeout");
    if (kind == Input::network && !escalation)
        fail(c, Violation::attempt, "attempt straight from a network event (no backoff)");
    // No tight loops: bounded attempts in any 10 s window.
    pc.attempt_times.push_back(now);
    const auto window = duration{10'000};
    const auto lo = std::max<std::int64_t>(pc.retry_lo.count(), 100);
    const auto limit = static_cast<std::size_t>(window.count() / lo + 8);
    const auto n =
        static_cast<std::size_t>(std::count_if(pc.attempt_times.begin(), pc.attempt_times.end(),
                                               [&](time_point t) { return now - t < window; }));
    if (n > limit)
        fail(c, Violation::attempt, "retry storm: " + std::to_string(n) + " attempts within 10 s");
}

// ---- events ----------------------------------------------------------------------------

void Checker::delivered(std::size_t c, const MessageReceived& e) {
    auto& rc = clients_[c].rooms[e.room];
    if (!rc.last) fail(c, Violation::delivery, "delivery in " + e.room + " before it was joined");
    if (e.position.epoch != rc.last->epoch || e.position.offset != rc.last->offset + 1)
        fail(c, Violation::delivery,
             "room " + e.room + ": delivered " + std::to_string(e.position.epoch) + "#" +
                 std::to_string(e.position.offset) + " after " + std::to_string(rc.last->epoch) +
                 "#" + std::to_string(rc.last->offset) + " (loss, duplicate or reorder)");
    const auto& arch = server_.archive();
    auto a = arch.find({e.room, e.position.epoch});
    if (a == arch.end() || e.position.offset > a->second.size() ||
        a->second[e.position.offset - 1].data != e.data)
        fail(c, Violation::delivery,
             "room " + e.room + ": payload at " + std::to_string(e.position.offset) +
                 " differs from the store's");
    rc.last = e.position;
    ++stats.delivered;
    if (e.replayed) ++stats.replayed;
}

void Checker::on_event(std::size_t c, const ClientEvent& ev, const ClientCore& core) {
    auto& pc = clients_[c];
    std::visit(
        [&](const auto& e) {
            using T = std::decay_t<decltype(e)>;
            if constexpr (std::is_same_v<T, StatusChanged>) {
                sched_.trace("client %zu status: %s", c, describe(e.status, sched_.now()).c_str());
                if (e.status.state == ConnState::connected && e.status.phase == Phase::none)
                    ++stats.connects;
            } else if constexpr (std::is_same_v<T, RoomStatusChanged>) {
                sched_.trace("client %zu room %s: %s %s", c, e.room.c_str(),
                             std::string{to_string(e.state)}.c_str(), e.reason.c_str());
                if (e.state == RoomState::error && !server_.forbidden_rooms.count(e.room))
                    fail(c, Violation::status,
                         "room " + e.room + " failed without a fatal reason: " + e.reason);
                if (e.state == RoomState::joined) {
                    auto& rc = pc.rooms[e.room];
                    if (!rc.last)
                        for (const auto& ri : core.rooms())
                            if (ri.room == e.room) rc.last = ri.position;
                }
            } else if constexpr (std::is_same_v<T, MessageReceived>) {
                ++deliveries_seen_;
                int copies = 1;
                if (sabotage_ != Sabotage::none && deliveries_seen_ == sabotage_at_)
                    copies = sabotage_ == Sabotage::drop_delivery ? 0 : 2;
                for (int i = 0; i < copies; ++i)
                    delivered(c, e);
            } else if constexpr (std::is_same_v<T, HistoryLost>) {
                sched_.trace("client %zu history lost in %s: %llu#%llu -> %llu#%llu", c,
                             e.room.c_str(),
                             static_cast<unsigned long long>(e.last_delivered.epoch),
                             static_cast<unsigned long long>(e.last_delivered.offset),
                             static_cast<unsigned long long>(e.resumed_at.epoch),
                             static_cast<unsigned long long>(e.resumed_at.offset));
                ++stats.history_lost;
                auto& rc = pc.rooms[e.room];
                if (rc.last != e.last_delivered)
                    fail(c, Violation::history_lost,
                         "history lost reported from a position the app never saw");
                // It must really be unrecoverable: the epoch changed or the
                // position fell out of history.
                const auto s = server_.stream(e.room);
                const bool recoverable = s.epoch == e.last_delivered.epoch &&
                                         e.last_delivered.offset + 1 >= s.first &&
                                         e.last_delivered.offset <= s.head;
                if (recoverable)
                    fail(c, Violation::history_lost, "spurious history loss in " + e.room);
                rc.last = e.resumed_at;
            } else if constexpr (std::is_same_v<T, PublishAcked>) {
                auto it = pc.publishes.find(e.id);
                if (it == pc.publishes.end())
                    fail(c, Violation::publish, "ack for an unknown publish " + e.id);
                if (it->second.acked || it->second.failed)
                    fail(c, Violation::publish, "publish " + e.id + " completed twice");
                const auto& arch = server_.archive();
                auto a = arch.find({e.room, e.position.epoch});
                if (a != arch.end() &&
                    (e.position.offset == 0 || e.position.offset > a->second.size() ||
                     a->second[e.position.offset - 1].publish_id != e.id))
                    fail(c, Violation::publish,
                         "ack for " + e.id + " names an offset holding another message");
                it->second.acked = true;
                it->second.position = e.position;
                sched_.trace("client %zu ack %s -> %s %llu#%llu", c, e.id.c_str(), e.room.c_str(),
                             static_cast<unsigned long long>(e.position.epoch),
                             static_cast<unsigned long long>(e.position.offset));
                ++stats.acked;
            } else if constexpr (std::is_same_v<T, PublishFailed>) {
                auto it = pc.publishes.find(e.id);
                if (it == pc.publishes.end())
                    fail(c, Violation::publish, "failure for an unknown publish " + e.id);
                if (it->second.acked || it->second.failed)
                    fail(c, Violation::publish, "publish " + e.id + " completed twice");
                const bool forbidden =
                    e.error == error::not_permitted && server_.forbidden_rooms.count(e.room);
                if (e.error != error::expired && e.error != error::dropped && !forbidden)
                    fail(c, Violation::publish,
                         "publish failed with unexpected " + e.error.message());
                it->second.failed = true;
                order_check = false;
                ++stats.publish_failed;
                sched_.trace("client %zu publish %s failed: %s", c, e.id.c_str(),
                             e.error.message().c_str());
            } else if constexpr (std::is_same_v<T, SessionStarted>) {
                sched_.trace("client %zu session %s %s", c, e.session_id.c_str(),
                             e.resumed ? "resumed" : "started");
            }
        },
        ev);
}

// ---- status --------------------------------------------------------------------------

void Checker::after_input(std::size_t c, const ClientCore& core, bool online) {
    const auto& pc = clients_[c];
    const ClientStatus& s = core.status().get();
    const auto now = sched_.now();
    if (s.pending != core.pending())
        fail(c, Violation::status, "status pending count differs from the outbox");
    if (s.online != online) fail(c, Violation::status, "status online flag differs from reality");
    if (!online && s.state != ConnState::disconnected && s.state != ConnState::error)
        fail(c, Violation::status, "offline but status is " + std::string{to_string(s.state)});
    if (s.state == ConnState::connected) {
        auto local = core.connection();
        if (!local) fail(c, Violation::status, "status connected without a connection");
        const auto g = net_.global_of(c, *local);
        const Link* l = g ? net_.link(*g) : nullptr;
        if (!l || !l->client_alive)
            fail(c, Violation::status,
                 "status connected on a connection the client knows is closed");
    }
    if (s.next_retry_at && core.connection())
        fail(c, Violation::status, "waiting to retry while a connection is in flight");
    if ((s.state == ConnState::error || s.state == ConnState::disconnected) && core.connection())
        fail(c, Violation::status,
             "status " + std::string{to_string(s.state)} + " while a connection is in flight");
    if (s.next_retry_at) {
        const auto d = *s.next_retry_at - now;
        if (d < duration{0} || d > pc.retry_hi)
            fail(c, Violation::status,
                 "retry delay out of bounds: " + std::to_string(d.count()) + " ms");
    }
    for (const auto& ri : core.rooms())
        if (ri.state == RoomState::joined && !core.connection())
            fail(c, Violation::status, "room joined without a connection");
}

// ---- the end ---------------------------------------------------------------------------

bool Checker::converged(const std::vector<const ClientCore*>& clients) const {
    for (std::size_t c = 0; c < clients.size(); ++c) {
        const auto& core = *clients[c];
        const auto& s = core.status().get();
        if (s.state != ConnState::connected || core.pending() != 0) return false;
        for (const auto& ri : core.rooms()) {
            if (ri.state != RoomState::joined || !ri.position) return false;
            const auto st = server_.stream(ri.room);
            if (ri.position->epoch != st.epoch || ri.position->offset != st.head) return false;
            auto rc = clients_[c].rooms.find(ri.room);
            if (rc == clients_[c].rooms.end() || rc->second.last != ri.position) return false;
        }
    }
    return true;
}

void Checker::final_checks() const {
    // Dedupe: a publish id appears at most once per stream epoch.
    for (const auto& [key, entries] : server_.archive()) {
        std::set<std::string> ids;
        for (const auto& e : entries)
            if (!e.publish_id.empty() && !ids.insert(e.publish_id).second)
                fail(0, Violation::publish,
                     "publish " + e.publish_id + " stored twice in " + key.first);
    }
    for (std::size_t c = 0; c < clients_.size(); ++c) {
        // Every accepted publish completed, and every ack is backed by the store.
        std::map<std::pair<std::string, std::uint64_t>, std::vector<const PublishRecord*>>
            by_stream;
        for (const auto& [id, p] : clients_[c].publishes) {
            if (!p.acked && !p.failed)
                fail(c, Violation::publish, "publish " + id + " neither acknowledged nor failed");
            if (p.acked) by_stream[{p.room, p.position.epoch}].push_back(&p);
        }
        // Order: a client's own publishes land in the order it made them
        // (when nothing could reorder them).
        if (!order_check) continue;
        for (auto& [key, v] : by_stream) {
            std::sort(v.begin(), v.end(), [](auto* a, auto* b) { return a->index < b->index; });
            for (std::size_t i = 1; i < v.size(); ++i)
                if (v[i]->position.offset < v[i - 1]->position.offset)
                    fail(c, Violation::publish, "own publishes reordered in " + key.first);
        }
    }
}

}  // namespace tether::sim
