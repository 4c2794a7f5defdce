#pragma once
// The Redis store: rooms' history and sessions in Redis, shared by every
// gateway node that points at the same servers (docs/SCALING.md).
//
// - Rooms are spread over one or more independent Redis servers by a stable
//   hash of the room name (FNV-1a 64); sessions live on the first server.
// - Every key of a room carries the room as a hash tag ({room}), so that a
//   room lives in one slot should Redis Cluster be used later.
// - An append is one call of the Redis Function `tether_append` (library
//   `tether_v1`, loaded with FUNCTION LOAD REPLACE at every connect and again
//   when Redis says it is missing): the publish-id dedupe check, the epoch
//   created when the room's metadata is missing (random, so a Redis that
//   came back empty gives every room a new epoch), the offset increment,
//   XADD with the history bound, the age trim, the keys' expiry and the
//   PUBLISH of the notification to the other nodes.
// - Fan-out between nodes: pub/sub is a doorbell, the stream is the truth.
//   One channel carries every append's notification; the store keeps a
//   cursor per watched room (a room the engine read or wrote), delivers the
//   next offset at once, and reads a skipped range once (XRANGE) for all of
//   the node's subscribers. After the pub/sub connection comes back, and
//   every `head_check` for every watched room, it compares the room's head
//   with its cursor and reads what is missing. A probe published to the
//   channel every `probe_every` must come back within `command_timeout`, or
//   the pub/sub connection is replaced.
// - Redis unavailable: requests complete with error::store_unavailable
//   (publishes get NACK unavailable, nothing is acknowledged that Redis did
//   not confirm); healthy() is false (`/healthz` answers 503); the
//   connections reconnect with backoff.
//
// All Redis I/O runs on the store's own thread (its io_context); submit()
// only posts to it.

#include "redis/connection.hpp"

#include <tether/core/store.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace tether::redis {

