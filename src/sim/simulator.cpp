#include "sim/simulator.hpp"

#include "sim/backend.hpp"

#include <tether/core/assert.hpp>
#include <tether/core/client_core.hpp>
#include <tether/core/close_codes.hpp>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <functional>
#include <map>
#include <optional>
#include <set>

namespace tether::sim {
namespace {

/// The client input that produced a batch of outputs, for attempt checks.
enum class Input : std::uint8_t { app, online, credentials, network, timeout };

struct Failure {
    std::string what;
};

/// What the client's link reports: 1006 is a failure without a close frame.
LinkClose link_close(std::uint16_t code, std::string reason) {
    if (code == close_code::abnormal) return LinkClose::failed(error::connection_lost, reason);
    return LinkClose::closed(code, std::move(reason));
}

struct Link {
    enum class State : std::uint8_t { connecting, open, half_open, closed };
    State state = State::connecting;
    bool client_alive = true;  ///< the client still believes this socket may be open
    bool cut = false;          ///< reset or blackholed: frames in flight are lost
    time_point c2s_last{};
    time_point s2c_last{};
};

struct RoomCheck {
    std::optional<proto::StreamPosition> last;  ///< last position shown to the application
};

struct PublishRecord {
    std::string room;
    std::uint64_t index = 0;
    bool acked = false;
    bool failed = false;
    proto::StreamPosition position;
};

class World {
  public:
    explicit World(const Options& o)
        : opt_(o),
          rng_(o.seed ^ 0x7E7E7E7E5EEDull),
          server_(make_backend()),
          client_(client_config()) {
        // Members declared after client_ are initialised after it: derive here.
        cfg_ = client_.config();
        // Tight publish limits keep the order check: the engine holds publishes
        // behind a rate-limited one (its order gate).
        Backoff b{cfg_.backoff};
        retry_lo_ = b.delay_bounds(1).lo;
        for (std::uint32_t n = 1; n <= 64; ++n)
            retry_hi_ = std::max(retry_hi_, b.delay_bounds(n).hi);
        retry_hi_ = std::max(retry_hi_, cfg_.backoff.retry_after_max);
    }

    Result run();

  private:
    // ---- configuration drawn from the seed ----
    std::unique_ptr<Backend> make_backend();
    ClientConfig client_config();

    // ---- scheduling ----
    void at(time_point t, std::function<void()> fn) {
        queue_.emplace(std::make_pair(t, seq_++), std::move(fn));
    }
    duration latency() {
        const auto base = base_latency_.count();
        auto d = base +
                 static_cast<std::int64_t>(rng_.uniform(static_cast<std::uint64_t>(base / 2 + 1)));
        if (now_ < slow_until_) d *= 40;
        return duration{d};
    }
    bool step();

    // ---- client driving ----
    template <class F>
    void client_input(Input kind, F&& fn);
    void drain_client(Input kind, const ClientStatus& before);
    void on_transmit(Transmit& t, Input kind, const ClientStatus& before);
    void on_event(ClientEvent& e);
    void check_attempt(Input kind, const ClientStatus& before);
    void check_status();
    bool contains_reauth(const ClientStatus& s) const;
    void drain_server();

    // ---- traffic and faults ----
    void schedule_backend();
    void schedule_client_traffic();
    void schedule_fault();
    void inject_fault();
    void schedule_app_retry();
    void heal();
    bool converged();
    void final_checks();

    void trace(const char* fmt, ...) __attribute__((format(printf, 2, 3)));
    [[noreturn]] void fail(std::string what) { throw Failure{std::move(what)}; }

    Options opt_;
    Rng rng_;
    SimServer::Config server_cfg_;
    std::uint64_t sloppy_overlap_ = 0;
    bool tight_limits_ = false;  // set by make_backend(): declared before server_
    std::unique_ptr<Backend> server_;
    ClientCore client_;
    ClientConfig cfg_;
    time_point now_{};
    std::uint64_t seq_ = 0;
    std::map<std::pair<time_point, std::uint64_t>, std::function<void()>> queue_;
    std::map<std::uint64_t, Link> links_;

    // network and fault state
    duration base_latency_{10};
    time_point slow_until_{};
    bool server_up_ = true;
    time_point refuse_until_{};
    bool hang_connects_ = false;
    bool online_ = true;
    bool healing_ = false;
    bool traffic_ = true;
    bool app_retry_pending_ = false;
    std::uint64_t token_gen_ = 1;
    std::vector<std::string> room_names_;
    bool order_check_ = true;  // off once rate limits or drops may reorder own publishes

