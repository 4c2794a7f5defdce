#include "redis/redis_store.hpp"

#include "redis/functions.hpp"
#include "store/session_rooms.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <future>
#include <random>

namespace tether::redis {
namespace asio = boost::asio;

namespace {

/// Rooms checked (head) or trimmed per round at most: a round is bounded
/// however many rooms are watched; the rest wait for the next rounds.
constexpr std::size_t kRoomsPerRound = 2'000;

std::uint64_t fnv1a(std::string_view s) noexcept {
    std::uint64_t h = 14695981039346656037ull;
    for (char c : s) {
        h ^= static_cast<unsigned char>(c);
        h *= 1099511628211ull;
    }
    return h;
}

std::int64_t wall_now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

/// Reads {epoch, head, first} from the front of a function's reply.
std::optional<StreamInfo> stream_info(const Reply& r) {
    if (r.type != Reply::Type::array || r.elements.size() < 3) return std::nullopt;
    auto e = r.elements[0].as_u64(), h = r.elements[1].as_u64(), f = r.elements[2].as_u64();
    if (!e || !h || !f || *e == 0) return std::nullopt;
    return StreamInfo{*e, *h, *f};
}

}  // namespace

struct RedisStore::Server {
    Server(asio::io_context& io, const RedisOptions& o, const Endpoint& e)
        : cmd(io,
              Connection::Options{e, "store", o.command_timeout, o.command_timeout, o.pending_max},
              o.log),
          sub(io, Connection::Options{e, "pubsub", o.command_timeout, o.command_timeout, 16},
              o.log) {}
    Connection cmd;
    Connection sub;
    /// The server's run id (INFO server) at the last connect: the term every
    /// room function checks (functions.lua, epoch_of).
    std::string run_id;
};

RedisStore::RedisStore(RedisOptions options)
    : opt_(std::move(options)),
      channel_(opt_.prefix + ":appends"),
      library_(functions_lua()),
      head_timer_(io_),
      probe_timer_(io_) {
    if (opt_.servers.empty()) throw std::invalid_argument("the Redis store needs a server");
    for (const auto& e : opt_.servers) {
        auto s = std::make_unique<Server>(io_, opt_, e);
        Server* sp = s.get();
        if (!opt_.sentinels.empty()) {
            auto resolve = [this](auto done) { find_primary(0, std::move(done)); };
            sp->cmd.set_resolve(resolve);
            sp->sub.set_resolve(resolve);
        }
        // The command connection learns the server's run id (the term of
        // lost-write detection) and loads the functions before it serves.
        auto learn_and_load = [this, sp](std::function<void(bool)> done) {
            sp->cmd.command(
                {"INFO", "server"},
                [this, sp, done](std::error_code ec, Reply&& r) {
                    const auto at = ec ? std::string::npos : r.str.find("run_id:");
                    if (at == std::string::npos) {
                        done(false);
                        return update_health();
                    }
                    const auto id = r.str.substr(at + 7, r.str.find_first_of("\r\n", at) - at - 7);
                    if (!sp->run_id.empty() && id != sp->run_id) {
                        ++stats_.term_changes;
                        if (opt_.log)
                            opt_.log(1, "redis: " + sp->cmd.options().endpoint.name() +
                                            " is another server now (run id " + id +
                                            "): a restart or a failover may have lost the newest "
                                            "writes, so its rooms start new epochs");
                    }
                    sp->run_id = id;
                    ++stats_.function_loads;
                    sp->cmd.command(
                        {"FUNCTION", "LOAD", "REPLACE", library_},
                        [this, done](std::error_code ec2, Reply&& r2) {
                            if (!ec2 && r2.is_error() && opt_.log)
                                opt_.log(1, "redis: FUNCTION LOAD failed: " + r2.str);
                            done(!ec2 && !r2.is_error());
                            update_health();
                        },
                        true);
                },
                true);
        };
        sp->cmd.set_on_up([this, sp, learn_and_load](std::function<void(bool)> done) {
            confirm_primary(sp->cmd, std::move(done), learn_and_load);
        });
        sp->cmd.set_on_down([this](std::string_view) { update_health(); });
        // The pub/sub connection subscribes, then every watched room is
        // checked: notifications may have been lost while it was down.
        sp->sub.set_on_up([this, sp](std::function<void(bool)> up) {
            confirm_primary(sp->sub, std::move(up), [this, sp](std::function<void(bool)> done) {
                sp->sub.subscribe(
                    channel_, [this](std::string_view, std::string_view p) { on_notification(p); },
                    [this, done](bool ok) {
                        done(ok);
                        update_health();
                        if (ok) check_heads();
                    });
            });
        });
        sp->sub.set_on_down([this](std::string_view) { update_health(); });
        servers_.push_back(std::move(s));
    }
    for (const auto& e : opt_.sentinels)
        sentinels_.push_back(std::make_unique<Connection>(
            io_, Connection::Options{e, "sentinel", opt_.command_timeout, opt_.command_timeout, 16},
            opt_.log));
    thread_ = std::thread([this] {
        auto work = asio::make_work_guard(io_);
        for (auto& s : sentinels_)
            s->start();
        for (auto& s : servers_) {
            s->cmd.start();
            s->sub.start();
        }
        head_timer_.expires_after(std::chrono::milliseconds(opt_.head_check.count()));
        head_timer_.async_wait([this](boost::system::error_code ec) {
            if (!ec) check_heads();
        });
        probe_timer_.expires_after(std::chrono::milliseconds(opt_.probe_every.count()));
        probe_timer_.async_wait([this](boost::system::error_code ec) {
            if (!ec) probe();
        });
        io_.run();
    });
}

RedisStore::~RedisStore() {
    RedisStore::flush();
    asio::post(io_, [this] {
        head_timer_.cancel();
        probe_timer_.cancel();
        for (auto& s : servers_) {
            s->cmd.stop();
            s->sub.stop();
        }
        for (auto& s : sentinels_)
            s->stop();
        io_.stop();
    });
    thread_.join();
}

std::size_t RedisStore::server_of(std::string_view room) const noexcept {
    return static_cast<std::size_t>(fnv1a(room) % servers_.size());
}

std::string RedisStore::key(std::string_view room, std::string_view what) const {
    std::string k;
    k.reserve(opt_.prefix.size() + room.size() + 6);
    k.append(opt_.prefix).append(":{").append(room).append("}:").append(what);
    return k;
}

std::string RedisStore::session_key(std::string_view id) const {
    return opt_.prefix + ":session:" + std::string{id};
}

std::uint64_t RedisStore::new_epoch() {
    // Unique and, across nodes with sane clocks, increasing: the time in ms
    // with 10 random bits below it (below 2^53, so JavaScript reads it exactly).
    static thread_local std::mt19937_64 rng{std::random_device{}()};
    const auto ms = static_cast<std::uint64_t>(wall_now_ms());
    return (ms << 10) | (rng() & 1023u);
}

void RedisStore::on_remote_append(const std::function<void(RemoteAppend)>& on_append) {
    std::lock_guard lock{remote_mu_};
    on_remote_ = on_append;
}

void RedisStore::on_session_claimed(const std::function<void(SessionClaim)>& on_claim) {
    std::lock_guard lock{remote_mu_};
    on_claim_ = on_claim;
}

void RedisStore::submit(StoreRequest request) {
    in_flight_.fetch_add(1);
    asio::post(io_, [this, r = std::move(request)]() mutable { run(std::move(r)); });
}

void RedisStore::flush() {
    std::unique_lock lock{flush_mu_};
    flush_cv_.wait_for(lock, std::chrono::milliseconds(4 * opt_.command_timeout.count() + 1'000),
                       [this] { return in_flight_.load() == 0; });
}

bool RedisStore::wait_healthy(duration timeout) {
    const auto until =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout.count());
    while (!healthy_.load()) {
        if (std::chrono::steady_clock::now() >= until) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));  // start-up only
    }
    return true;
}