/// How `tether serve --redis` configures the store.
struct RedisOptions {
    std::vector<Endpoint> servers;  ///< rooms are spread over these (at least one)
    /// Sentinel: the one server is the primary named `master_name`, asked of
    /// these Sentinels (in order) before every connect, confirmed with ROLE,
    /// and checked again with every probe (a failover is followed).
    std::vector<Endpoint> sentinels;
    std::string master_name;
    /// WAIT for this many replicas after each append before it is
    /// acknowledged (0: once the primary has it). Not reached within
    /// command_timeout / 2: the publish fails (NACK unavailable) and its
    /// retry, deduplicated, waits again.
    unsigned wait_replicas = 0;
    std::string prefix = "tether";   ///< every key starts with it
    std::string node_id = "node-1";  ///< unique per node: its own notifications are skipped
    StoreLimits limits;
    duration command_timeout{
        2'000};                   ///< a command without reply by then: the connection is dropped
    duration head_check{3'000};   ///< every watched room's head is compared this often
    duration probe_every{5'000};  ///< the pub/sub connection is probed this often
    /// A room's metadata (its epoch and head) outlives its last append by
    /// this long; history_ttl bounds the events themselves.
    duration meta_ttl{7 * 24 * 3'600'000};
    /// A held session (a connection on some node) expires from Redis after
    /// this long without a save: the bound for a node that died for good.
    duration held_session_ttl{24 * 3'600'000};
    std::size_t watched_rooms_max = 100'000;  ///< rooms with a cursor at most
    std::size_t pending_max = 65'536;         ///< commands in flight per connection at most
    /// Log sink: level 0 info, 1 warning.
    std::function<void(int level, std::string_view text)> log;
};

/// Counters of the Redis store (they feed /metrics).
struct RedisStats {
    ConnectionStats commands;              ///< every command connection summed
    ConnectionStats pubsub;                ///< every pub/sub connection summed
    std::uint64_t notifications = 0;       ///< notifications of other nodes' appends received
    std::uint64_t gap_fills = 0;           ///< ranges read because notifications were missed
    std::uint64_t gap_events = 0;          ///< events those reads delivered
    std::uint64_t epoch_changes = 0;       ///< watched rooms seen with a new epoch
    std::uint64_t function_loads = 0;      ///< FUNCTION LOAD calls
    std::uint64_t term_changes = 0;        ///< servers seen with a new run id (restart, failover)
    std::uint64_t primary_changes = 0;     ///< Sentinel named another primary while connected
    std::uint64_t wait_failures = 0;       ///< appends whose WAIT saw too few replicas
    std::uint64_t probes_lost = 0;         ///< pub/sub probes that did not come back
    std::uint64_t watched_rooms = 0;       ///< rooms with a cursor now
    std::uint64_t unwatched_overflow = 0;  ///< rooms not watched: watched_rooms_max reached
    std::uint64_t sessions_claimed = 0;    ///< RESUMEs that claimed a session (any previous node)
    std::uint64_t claims_refused = 0;      ///< claims refused (unknown, expired, another token)
    std::uint64_t stale_saves = 0;         ///< session saves ignored: another node claimed it
};

class RedisStore final : public Store {
  public:
    /// Starts the store's thread and connects (it does not wait for Redis:
    /// requests fail with store_unavailable until a connection is up).
    explicit RedisStore(RedisOptions options);
    ~RedisStore() override;
    RedisStore(const RedisStore&) = delete;
    RedisStore& operator=(const RedisStore&) = delete;

    void submit(StoreRequest request) override;
    void flush() override;
    void on_remote_append(const std::function<void(RemoteAppend)>& on_append) override;
    void on_session_claimed(const std::function<void(SessionClaim)>& on_claim) override;

    /// Every server's command and pub/sub connections are up.
    [[nodiscard]] bool healthy() const noexcept { return healthy_.load(); }
    /// Blocks until healthy() or `timeout` passed (start-up only).
    bool wait_healthy(duration timeout);
    /// The counters now (thread-safe; asks the store's thread, waits 1 s at most).
    [[nodiscard]] RedisStats stats();
    /// The server a room lives on (its index in options.servers).
    [[nodiscard]] std::size_t server_of(std::string_view room) const noexcept;

  private:
    struct Server;
    struct Watch {
        std::uint64_t epoch = 0;
        std::uint64_t cursor = 0;  ///< the last offset delivered (or known to the engine)
        std::uint64_t wanted = 0;  ///< the newest offset a notification announced
        bool filling = false;      ///< a range read is in flight
        bool rereading = false;    ///< a stream read (reread) is in flight
    };

    void run(StoreRequest request);
    void append(std::uint64_t id, store_op::Append a);
    void read_stream(std::uint64_t id, const store_op::ReadStream& r);
    void read_range(std::uint64_t id, const store_op::ReadRange& r);
    void trim(std::uint64_t id, const store_op::Trim& t);
    void save_session(std::uint64_t id, const SessionRecord& s);
    void erase_session(std::uint64_t id, const std::string& session);
    void load_sessions(std::uint64_t id, const store_op::LoadSessions& l);
    void claim_session(std::uint64_t id, const store_op::ClaimSession& c);
    /// FCALL with a reload of the library when Redis lost it.
    void fcall(Server& s, std::vector<std::string> argv, Connection::Callback cb,
               bool retry = true);
    void finish(StoreResult r);
    /// Completes `id` with Done, or fails it (an error reply: store_failed).
    Connection::Callback done_or_fail(std::uint64_t id);
    /// FCALL of a room function: its four keys, a new epoch, the metadata's
    /// expiry and the history's age cutoff.
    std::vector<std::string> room_call(const char* function, std::string_view room);
    /// FCALL tether_range of (after, up_to], at most max_events.
    std::vector<std::string> range_call(std::string_view room, std::uint64_t after,
                                        std::uint64_t up_to, std::size_t max_events);
    void fail(std::uint64_t id, std::error_code ec);
    /// Up to `max` watched rooms from `pos` on (round robin).
    [[nodiscard]] std::vector<std::string> some_watched(std::size_t max, std::size_t& pos) const;
    void on_notification(std::string_view payload);
    void fill(const std::string& room, Watch& w);
    /// The engine learnt the room's stream up to (epoch, head).
    void observe(const std::string& room, std::uint64_t epoch, std::uint64_t head);
    void check_heads();
    /// The room's stream read again (its term checked): a new epoch resets
    /// the cursor and tells the engine, a newer head is filled.
    void reread(const std::string& room);
    void reset_watch(const std::string& room, Watch& w, const StreamInfo& info);
    void probe();
    void update_health();
    /// Asks the Sentinels from `from` on for the primary's address.
    void find_primary(std::size_t from,
                      std::function<void(std::optional<Endpoint>, std::string)> done);
    /// Sentinel: is the connected server still the primary they name?
    void check_primary();
    /// ROLE says master (Sentinel mode), then `next`; otherwise not up.
    void confirm_primary(Connection& c, std::function<void(bool)> done,
                         std::function<void(std::function<void(bool)>)> next);
    [[nodiscard]] std::string key(std::string_view room, std::string_view what) const;
    [[nodiscard]] std::string session_key(std::string_view id) const;
    [[nodiscard]] std::uint64_t new_epoch();

    RedisOptions opt_;
    std::string channel_;
    std::string library_;
    boost::asio::io_context io_;
    std::vector<std::unique_ptr<Server>> servers_;
    std::vector<std::unique_ptr<Connection>> sentinels_;
    boost::asio::steady_timer head_timer_;
    boost::asio::steady_timer probe_timer_;
    std::unordered_map<std::string, Watch> watched_;
    std::size_t trim_pos_ = 0, check_pos_ = 0;
    std::uint64_t probe_seq_ = 0;
    std::uint64_t probe_waiting_ = 0;  ///< the probe sent and not seen yet (0: none)
    std::uint64_t epoch_counter_ = 0;
    RedisStats stats_;
    mutable std::mutex stats_mu_;  // stats() reads from other threads
    RedisStats shared_stats_;
    std::atomic<bool> healthy_{false};
    std::mutex remote_mu_;
    std::function<void(RemoteAppend)> on_remote_;
    std::function<void(SessionClaim)> on_claim_;  // guarded by remote_mu_
    std::atomic<std::size_t> in_flight_{0};
    std::mutex flush_mu_;
    std::condition_variable flush_cv_;
    std::thread thread_;
};

}  // namespace tether::redis