    // checker state
    std::map<std::string, RoomCheck, std::less<>> rooms_;
    std::map<std::string, PublishRecord> publishes_;
    std::uint64_t publish_index_ = 0;
    std::vector<time_point> attempt_times_;
    duration retry_lo_{0};
    duration retry_hi_{0};
    std::uint64_t deliveries_seen_ = 0;
    std::uint64_t sabotage_at_ = 0;

    std::uint64_t hash_ = 0xcbf29ce484222325ull;
    std::vector<std::string> lines_;
    Stats stats_;
};

std::unique_ptr<Backend> World::make_backend() {
    SimServer::Config c;
    c.heartbeat = duration{rng_.range(2'000, 8'000)};
    c.session_ttl = duration{rng_.range(5'000, 90'000)};
    c.history_max = static_cast<std::size_t>(rng_.range(20, 400));
    server_cfg_ = c;
    if (rng_.chance(0.3)) {
        // The at-least-once simulated server: overlapping replays and
        // duplicated live events exercise the client's dedupe.
        sloppy_overlap_ = static_cast<std::uint64_t>(rng_.range(1, 3));
        return make_sim_backend(c, sloppy_overlap_);
    }
    // The real gateway engine; some seeds run it with tight publish limits and
    // tiny replay pages.
    const bool tight = rng_.chance(0.3);
    const double rate = tight ? static_cast<double>(rng_.range(2, 6)) / 2.0 : 50.0;
    const double burst = tight ? static_cast<double>(rng_.range(1, 5)) : 100.0;
    tight_limits_ = tight;
    const auto page = static_cast<std::size_t>(rng_.chance(0.5) ? rng_.range(1, 8) : 256);
    return make_engine_backend(c.history_max, c.heartbeat, c.session_ttl, rate, burst, page,
                               rng_.next_u64());
}

ClientConfig World::client_config() {
    ClientConfig c;
    c.seed = rng_.next_u64();
    c.token = "tok-1";
    c.dynamic_credentials = rng_.chance(0.3);
    const auto pick = rng_.uniform(10);
    if (pick < 6) {
        c.backoff = BackoffPolicy{};  // the default
    } else if (pick < 8) {
        c.backoff.strategy = BackoffStrategy::decorrelated_jitter;
        c.backoff.initial = duration{rng_.range(200, 1'000)};
        c.backoff.max = duration{rng_.range(5'000, 20'000)};
    } else {
        c.backoff.strategy = BackoffStrategy::linear;
        c.backoff.initial = duration{rng_.range(300, 1'000)};
        c.backoff.step = duration{rng_.range(100, 2'000)};
        c.backoff.max = duration{rng_.range(3'000, 15'000)};
    }
    if (rng_.chance(0.2)) c.backoff.first_retry_offset = duration{rng_.range(0, 2'000)};
    if (rng_.chance(0.2)) c.backoff.attempts_max = static_cast<std::uint32_t>(rng_.range(3, 12));
    if (rng_.chance(0.3)) c.heartbeat_ack_timeout = duration{rng_.range(1'000, 6'000)};
    if (rng_.chance(0.3)) {
        c.outbox.count_max = static_cast<std::size_t>(rng_.range(5, 40));
        c.outbox.overflow =
            rng_.chance(0.5) ? OverflowPolicy::drop_oldest : OverflowPolicy::reject_new;
    }
    if (rng_.chance(0.2)) c.outbox.message_ttl = duration{rng_.range(2'000, 60'000)};
    return c;
}

void World::trace(const char* fmt, ...) {
    char body[512];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    char line[600];
    const auto ms = to_ms(now_);
    const int n =
        std::snprintf(line, sizeof line, "[%4lld.%03lld] %s", static_cast<long long>(ms / 1000),
                      static_cast<long long>(ms % 1000), body);
    for (int i = 0; i < n && i < static_cast<int>(sizeof line); ++i) {
        hash_ ^= static_cast<unsigned char>(line[i]);
        hash_ *= 0x100000001b3ull;
    }
    hash_ ^= '\n';
    hash_ *= 0x100000001b3ull;
    if (opt_.keep_trace) lines_.emplace_back(line);
}

// ---- client driving --------------------------------------------------------------

template <class F>
void World::client_input(Input kind, F&& fn) {
    const ClientStatus before = client_.status().get();
    fn();
    drain_client(kind, before);
}

void World::drain_client(Input kind, const ClientStatus& before) {
    while (auto t = client_.poll_transmit())
        on_transmit(*t, kind, before);
    while (auto e = client_.poll_event())
        on_event(*e);
    check_status();
}

void World::check_attempt(Input kind, const ClientStatus& before) {
    ++stats_.attempts;
    if (!online_) fail("connection attempt while offline");
    for (const auto& [id, l] : links_)
        if (l.client_alive && l.state != Link::State::closed)
            fail("connection attempt while conn#" + std::to_string(id) + " is still alive");
    const bool stopped =
        before.state == ConnState::error ||
        (before.state == ConnState::disconnected && before.reason != StopReason::offline);
    if (stopped && kind != Input::app)
        fail("attempt after a fatal or manual stop without the application asking");
    // An attempt outside a scheduled retry must have a reason: the
    // application, coming online, or the one re-identify after a fatal close
    // or exhausted attempts.
    const bool scheduled = before.next_retry_at && *before.next_retry_at <= now_;
    const bool first =
        before.state == ConnState::disconnected || before.state == ConnState::connecting;
    const bool escalation =
        contains_reauth(client_.status().get()) || cfg_.backoff.attempts_max.has_value();
    if (kind == Input::timeout && !scheduled && !escalation && !first)
        fail("unscheduled attempt from a timeout");
    if (kind == Input::network && !escalation)
        fail("attempt straight from a network event (no backoff)");
    // No tight loops: bounded attempts in any 10 s window.
    attempt_times_.push_back(now_);
    const auto window = duration{10'000};
    const auto lo = std::max<std::int64_t>(retry_lo_.count(), 100);
    const auto limit = static_cast<std::size_t>(window.count() / lo + 8);
    const auto n =
        static_cast<std::size_t>(std::count_if(attempt_times_.begin(), attempt_times_.end(),
                                               [&](time_point t) { return now_ - t < window; }));
    if (n > limit) fail("retry storm: " + std::to_string(n) + " attempts within 10 s");
}

void World::on_transmit(Transmit& t, Input kind, const ClientStatus& before) {
    switch (t.kind) {
        case Transmit::Kind::open: {
            if (!cfg_.dynamic_credentials) check_attempt(kind, before);
            trace("client: open conn#%llu", static_cast<unsigned long long>(t.conn));
            Link& l = links_[t.conn];
            const auto id = t.conn;
            if (!server_up_ || now_ < refuse_until_) {
                if (hang_connects_) {
                    l.state = Link::State::closed;  // the SYN goes nowhere; open_timeout must fire
                    return;
                }
                l.state = Link::State::closed;
                at(now_ + latency(), [this, id] {
                    if (!links_[id].client_alive) return;
                    links_[id].client_alive = false;
                    trace("net: conn#%llu refused", static_cast<unsigned long long>(id));
                    client_input(Input::network, [&] {
                        client_.handle_close(
                            now_, id, link_close(close_code::abnormal, "connection refused"));
                    });
                });
                return;
            }
            const auto one_way = latency();
            l.s2c_last = now_ + 2 * one_way;
            at(now_ + one_way, [this, id] {
                Link& lk = links_[id];
                if (lk.state != Link::State::connecting || !server_up_) return;
                lk.state = Link::State::open;
                server_->on_open(now_, id);
                drain_server();
            });
            at(now_ + 2 * one_way, [this, id] {
                Link& lk = links_[id];
                if (lk.state == Link::State::closed || !lk.client_alive) return;
                client_input(Input::network, [&] { client_.handle_open(now_, id); });
            });
            return;
        }
        case Transmit::Kind::send: {
            auto it = links_.find(t.conn);
            if (it == links_.end() || it->second.state != Link::State::open)
                return;  // lost on the wire
            Link& l = it->second;
            l.c2s_last = std::max(l.c2s_last, now_ + latency());
            const auto id = t.conn;
            at(l.c2s_last, [this, id, text = std::move(t.data)] {
                if (links_[id].state != Link::State::open) return;
                if (std::getenv("SIMDBG")) trace("c2s %s", text.c_str());
                server_->on_frame(now_, id, text);
                drain_server();
            });
            return;
        }
        case Transmit::Kind::ping:
            return;  // the tether core never pings at the WebSocket level
        case Transmit::Kind::close:
        case Transmit::Kind::abort: {
            const bool is_close = t.kind == Transmit::Kind::close;
            trace("client: %s conn#%llu %u %s", is_close ? "close" : "abort",
                  static_cast<unsigned long long>(t.conn), t.code, t.reason.c_str());
            Link& l = links_[t.conn];
            const auto id = t.conn;
            const auto prev = l.state;
            l.state = Link::State::closed;
            if (!is_close) l.client_alive = false;
            if (prev == Link::State::open) {
                at(now_ + latency(), [this, id] {
                    server_->on_disconnect(now_, id);
                    drain_server();
                });
                if (is_close) {
                    at(std::max(l.s2c_last, now_ + 2 * latency()), [this, id, code = t.code] {
                        if (!links_[id].client_alive) return;
                        links_[id].client_alive = false;
                        client_input(Input::network, [&] {
                            client_.handle_close(now_, id, link_close(code, "close echoed"));
                        });
                    });
                }
            } else if (is_close && prev != Link::State::half_open) {
                l.client_alive = false;
            }
            // Half-open: the close frame is lost; the client must tear down by itself.
            return;
        }
    }
}

void World::on_event(ClientEvent& ev) {
    std::visit(
        [&](auto& e) {
            using T = std::decay_t<decltype(e)>;
            if constexpr (std::is_same_v<T, StatusChanged>) {
                trace("status: %s", describe(e.status, now_).c_str());
                if (e.status.state == ConnState::connected && e.status.phase == Phase::none)
                    ++stats_.connects;
                const bool stopped = e.status.state == ConnState::error ||
                                     (e.status.state == ConnState::disconnected &&
                                      e.status.reason != StopReason::offline);
                if (stopped) schedule_app_retry();
            } else if constexpr (std::is_same_v<T, RoomStatusChanged>) {
                trace("room %s: %s %s", e.room.c_str(), std::string{to_string(e.state)}.c_str(),
                      e.reason.c_str());
                if (e.state == RoomState::error && !server_->forbidden_rooms.count(e.room))
                    fail("room " + e.room + " failed without a fatal reason: " + e.reason);
                if (e.state == RoomState::joined) {
                    auto& rc = rooms_[e.room];
                    if (!rc.last) {
                        for (const auto& ri : client_.rooms())
                            if (ri.room == e.room) rc.last = ri.position;
                    }
                }
            } else if constexpr (std::is_same_v<T, MessageReceived>) {
                ++deliveries_seen_;
                int copies = 1;
                if (opt_.sabotage != Sabotage::none && deliveries_seen_ == sabotage_at_)
                    copies = opt_.sabotage == Sabotage::drop_delivery ? 0 : 2;
                for (int i = 0; i < copies; ++i) {
                    auto& rc = rooms_[e.room];
                    if (!rc.last) fail("delivery in " + e.room + " before it was joined");
                    if (e.position.epoch != rc.last->epoch ||
                        e.position.offset != rc.last->offset + 1)
                        fail("room " + e.room + ": delivered " + std::to_string(e.position.epoch) +
                             "#" + std::to_string(e.position.offset) + " after " +
                             std::to_string(rc.last->epoch) + "#" +
                             std::to_string(rc.last->offset) + " (loss, duplicate or reorder)");
                    const auto& arch = server_->archive();
                    auto a = arch.find({e.room, e.position.epoch});
                    if (a == arch.end() || e.position.offset > a->second.size() ||
                        a->second[e.position.offset - 1].data != e.data)
                        fail("room " + e.room + ": payload at " +
                             std::to_string(e.position.offset) + " differs from the server's");
                    rc.last = e.position;
                    ++stats_.delivered;
                    if (e.replayed) ++stats_.replayed;
                }
            } else if constexpr (std::is_same_v<T, HistoryLost>) {
                trace("history lost in %s: %llu#%llu -> %llu#%llu", e.room.c_str(),
                      static_cast<unsigned long long>(e.last_delivered.epoch),
                      static_cast<unsigned long long>(e.last_delivered.offset),
                      static_cast<unsigned long long>(e.resumed_at.epoch),
                      static_cast<unsigned long long>(e.resumed_at.offset));
                ++stats_.history_lost;
                auto& rc = rooms_[e.room];
                if (rc.last != e.last_delivered)
                    fail("history lost reported from a position the app never saw");
                // It must really be unrecoverable: epoch changed or the position fell out of
                // history.
                const auto s = server_->stream(e.room);
                const bool recoverable = s.epoch == e.last_delivered.epoch &&
                                         e.last_delivered.offset + 1 >= s.first &&
                                         e.last_delivered.offset <= s.head;
                if (recoverable) fail("spurious history loss in " + e.room);
                rc.last = e.resumed_at;
            } else if constexpr (std::is_same_v<T, PublishAcked>) {
                auto it = publishes_.find(e.id);
                if (it == publishes_.end()) fail("ack for an unknown publish " + e.id);
                if (it->second.acked || it->second.failed)
                    fail("publish " + e.id + " completed twice");
                const auto& arch = server_->archive();
                auto a = arch.find({e.room, e.position.epoch});
                if (a != arch.end() &&
                    (e.position.offset == 0 || e.position.offset > a->second.size() ||
                     a->second[e.position.offset - 1].publish_id != e.id))
                    fail("ack for " + e.id + " names an offset holding another message");
                it->second.acked = true;
                it->second.position = e.position;
                trace("ack %s (#%llu) -> %s %llu#%llu", e.id.c_str(),
                      static_cast<unsigned long long>(it->second.index), e.room.c_str(),
                      static_cast<unsigned long long>(e.position.epoch),
                      static_cast<unsigned long long>(e.position.offset));
                ++stats_.acked;
            } else if constexpr (std::is_same_v<T, PublishFailed>) {
                auto it = publishes_.find(e.id);
                if (it == publishes_.end()) fail("failure for an unknown publish " + e.id);
                if (it->second.acked || it->second.failed)
                    fail("publish " + e.id + " completed twice");
                const bool forbidden =
                    e.error == error::not_permitted && server_->forbidden_rooms.count(e.room);
                if (e.error != error::expired && e.error != error::dropped && !forbidden)
                    fail("publish failed with unexpected " + e.error.message());
                it->second.failed = true;
                order_check_ = false;
                ++stats_.publish_failed;
                trace("publish %s failed: %s", e.id.c_str(), e.error.message().c_str());
            } else if constexpr (std::is_same_v<T, CredentialsNeeded>) {
                check_attempt(Input::app, client_.status().get());
                if (e.refresh) ++token_gen_;
                trace("credentials needed (refresh=%d)", e.refresh ? 1 : 0);
                const bool fails = rng_.chance(0.05) && !healing_;
                at(now_ + duration{rng_.range(0, 300)}, [this, fails] {
                    client_input(Input::credentials, [&] {
                        if (fails)
                            client_.credentials_failed(now_, "identity provider unreachable");
                        else
                            client_.provide_credentials(now_, "tok-" + std::to_string(token_gen_));
                    });
                });
            } else if constexpr (std::is_same_v<T, SessionStarted>) {
                trace("session %s %s", e.session_id.c_str(), e.resumed ? "resumed" : "started");
            } else if constexpr (std::is_same_v<T, LatencySample>) {
                // frequent; not traced
            }
        },
        ev);
}

bool World::contains_reauth(const ClientStatus& s) const {
    return std::find(cfg_.reauth_codes.begin(), cfg_.reauth_codes.end(), s.close_code) !=
           cfg_.reauth_codes.end();
}

void World::check_status() {
    const ClientStatus& s = client_.status().get();
    if (s.pending != client_.pending()) fail("status pending count differs from the outbox");
    if (s.online != online_) fail("status online flag differs from reality");
    if (!online_ && s.state != ConnState::disconnected && s.state != ConnState::error)
        fail("offline but status is " + std::string{to_string(s.state)});
    if (s.state == ConnState::connected) {
        auto c = client_.connection();
        if (!c) fail("status connected without a connection");
        const Link& l = links_[*c];
        if (!l.client_alive) fail("status connected on a connection the client knows is closed");
    }
    if (s.next_retry_at && client_.connection())
        fail("waiting to retry while a connection is in flight");
    if ((s.state == ConnState::error || s.state == ConnState::disconnected) && client_.connection())
        fail("status " + std::string{to_string(s.state)} + " while a connection is in flight");
    if (s.next_retry_at) {
        const auto d = *s.next_retry_at - now_;
        if (d < duration{0} || d > retry_hi_)
            fail("retry delay out of bounds: " + std::to_string(d.count()) + " ms");
    }
    for (const auto& ri : client_.rooms())
        if (ri.state == RoomState::joined && !client_.connection())
            fail("room joined without a connection");
}

void World::drain_server() {
    std::set<std::uint64_t> wrote;
    for (auto& o : server_->take_outputs()) {
        auto it = links_.find(o.conn);
        if (it == links_.end() || it->second.state != Link::State::open) continue;
        Link& l = it->second;
        l.s2c_last = std::max(l.s2c_last, now_ + latency());
        const auto id = o.conn;
        if (o.kind == ServerOutput::Kind::send) {
            wrote.insert(id);
            at(l.s2c_last, [this, id, text = o.text()] {
                // Data sent before an orderly close still arrives (it precedes the FIN).
                const Link& lk = links_[id];
                if (lk.cut || lk.state == Link::State::half_open || !lk.client_alive) return;
                if (std::getenv("SIMDBG")) trace("s2c %s", text.c_str());
                client_input(Input::network, [&] { client_.handle_message(now_, id, text); });
            });
        } else {
            l.state = Link::State::closed;
            trace("server: close conn#%llu %u %s", static_cast<unsigned long long>(id), o.code,
                  o.reason.c_str());
            at(l.s2c_last, [this, id, code = o.code, reason = o.reason] {
                if (!links_[id].client_alive) return;
                links_[id].client_alive = false;
                client_input(Input::network,
                             [&] { client_.handle_close(now_, id, link_close(code, reason)); });
            });
        }
    }
    // The socket drains after a round of latency: the server may write the
    // next replay page then (flow control).
    for (auto id : wrote) {
        at(now_ + latency(), [this, id] {
            if (links_[id].state != Link::State::open || !server_up_) return;
            server_->on_writable(now_, id);
            drain_server();
        });
    }
}

// ---- traffic, faults and the application -------------------------------------------

void World::schedule_backend() {
    at(now_ + duration{rng_.range(100, 1'200)}, [this] {
        if (!traffic_) return;
        if (server_up_) {
            const auto& room = room_names_[rng_.uniform(room_names_.size())];
            server_->publish_backend(now_, room,
                                     "{\"n\":" + std::to_string(rng_.uniform(1'000'000)) + "}");
            drain_server();
        }
        schedule_backend();
    });
}

void World::schedule_client_traffic() {
    at(now_ + duration{rng_.range(300, 3'000)}, [this] {
        if (!traffic_) return;
        const auto roll = rng_.uniform(100);
        const auto& room = room_names_[rng_.uniform(room_names_.size())];
        client_input(Input::app, [&] {
            if (roll < 80) {
                const auto idx = ++publish_index_;
                auto res = client_.publish(now_, room,
                                           "{\"from\":\"sim\",\"i\":" + std::to_string(idx) + "}");
                if (res) {
                    publishes_[*res] = PublishRecord{room, idx, false, false, {}};
                    ++stats_.published;
                } else if (res.error() != error::outbox_full) {
                    fail("publish rejected: " + res.error().message());
                }
            } else if (roll < 92) {
                trace("app: join %s", room.c_str());
                if (auto r = client_.join(now_, room); !r && r.error() != error::too_many_rooms)
                    fail("join rejected: " + r.error().message());
            } else {
                trace("app: leave %s", room.c_str());
                (void)client_.leave(now_, room);
                rooms_.erase(room);
            }
        });
        schedule_client_traffic();
    });
}

void World::schedule_app_retry() {
    if (app_retry_pending_) return;
    app_retry_pending_ = true;
    at(now_ + duration{rng_.range(1'000, 10'000)}, [this] {
        app_retry_pending_ = false;
        const auto& s = client_.status().get();
        const bool stopped = s.state == ConnState::error || (s.state == ConnState::disconnected &&
                                                             s.reason != StopReason::offline);
        if (!stopped) return;
        trace("app: retry now");
        client_input(Input::app, [&] { client_.retry_now(now_); });
    });
}

void World::schedule_fault() {
    at(now_ + duration{rng_.range(500, 8'000)}, [this] {
        if (healing_) return;
        inject_fault();
        schedule_fault();
    });
}

void World::inject_fault() {
    ++stats_.faults;
    const auto conn = client_.connection();
    auto close_client_side = [&](std::uint64_t id, std::uint16_t code, const char* reason) {
        Link& l = links_[id];
        if (l.state != Link::State::open) return;
        l.state = Link::State::closed;
        l.cut = true;
        server_->on_disconnect(now_, id);
        at(now_ + latency(), [this, id, code, r = std::string{reason}] {
            if (!links_[id].client_alive) return;
            links_[id].client_alive = false;
            client_input(Input::network,
                         [&] { client_.handle_close(now_, id, link_close(code, r)); });
        });
    };
    switch (rng_.uniform(16)) {
        case 0:
        case 1:
            trace("fault: drop connection");
            if (conn) close_client_side(*conn, close_code::abnormal, "connection reset");
            break;
        case 2:
            trace("fault: half-open link");
            if (conn && links_[*conn].state == Link::State::open) {
                links_[*conn].state = Link::State::half_open;
                links_[*conn].cut = true;
            }
            break;
        case 3: {
            const auto down = duration{rng_.range(200, 25'000)};
            const bool lose = rng_.chance(0.5);
            const bool lose_store = rng_.chance(0.15);
            trace("fault: server restart (down %lld ms, sessions %s%s)",
                  static_cast<long long>(down.count()), lose ? "lost" : "kept",
                  lose_store ? ", store lost" : "");
            for (auto id : server_->restart(now_, lose, lose_store))
                close_client_side(id, close_code::abnormal, "server restarted");
            server_up_ = false;
            hang_connects_ = rng_.chance(0.3);
            at(now_ + down, [this] {
                trace("server: up");
                server_up_ = true;
            });
            break;
        }
        case 4:
            refuse_until_ = now_ + duration{rng_.range(500, 15'000)};
            hang_connects_ = rng_.chance(0.3);
            trace("fault: unreachable until %lld ms (%s)",
                  static_cast<long long>(to_ms(refuse_until_)),
                  hang_connects_ ? "connects hang" : "connects refused");
            break;
        case 5:
            slow_until_ = now_ + duration{rng_.range(1'000, 10'000)};
            trace("fault: slow link");
            break;
        case 6: {
            const auto& room = room_names_[rng_.uniform(room_names_.size())];
            trace("fault: history lost in %s", room.c_str());
            server_->lose_history(now_, room);
            break;
        }
        case 7:
            trace("fault: authentication revoked (4004)");
            if (rng_.chance(0.4)) {
                server_->reject_identify = true;
                at(now_ + duration{rng_.range(1'000, 20'000)},
                   [this] { server_->reject_identify = false; });
            }
            if (conn)
                server_->close_conn(now_, *conn, close_code::authentication_failed,
                                    "token revoked");
            drain_server();
            break;
        case 8:
            trace("fault: not permitted (4013)");
            if (conn) server_->close_conn(now_, *conn, close_code::not_permitted, "not permitted");
            drain_server();
            break;
        case 9:
            trace("fault: publish rate limit");
            server_->set_rate_limit(true, rng_.range(100, 3'000));
            order_check_ = false;
            at(now_ + duration{rng_.range(500, 8'000)},
               [this] { server_->set_rate_limit(false, 0); });
            break;
        case 10:
            trace("fault: rate limited close (4008)");
            if (conn) server_->close_conn(now_, *conn, close_code::rate_limited, "rate limited");
            drain_server();
            break;
        case 11: {
            const auto d = duration{rng_.range(100, 40'000)};
            trace("fault: offline for %lld ms", static_cast<long long>(d.count()));
            online_ = false;
            client_input(Input::online, [&] { client_.set_online(now_, false); });
            at(now_ + d, [this] {
                if (online_) return;
                online_ = true;
                trace("net: online");
                client_input(Input::online, [&] { client_.set_online(now_, true); });
            });
            break;
        }
        case 12:
            trace("fault: server drain");
            server_->drain(now_, rng_.range(500, 3'000));
            drain_server();
            // The drained process exits; its successor starts shortly after.
            at(now_ + duration{rng_.range(100, 3'000)}, [this] {
                trace("server: restarted after drain");
                server_->restart(now_, false, false);
            });
            break;
        case 13:
            trace("fault: join errors");
            server_->add_join_errors(static_cast<std::uint32_t>(rng_.range(1, 2)));
            break;
        case 14: {
            if (rng_.chance(0.3)) {
                const auto& room = room_names_[rng_.uniform(room_names_.size())];
                trace("fault: room %s closed to the user", room.c_str());
                server_->forbidden_rooms.insert(room);
                if (conn) close_client_side(*conn, close_code::abnormal, "connection reset");
            }
            break;
        }
        default:
            trace("fault: latency spike");
            slow_until_ = now_ + duration{rng_.range(200, 2'000)};
            break;
    }
}

void World::heal() {
    healing_ = true;
    traffic_ = false;
    trace("heal: faults stop");
    server_up_ = true;
    refuse_until_ = {};
    slow_until_ = {};
    server_->reject_identify = false;
    server_->set_rate_limit(false, 0);
    if (!online_) {
        online_ = true;
        client_input(Input::online, [&] { client_.set_online(now_, true); });
    }
    const auto& s = client_.status().get();
    if (s.state == ConnState::error || s.state == ConnState::disconnected) {
        trace("app: retry now (healing)");
        client_input(Input::app, [&] { client_.retry_now(now_); });
    }
    // One last event per room: a live subscriber learns of a lost stream
    // (new epoch) from the next event, so convergence must include that path.
    for (const auto& room : room_names_)
        server_->publish_backend(now_, room, "{\"heal\":true}");
    drain_server();
}

bool World::converged() {
    const auto& s = client_.status().get();
    if (s.state != ConnState::connected || client_.pending() != 0) return false;
    for (const auto& ri : client_.rooms()) {
        if (ri.state != RoomState::joined || !ri.position) return false;
        const auto st = server_->stream(ri.room);
        if (ri.position->epoch != st.epoch || ri.position->offset != st.head) return false;
        auto rc = rooms_.find(ri.room);
        if (rc == rooms_.end() || rc->second.last != ri.position) return false;
    }
    return true;
}

void World::final_checks() {
    // Dedupe: a publish id appears at most once per stream epoch.
    for (const auto& [key, entries] : server_->archive()) {
        std::set<std::string> ids;
        for (const auto& e : entries)
            if (!e.publish_id.empty() && !ids.insert(e.publish_id).second)
                fail("publish " + e.publish_id + " stored twice in " + key.first);
    }
    // Every accepted publish completed, and every ack is backed by the store.
    std::map<std::pair<std::string, std::uint64_t>, std::vector<const PublishRecord*>> by_stream;
    for (const auto& [id, p] : publishes_) {
        if (!p.acked && !p.failed) fail("publish " + id + " neither acknowledged nor failed");
        if (p.acked) by_stream[{p.room, p.position.epoch}].push_back(&p);
    }
    // Order: own publishes land in the order they were made (when nothing could reorder them).
    if (order_check_) {
        for (auto& [key, v] : by_stream) {
            std::sort(v.begin(), v.end(), [](auto* a, auto* b) { return a->index < b->index; });
            for (std::size_t i = 1; i < v.size(); ++i)
                if (v[i]->position.offset < v[i - 1]->position.offset)
                    fail("own publishes reordered in " + key.first);
        }
    }
}

bool World::step() {
    // Three sources of work: scheduled world actions, the client's timers and
    // the server's housekeeping (only while its process is up).
    const std::optional<time_point> client_t = client_.poll_timeout();
    const std::optional<time_point> server_t = server_up_ ? server_->next_tick() : std::nullopt;
    const std::optional<time_point> queue_t =
        queue_.empty() ? std::nullopt : std::optional<time_point>{queue_.begin()->first.first};
    auto earliest = [](std::optional<time_point> a, std::optional<time_point> b) {
        if (!a) return b;
        if (!b) return a;
        return std::min(a, b);
    };
    const auto next = earliest(earliest(queue_t, client_t), server_t);
    if (!next) return false;
    if (queue_t && *queue_t == *next) {
        auto it = queue_.begin();
        if (it->first.first < now_) fail("time went backwards");
        now_ = it->first.first;
        auto fn = std::move(it->second);
        queue_.erase(it);
        fn();
    } else if (client_t && *client_t == *next) {
        // A deadline already passed means "due now" (e.g. a message's TTL ran
        // out while it was in flight on a link that just dropped).
        now_ = std::max(now_, *client_t);
        client_input(Input::timeout, [&] { client_.handle_timeout(now_); });
        const auto again = client_.poll_timeout();
        if (again && *again <= now_)
            fail("busy loop: poll_timeout did not advance after handle_timeout");
    } else {
        now_ = std::max(now_, *server_t);
        server_->on_tick(now_);
        drain_server();
        const auto again = server_->next_tick();
        if (again && *again <= now_) fail("busy loop: the server's timeout did not advance");
    }
    ++stats_.steps;
    if (stats_.steps > 2'000'000) fail("step budget exhausted");
    return true;
}

Result World::run() {
    Result res;
    try {
        base_latency_ = duration{rng_.range(1, 40)};
        const auto room_count = rng_.range(2, 4);
        for (std::int64_t i = 0; i < room_count; ++i)
            room_names_.push_back("room-" + std::to_string(i));
        sabotage_at_ = 1 + rng_.uniform(20);
        trace(
            "seed %llu: %s server, latency %lld ms, heartbeat %lld ms, session ttl %lld ms, "
            "history %zu, backoff %s%s",
            static_cast<unsigned long long>(opt_.seed), server_->name(),
            static_cast<long long>(base_latency_.count()),
            static_cast<long long>(server_cfg_.heartbeat.count()),
            static_cast<long long>(server_cfg_.session_ttl.count()), server_cfg_.history_max,
            std::string{to_string(cfg_.backoff.strategy)}.c_str(),
            cfg_.dynamic_credentials ? ", dynamic credentials" : "");
        client_input(Input::app, [&] {
            for (std::int64_t i = 0; i < room_count; ++i)
                if (rng_.chance(0.7) || i == 0)
                    if (!client_.join(now_, room_names_[static_cast<std::size_t>(i)]))
                        fail("initial join refused");
            client_.connect(now_);
        });
        schedule_backend();
        schedule_client_traffic();
        schedule_fault();
        const time_point fault_end = now_ + opt_.fault_phase;
        while (now_ < fault_end && step()) {
        }
        now_ = std::max(now_, fault_end);
        heal();
        const time_point deadline = now_ + opt_.heal_bound;
        const time_point heal_start = now_;
        bool done = converged();
        while (!done && now_ < deadline && step())
            done = converged();
        if (!done)
            fail("did not converge within the heal bound: " +
                 describe(client_.status().get(), now_));
        stats_.converged_after_ms = (now_ - heal_start).count();
        final_checks();
        trace("converged after %lld ms: %llu delivered, %llu acked",
              static_cast<long long>(stats_.converged_after_ms),
              static_cast<unsigned long long>(stats_.delivered),
              static_cast<unsigned long long>(stats_.acked));
    } catch (const Failure& f) {
        res.ok = false;
        res.failure = f.what;
        res.failed_at_ms = to_ms(now_);
        trace("FAILED: %s", f.what.c_str());
    }
    stats_.virtual_ms = to_ms(now_);
    res.stats = stats_;
    res.trace_hash = hash_;
    res.trace = std::move(lines_);
    return res;
}

}  // namespace

Result run(const Options& options) {
    World w{options};
    return w.run();
}

std::string replay_command(std::uint64_t seed) {
    return "tether sim --seed " + std::to_string(seed);
}

}  // namespace tether::sim