RedisStats RedisStore::stats() {
    // Fresh from the store's thread (a scrape is rare); the last snapshot if
    // that thread does not answer within a second.
    auto fresh = std::make_shared<std::promise<void>>();
    auto done = fresh->get_future();
    asio::post(io_, [this, fresh] {
        update_health();
        fresh->set_value();
    });
    done.wait_for(std::chrono::seconds(1));
    std::lock_guard lock{stats_mu_};
    return shared_stats_;
}

void RedisStore::update_health() {
    bool ok = true;
    RedisStats snap = stats_;
    snap.commands = {};
    snap.pubsub = {};
    for (const auto& s : servers_) {
        ok = ok && s->cmd.ready() && s->sub.ready();
        auto add = [](ConnectionStats& to, const ConnectionStats& c) {
            to.commands += c.commands;
            to.errors += c.errors;
            to.timeouts += c.timeouts;
            to.reconnects += c.reconnects;
            to.latency_us_sum += c.latency_us_sum;
            to.latency_samples += c.latency_samples;
        };
        add(snap.commands, s->cmd.stats());
        add(snap.pubsub, s->sub.stats());
    }
    snap.watched_rooms = watched_.size();
    healthy_.store(ok);
    std::lock_guard lock{stats_mu_};
    shared_stats_ = snap;
}

// ---- requests -------------------------------------------------------------------------------

void RedisStore::run(StoreRequest request) {
    std::visit(
        [&](auto& op) {
            using T = std::decay_t<decltype(op)>;
            if constexpr (std::is_same_v<T, store_op::Append>)
                append(request.id, std::move(op));
            else if constexpr (std::is_same_v<T, store_op::ReadStream>)
                read_stream(request.id, op);
            else if constexpr (std::is_same_v<T, store_op::ReadRange>)
                read_range(request.id, op);
            else if constexpr (std::is_same_v<T, store_op::Trim>)
                trim(request.id, op);
            else if constexpr (std::is_same_v<T, store_op::SaveSession>)
                save_session(request.id, op.record);
            else if constexpr (std::is_same_v<T, store_op::EraseSession>)
                erase_session(request.id, op.id);
            else if constexpr (std::is_same_v<T, store_op::LoadSessions>)
                load_sessions(request.id, op);
            else if constexpr (std::is_same_v<T, store_op::ClaimSession>)
                claim_session(request.id, op);
        },
        request.op);
}

void RedisStore::finish(StoreResult r) {
    complete(std::move(r));
    if (in_flight_.fetch_sub(1) == 1) {
        std::lock_guard lock{flush_mu_};
        flush_cv_.notify_all();
    }
}

void RedisStore::fail(std::uint64_t id, std::error_code ec) {
    finish(StoreResult{id, ec, store_result::Done{}});
}

std::vector<std::string> RedisStore::some_watched(std::size_t max, std::size_t& pos) const {
    std::vector<std::string> out;
    if (watched_.empty()) return out;
    auto it = watched_.begin();
    pos %= watched_.size();
    std::advance(it, static_cast<std::ptrdiff_t>(pos));
    for (std::size_t n = 0; n < std::min(max, watched_.size()); ++n) {
        out.push_back(it->first);
        if (++it == watched_.end()) it = watched_.begin();
    }
    pos += out.size();
    return out;
}

Connection::Callback RedisStore::done_or_fail(std::uint64_t id) {
    return [this, id](std::error_code ec, Reply&& r) {
        if (ec) return fail(id, ec);
        if (r.is_error()) return fail(id, make_error_code(error::store_failed));
        finish(StoreResult{id, {}, store_result::Done{}});
    };
}

void RedisStore::fcall(Server& s, std::vector<std::string> argv, Connection::Callback cb,
                       bool retry) {
    auto again = retry ? argv : std::vector<std::string>{};
    s.cmd.command(std::move(argv), [this, &s, again = std::move(again), cb = std::move(cb)](
                                       std::error_code ec, Reply&& r) mutable {
        if (!ec && r.is_error() && r.str.rfind("READONLY", 0) == 0) {
            // A failover demoted this server: find the primary again.
            s.cmd.reset("the server is a replica now");
            s.sub.reset("the server is a replica now");
            return cb(make_error_code(error::store_unavailable), {});
        }
        if (!ec && r.is_error() && !again.empty() &&
            r.str.find("Function not found") != std::string::npos) {
            // Redis lost the library (FUNCTION FLUSH, a restart without
            // persistence): load it again, then retry once.
            ++stats_.function_loads;
            s.cmd.command({"FUNCTION", "LOAD", "REPLACE", library_},
                          [this, &s, again = std::move(again), cb = std::move(cb)](
                              std::error_code ec2, Reply&& r2) mutable {
                              if (ec2 || r2.is_error()) return cb(ec2, std::move(r2));
                              fcall(s, std::move(again), std::move(cb), false);
                          });
            return;
        }
        cb(ec, std::move(r));
    });
}

void RedisStore::append(std::uint64_t id, store_op::Append a) {
    Server& s = *servers_[server_of(a.room)];
    const auto& l = opt_.limits;
    std::vector<std::string> argv{"FCALL",
                                  "tether_append",
                                  "4",
                                  key(a.room, "m"),
                                  key(a.room, "s"),
                                  key(a.room, "d"),
                                  key(a.room, "t"),
                                  a.data,
                                  a.publisher,
                                  a.publish_id,
                                  std::to_string(a.at_ms),
                                  std::to_string(a.dedupe_since_ms),
                                  std::to_string(l.history_size),
                                  std::to_string(new_epoch()),
                                  opt_.node_id,
                                  channel_,
                                  std::to_string(opt_.meta_ttl.count()),
                                  std::to_string(l.history_ttl.count()),
                                  std::to_string(l.dedupe_per_user_max),
                                  a.room,
                                  s.run_id};
    fcall(s, std::move(argv),
          [this, id, room = std::move(a.room), data = std::move(a.data)](std::error_code ec,
                                                                         Reply&& r) mutable {
              if (ec) return fail(id, ec);
              if (r.is_error() || r.type != Reply::Type::array || r.elements.size() != 3) {
                  if (opt_.log) opt_.log(1, "redis: append failed: " + r.as_text());
                  return fail(id, make_error_code(error::store_failed));
              }
              auto e = r.elements[0].as_u64(), o = r.elements[1].as_u64();
              if (!e || !o) return fail(id, make_error_code(error::store_failed));
              const bool dup = r.elements[2].integer == 1;
              const proto::StreamPosition pos{*e, *o};
              if (opt_.wait_replicas == 0) {
                  if (!dup && observed()) committed(RemoteAppend{room, pos, data, nullptr, id});
                  return finish(StoreResult{id, {}, store_result::Appended{pos, dup}});
              }
              // --redis-wait: acknowledged once N replicas have it (a
              // duplicate too: its original may not have reached them).
              servers_[server_of(room)]->cmd.command(
                  {"WAIT", std::to_string(opt_.wait_replicas),
                   std::to_string(std::max<std::int64_t>(1, opt_.command_timeout.count() / 2))},
                  [this, id, pos, dup, room = std::move(room), data = std::move(data)](
                      std::error_code ec2, Reply&& w) mutable {
                      const bool ok = !ec2 && w.type == Reply::Type::integer &&
                                      w.integer >= static_cast<std::int64_t>(opt_.wait_replicas);
                      if (ok) {
                          if (!dup && observed())
                              committed(RemoteAppend{room, pos, data, nullptr, id});
                          return finish(StoreResult{id, {}, store_result::Appended{pos, dup}});
                      }
                      ++stats_.wait_failures;
                      // Stored on the primary all the same: this node's
                      // subscribers get it as the other nodes' do; the
                      // publisher gets NACK unavailable and retries.
                      if (!dup) {
                          std::lock_guard lock{remote_mu_};
                          if (on_remote_) on_remote_(RemoteAppend{room, pos, data, nullptr, 0});
                      }
                      fail(id, make_error_code(error::store_unavailable));
                  });
          });
}

std::vector<std::string> RedisStore::room_call(const char* function, std::string_view room) {
    const auto cutoff = wall_now_ms() - opt_.limits.history_ttl.count();
    return {"FCALL",
            function,
            "4",
            key(room, "m"),
            key(room, "s"),
            key(room, "d"),
            key(room, "t"),
            std::to_string(new_epoch()),
            std::to_string(opt_.meta_ttl.count()),
            std::to_string(cutoff),
            servers_[server_of(room)]->run_id};
}

std::vector<std::string> RedisStore::range_call(std::string_view room, std::uint64_t after,
                                                std::uint64_t up_to, std::size_t max_events) {
    auto argv = room_call("tether_range", room);
    argv.push_back(std::to_string(after));
    argv.push_back(std::to_string(up_to));
    argv.push_back(std::to_string(std::max<std::size_t>(1, max_events)));
    return argv;
}

void RedisStore::read_stream(std::uint64_t id, const store_op::ReadStream& rs) {
    fcall(*servers_[server_of(rs.room)], room_call("tether_stream", rs.room),
          [this, id, room = rs.room](std::error_code ec, Reply&& r) {
              if (ec) return fail(id, ec);
              auto info = stream_info(r);
              if (!info) {
                  if (opt_.log) opt_.log(1, "redis: stream read failed: " + r.as_text());
                  return fail(id, make_error_code(error::store_failed));
              }
              observe(room, info->epoch, info->head);
              finish(StoreResult{id, {}, store_result::Stream{*info}});
          });
}

void RedisStore::read_range(std::uint64_t id, const store_op::ReadRange& rr) {
    fcall(*servers_[server_of(rr.room)], range_call(rr.room, rr.after, rr.up_to, rr.max_events),
          [this, id, max_bytes = rr.max_bytes](std::error_code ec, Reply&& r) {
              if (ec) return fail(id, ec);
              auto info = stream_info(r);
              if (!info) return fail(id, make_error_code(error::store_failed));
              store_result::Range out;
              out.info = *info;
              std::size_t bytes = 0;
              for (std::size_t i = 3; i < r.elements.size(); ++i) {
                  auto& e = r.elements[i];
                  if (e.type != Reply::Type::array || e.elements.size() != 5) break;
                  auto off = e.elements[0].as_u64();
                  auto at = e.elements[1].as_u64();
                  if (!off) break;
                  if (!out.events.empty() && bytes + e.elements[2].str.size() > max_bytes) break;
                  bytes += e.elements[2].str.size();
                  out.events.push_back(StoredEvent{
                      *off, static_cast<std::int64_t>(at.value_or(0)), std::move(e.elements[2].str),
                      std::move(e.elements[3].str), std::move(e.elements[4].str)});
              }
              finish(StoreResult{id, {}, std::move(out)});
          });
}

void RedisStore::trim(std::uint64_t id, const store_op::Trim& t) {
    // The appends trim as they go; this covers the watched rooms that went
    // quiet. The publish log expires by itself (PEXPIRE of its keys).
    const auto cutoff = t.now_ms - opt_.limits.history_ttl.count();
    auto left = std::make_shared<std::size_t>(1);
    auto done = [this, id, left] {
        if (--*left == 0) finish(StoreResult{id, {}, store_result::Done{}});
    };
    for (const auto& room : some_watched(kRoomsPerRound, trim_pos_)) {
        ++*left;
        fcall(*servers_[server_of(room)],
              {"FCALL", "tether_trim", "1", key(room, "s"), std::to_string(cutoff)},
              [done](std::error_code, Reply&&) { done(); });
    }
    done();
}

void RedisStore::save_session(std::uint64_t id, const SessionRecord& rec) {
    fcall(*servers_.front(),
          {"FCALL", "tether_save_session", "2", session_key(rec.id),
           opt_.prefix + ":sessions:" + opt_.node_id, rec.id, rec.resume_token, rec.user,
           store::rooms_to_json(rec.rooms), std::to_string(rec.expires_at_ms), opt_.node_id,
           std::to_string(rec.generation), std::to_string(opt_.held_session_ttl.count())},
          [this, id](std::error_code ec, Reply&& r) {
              if (ec) return fail(id, ec);
              if (r.is_error()) return fail(id, make_error_code(error::store_failed));
              if (r.integer == 1) ++stats_.stale_saves;  // another node holds it now
              finish(StoreResult{id, {}, store_result::Done{}});
          });
}

void RedisStore::erase_session(std::uint64_t id, const std::string& session) {
    fcall(*servers_.front(),
          {"FCALL", "tether_erase_session", "2", session_key(session),
           opt_.prefix + ":sessions:" + opt_.node_id, session, opt_.node_id},
          done_or_fail(id));
}

void RedisStore::load_sessions(std::uint64_t id, const store_op::LoadSessions& l) {
    fcall(
        *servers_.front(),
        {"FCALL", "tether_load_sessions", "1", opt_.prefix + ":sessions:" + opt_.node_id, l.after,
         std::to_string(std::max<std::size_t>(1, l.max)), opt_.prefix + ":session:", opt_.node_id},
        [this, id](std::error_code ec, Reply&& r) {
            if (ec) return fail(id, ec);
            if (r.type != Reply::Type::array || r.elements.empty())
                return fail(id, make_error_code(error::store_failed));
            store_result::Sessions out;
            out.more = r.elements[0].integer == 1;
            for (std::size_t i = 1; i < r.elements.size(); ++i) {
                auto& e = r.elements[i];
                if (e.type != Reply::Type::array || e.elements.size() != 6) continue;
                SessionRecord s;
                s.id = std::move(e.elements[0].str);
                s.resume_token = std::move(e.elements[1].str);
                s.user = std::move(e.elements[2].str);
                s.rooms = store::rooms_from_json(e.elements[3].str);
                s.expires_at_ms = static_cast<std::int64_t>(e.elements[4].as_u64().value_or(0));
                s.generation = e.elements[5].as_u64().value_or(0);
                out.sessions.push_back(std::move(s));
            }
            finish(StoreResult{id, {}, std::move(out)});
        });
}

void RedisStore::claim_session(std::uint64_t id, const store_op::ClaimSession& c) {
    fcall(*servers_.front(),
          {"FCALL", "tether_claim_session", "2", session_key(c.id),
           opt_.prefix + ":sessions:" + opt_.node_id, c.id, c.resume_token, c.new_token,
           opt_.node_id, std::to_string(c.now_ms), channel_,
           opt_.prefix + ":sessions:", std::to_string(opt_.held_session_ttl.count())},
          [this, id, c](std::error_code ec, Reply&& r) {
              if (ec) return fail(id, ec);
              if (r.is_error() || r.type != Reply::Type::array || r.elements.empty())
                  return fail(id, make_error_code(error::store_failed));
              store_result::Claimed out;
              if (r.elements[0].integer == 1 && r.elements.size() == 4) {
                  out.ok = true;
                  out.record = SessionRecord{c.id,
                                             c.new_token,
                                             std::move(r.elements[1].str),
                                             store::rooms_from_json(r.elements[2].str),
                                             0,
                                             static_cast<std::uint64_t>(r.elements[3].integer)};
                  ++stats_.sessions_claimed;
              } else {
                  ++stats_.claims_refused;
              }
              finish(StoreResult{id, {}, std::move(out)});
          });
}

// ---- fan-out between nodes -------------------------------------------------------------------

void RedisStore::observe(const std::string& room, std::uint64_t epoch, std::uint64_t head) {
    auto it = watched_.find(room);
    if (it == watched_.end()) {
        if (watched_.size() >= opt_.watched_rooms_max) {
            ++stats_.unwatched_overflow;
            return;
        }
        it = watched_.emplace(room, Watch{epoch, head, head, false}).first;
        return;
    }
    Watch& w = it->second;
    if (w.filling) return;  // the fill decides
    if (epoch != w.epoch) {
        ++stats_.epoch_changes;
        w = Watch{epoch, head, head, false, w.rereading};
    } else if (head > w.cursor) {
        // The engine read a newer head than the notifications told: what lies
        // between is read once for every subscriber.
        w.wanted = std::max(w.wanted, head);
        fill(room, w);
    }
}

void RedisStore::on_notification(std::string_view payload) {
    // "<node>\n<room>\n<epoch>\n<offset>\n<data>", or a probe "probe\n<node>\n<seq>".
    auto next = [&payload]() {
        const auto nl = payload.find('\n');
        std::string_view part = payload.substr(0, nl);
        payload = nl == std::string_view::npos ? std::string_view{} : payload.substr(nl + 1);
        return part;
    };
    const auto node = next();
    if (node == "claim") {  // "claim\n<node>\n<session>\n<generation>"
        SessionClaim claim;
        claim.node = std::string{next()};
        claim.id = std::string{next()};
        const auto g = next();
        std::from_chars(g.data(), g.data() + g.size(), claim.generation);
        if (claim.node == opt_.node_id || claim.id.empty()) return;
        std::lock_guard lock{remote_mu_};
        if (on_claim_) on_claim_(std::move(claim));
        return;
    }
    if (node == "probe") {
        if (next() == opt_.node_id) {  // each node hears its own
            std::uint64_t seq = 0;
            const auto s = next();
            std::from_chars(s.data(), s.data() + s.size(), seq);
            if (seq == probe_waiting_) probe_waiting_ = 0;
        }
        return;
    }
    const std::string room{next()};
    std::uint64_t epoch = 0, offset = 0;
    const auto es = next(), os = next();
    std::from_chars(es.data(), es.data() + es.size(), epoch);
    std::from_chars(os.data(), os.data() + os.size(), offset);
    if (epoch == 0 || offset == 0) return;
    auto it = watched_.find(room);
    if (it == watched_.end()) return;  // no subscriber here
    Watch& w = it->second;
    const bool mine = node == opt_.node_id;
    if (!mine) ++stats_.notifications;
    if (epoch != w.epoch) {
        // The room's stream started a new epoch (lost, or another term): the
        // stream is read, and the engine moves its subscribers to it.
        if (!w.filling) reread(room);
        return;
    }
    if (offset <= w.cursor) return;  // delivered already (a fill covered it)
    w.wanted = std::max(w.wanted, offset);
    if (w.filling) return;  // the fill reads up to `wanted`
    if (offset == w.cursor + 1) {
        w.cursor = offset;
        if (mine) return;  // the engine fans out its own appends
        std::lock_guard lock{remote_mu_};
        if (on_remote_)
            on_remote_(RemoteAppend{room, {epoch, offset}, std::string{payload}, nullptr, 0});
        return;
    }
    fill(room, w);  // notifications were lost: read the missing range once
}

void RedisStore::fill(const std::string& room, Watch& watch) {
    if (watch.filling || watch.wanted <= watch.cursor) return;
    watch.filling = true;
    const auto after = watch.cursor, up_to = watch.wanted;
    ++stats_.gap_fills;
    fcall(*servers_[server_of(room)], range_call(room, after, up_to, 256),
          [this, room](std::error_code ec, Reply&& r) {
              auto it = watched_.find(room);
              if (it == watched_.end()) return;
              Watch& w = it->second;
              w.filling = false;
              auto info = ec ? std::nullopt : stream_info(r);
              if (!info) return;  // the next head check tries again
              if (info->epoch != w.epoch) return reset_watch(room, w, *info);
              std::vector<RemoteAppend> out;
              for (std::size_t i = 3; i < r.elements.size(); ++i) {
                  auto& e = r.elements[i];
                  if (e.type != Reply::Type::array || e.elements.size() != 5) break;
                  auto off = e.elements[0].as_u64();
                  if (!off || *off <= w.cursor) continue;
                  w.cursor = *off;
                  out.push_back(RemoteAppend{
                      room, {info->epoch, *off}, std::move(e.elements[2].str), nullptr, 0});
              }
              if (info->first > w.cursor + 1 && info->head >= info->first) {
                  // Trimmed before we read it: the engine's subscribers catch
                  // up from what is left (and see what is gone).
                  w.cursor = info->first - 1;
              }
              if (out.empty() && w.cursor < std::min(w.wanted, info->head)) {
                  // Nothing readable between cursor and the head (trimmed):
                  // jump; the engine reads the stream for its subscribers.
                  w.cursor = std::min(w.wanted, info->head);
              }
              stats_.gap_events += out.size();
              {
                  std::lock_guard lock{remote_mu_};
                  if (on_remote_)
                      for (auto& a : out)
                          on_remote_(std::move(a));
              }
              w.wanted = std::max(w.wanted, info->head);
              if (w.wanted > w.cursor) fill(room, w);
          });
}

void RedisStore::reset_watch(const std::string& room, Watch& w, const StreamInfo& info) {
    ++stats_.epoch_changes;
    w = Watch{info.epoch, info.head, info.head, false, w.rereading};
    // The engine reads the new epoch for its subscribers (they see it).
    std::lock_guard lock{remote_mu_};
    if (on_remote_)
        on_remote_(RemoteAppend{room, {info.epoch, info.head}, {}, nullptr, 0, true, info.first});
}

void RedisStore::reread(const std::string& room) {
    // One read at a time per room: a burst of notifications of a new epoch,
    // or a head check meanwhile, waits for its answer.
    auto at = watched_.find(room);
    if (at == watched_.end() || at->second.rereading) return;
    at->second.rereading = true;
    // Through tether_stream, not a plain HMGET: a room of another term gets
    // its new epoch now, not at its next append.
    fcall(*servers_[server_of(room)], room_call("tether_stream", room),
          [this, room](std::error_code ec, Reply&& r) {
              auto it = watched_.find(room);
              if (it == watched_.end()) return;
              Watch& w = it->second;
              w.rereading = false;
              auto info = ec ? std::nullopt : stream_info(r);
              if (!info) return;  // the next round tries again
              if (w.filling) return;
              if (info->epoch != w.epoch) {
                  reset_watch(room, w, *info);
              } else if (info->head > w.cursor) {
                  w.wanted = std::max(w.wanted, info->head);
                  fill(room, w);
              }
          });
}

void RedisStore::check_heads() {
    for (const auto& room : some_watched(kRoomsPerRound, check_pos_))
        reread(room);
    update_health();
    head_timer_.expires_after(std::chrono::milliseconds(opt_.head_check.count()));
    head_timer_.async_wait([this](boost::system::error_code ec) {
        if (!ec) check_heads();
    });
}

void RedisStore::find_primary(std::size_t from,
                              std::function<void(std::optional<Endpoint>, std::string)> done) {
    while (from < sentinels_.size() && !sentinels_[from]->ready())
        ++from;
    if (from >= sentinels_.size()) return done(std::nullopt, "no Sentinel answered");
    sentinels_[from]->command(
        {"SENTINEL", "get-master-addr-by-name", opt_.master_name},
        [this, from, done = std::move(done)](std::error_code ec, Reply&& r) mutable {
            if (!ec && r.type == Reply::Type::array && r.elements.size() == 2) {
                const auto port = r.elements[1].as_u64();
                if (port && *port > 0 && *port < 65536)
                    return done(Endpoint{r.elements[0].str, static_cast<std::uint16_t>(*port), 0},
                                {});
            }
            if (!ec && opt_.log && r.type == Reply::Type::nil)
                opt_.log(1, "redis: Sentinel " + sentinels_[from]->options().endpoint.name() +
                                " knows no primary named " + opt_.master_name);
            find_primary(from + 1, std::move(done));
        });
}

void RedisStore::confirm_primary(Connection& c, std::function<void(bool)> done,
                                 std::function<void(std::function<void(bool)>)> next) {
    if (sentinels_.empty()) return next(std::move(done));
    c.command(
        {"ROLE"},
        [this, &c, done = std::move(done), next = std::move(next)](std::error_code ec,
                                                                   Reply&& r) mutable {
            const bool primary = !ec && r.type == Reply::Type::array && !r.elements.empty() &&
                                 r.elements[0].str == "master";
            if (!primary) {
                if (opt_.log)
                    opt_.log(1, "redis: " + c.options().endpoint.name() +
                                    " is not a primary (ROLE): asking the Sentinels again");
                return done(false);
            }
            next(std::move(done));
        },
        true);
}

void RedisStore::check_primary() {
    if (sentinels_.empty()) return;
    find_primary(0, [this](std::optional<Endpoint> e, std::string) {
        if (!e) return;
        for (auto& s : servers_) {
            if (s->cmd.ready() && !(s->cmd.options().endpoint == *e)) {
                ++stats_.primary_changes;
                s->cmd.reset("Sentinel names another primary");
            }
            if (s->sub.ready() && !(s->sub.options().endpoint == *e))
                s->sub.reset("Sentinel names another primary");
        }
    });
}

void RedisStore::probe() {
    check_primary();
    // The pub/sub connection must deliver what is published: a probe that
    // does not come back within a command timeout means it went deaf.
    probe_waiting_ = ++probe_seq_;
    const auto payload = "probe\n" + opt_.node_id + "\n" + std::to_string(probe_waiting_);
    bool sent = false;
    for (auto& s : servers_)
        if (s->cmd.ready() && s->sub.ready()) {
            s->cmd.command({"PUBLISH", channel_, payload}, [](std::error_code, Reply&&) {});
            sent = true;
        }
    if (!sent) probe_waiting_ = 0;
    probe_timer_.expires_after(std::chrono::milliseconds(opt_.command_timeout.count()));
    probe_timer_.async_wait([this](boost::system::error_code ec) {
        if (ec) return;
        if (probe_waiting_ != 0) {
            ++stats_.probes_lost;
            probe_waiting_ = 0;
            for (auto& s : servers_)
                if (s->sub.ready()) s->sub.reset("a pub/sub probe did not come back");
        }
        probe_timer_.expires_after(std::chrono::milliseconds(opt_.probe_every.count()));
        probe_timer_.async_wait([this](boost::system::error_code ec2) {
            if (!ec2) probe();
        });
    });
}

}  // namespace tether::redis
