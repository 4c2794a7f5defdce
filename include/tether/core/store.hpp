#pragma once
/// @file
/// The history and session store behind the gateway: one asynchronous
/// interface for the memory store, the embedded durable store (SQLite) and,
/// next, Redis (docs/DESIGN.md, "An asynchronous store").
///
/// The engine never calls a store and never waits for one: it emits
/// `StoreRequest`s (ServerEngine::poll_store), the driver submits them, and
/// the store delivers one `StoreResult` per request to its sink, from any
/// thread, possibly inside submit(); the driver hands each result to
/// ServerEngine::handle_store on the engine's strand.
///
/// Contract:
/// - `Append` assigns the next offset of the room atomically and completes
///   only once the entry is *durable* (a crash cannot give its offset to
///   another message). Appends to one room complete in the order they were
///   submitted; appends to different rooms, and reads, complete in any order.
/// - Reads return durable entries only, oldest first, bounded by count and
///   bytes (a replay read is never unbounded); `StreamInfo::head` is the
///   durable head.
/// - History is bounded by size and by age (`Trim`).
/// - A stream's epoch changes when its history was lost; offsets restart at 1.
///   Epochs are unique per store instance, never reused.
/// - Sessions are kept with their resume token so that they survive restarts
///   of a durable store; `LoadSessions` pages through them in id order.
/// - The store is the dedupe authority. Every append with a publish id also
///   goes to the publish log (kept apart from the history, trimmed by age and
///   bounded per publisher, never by the history bound); an append whose
///   (publisher, publish id) is already in the log for the same room (an id
///   reused in another room is a new publish) stores nothing and
///   completes with the original position (`Appended::duplicate`), after the
///   original is durable. Appends are serialised inside the store, so two
///   copies of one publish sent by different shards (or, with a shared store,
///   nodes) at the same time store one event.
/// - A request that fails completes with an error code (error::store_failed,
///   error::store_unavailable); nothing is acknowledged that was not stored.
///
/// A Redis engine maps this one-to-one: dedupe check + offset increment +
/// XADD + PUBLISH in one server-side function (append), XRANGE (read), XTRIM
/// (trim), a hash with EXPIRE per session, and pub/sub for fan-out between
/// nodes.
///
/// @par Thread safety
/// submit() may be called from several threads at once (the shards of one
/// engine); the stores serialise internally. The sink may be called from any
/// thread (it must be thread-safe).

#include <tether/core/error.hpp>
#include <tether/core/protocol.hpp>
#include <tether/core/time.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace tether {

/// One stored event of a room.
struct StoredEvent {
    std::uint64_t offset = 0;  ///< its position in the room's stream (from 1)
    std::int64_t at_ms = 0;    ///< wall-clock append time (ms since the Unix epoch)
    std::string data;          ///< raw JSON
    std::string publisher;     ///< user id; empty for server-side publishes
    std::string publish_id;    ///< client id of the publish; empty for server-side publishes
};

/// A room's stream as the store sees it.
struct StreamInfo {
    std::uint64_t epoch = 1;  ///< changes when the history was lost; unique per store instance
    std::uint64_t head = 0;   ///< last durable offset (0: none yet)
    std::uint64_t first = 1;  ///< oldest offset still in history (head + 1 when empty)
    friend bool operator==(const StreamInfo&, const StreamInfo&) = default;
};

/// A session as the store keeps it.
struct SessionRecord {
    std::string id;                  ///< its id
    std::string resume_token;        ///< the secret that resumes it
    std::string user;                ///< the user it belongs to
    std::vector<std::string> rooms;  ///< the rooms it joined
    std::int64_t expires_at_ms = 0;  ///< 0 while a connection holds the session
    /// Shared stores (store_op::ClaimSession): bumped by every claim. A save
    /// carrying an older generation than the stored one is ignored (a node
    /// that lost the session cannot overwrite the node that took it).
    std::uint64_t generation = 0;
};

/// Another node of a shared store claimed a session (a RESUME there): the
/// node that held it closes its connection and forgets it
/// (Store::on_session_claimed).
struct SessionClaim {
    std::string id;                ///< the session
    std::string node;              ///< the node that holds it now
    std::uint64_t generation = 0;  ///< its generation after the claim
};

/// One EVENT frame shared by the shards that fan an append out: encoded by
/// the first shard that has a live subscriber for it, then shared (thread-safe).
class EncodedOnce {
  public:
    /// The frame, encoded by `encode()` on the first call. (Not
    /// std::call_once: glibc's makes a futex system call every time.)
    template <class F>
    const std::shared_ptr<const std::string>& get(F&& encode) {
        if (!ready_.load(std::memory_order_acquire)) {
            std::lock_guard lock{mu_};
            if (!frame_) frame_ = std::make_shared<const std::string>(encode());
            ready_.store(true, std::memory_order_release);
        }
        return frame_;
    }

  private:
    std::atomic<bool> ready_{false};
    std::mutex mu_;
    std::shared_ptr<const std::string> frame_;
};

/// An append made through another gateway node on the same backing store
/// (multi-node fan-out, e.g. Redis pub/sub), or through another shard of this
/// gateway (Store::set_commit_observer). Delivered once durable.
struct RemoteAppend {
    std::string room;                ///< the room
    proto::StreamPosition position;  ///< where it was stored
    std::string data;                ///< its data (raw JSON)
    /// Shared by the shards it goes to (EVENT encoded once); may be null.
    std::shared_ptr<EncodedOnce> frame;
    /// The request that appended it, when a shard of this gateway did (its
    /// top byte names the shard, ServerEngine's request_shard); 0 otherwise.
    std::uint64_t request = 0;
    /// No event: the room's stream started a new epoch (a shared store lost
    /// it, or may have lost its newest entries). `position` is its head and
    /// `first` its oldest offset kept; `data` is empty. The engine moves its
    /// subscribers to it (they see the new epoch: history lost).
    bool reset = false;
    std::uint64_t first = 1;  ///< with reset: the oldest offset kept
};

/// How much history a store keeps.
struct StoreLimits {
    std::size_t history_size = 10'000;     ///< events kept per room
    duration history_ttl{24 * 3'600'000};  ///< events older than this are trimmed
    /// The publish log remembers this many of each publisher's most recent
    /// publish ids at most (older ones are forgotten first: a retry of one
    /// of them is stored again).
    std::size_t dedupe_per_user_max = 10'000;
    /// ... and this many records in all (the oldest are forgotten first).
    std::size_t dedupe_records_max = 1'000'000;
};

/// The requests a store carries out.
namespace store_op {
/// Appends one event; completes with `Appended` once durable.
struct Append {
    std::string room;        ///< the room
    std::string data;        ///< one JSON value
    std::string publisher;   ///< the user who published it (empty: server-side)
    std::string publish_id;  ///< the publisher's id of it (empty: server-side)
    std::int64_t at_ms = 0;  ///< wall-clock time of the publish
    /// With a publish id: a record of (publisher, publish_id) in the publish
    /// log appended at or after this time makes this append a duplicate.
    std::int64_t dedupe_since_ms = 0;
};
/// The room's stream: completes with `Stream`.
struct ReadStream {
    std::string room;  ///< the room
};
/// Durable entries with after < offset <= up_to, at most max_events and
/// (beyond the first) max_bytes of data: completes with `Range`.
struct ReadRange {
    std::string room;         ///< the room
    std::uint64_t after = 0;  ///< entries with an offset above this
    std::uint64_t up_to = std::numeric_limits<std::uint64_t>::max();  ///< ... and at most this
    std::size_t max_events = 256;                                     ///< events per page at most
    std::size_t max_bytes =
        256u << 10;  ///< bytes of data per page at most (beyond the first event)
};
/// Sessions with an id greater than `after`, in id order, at most `max`:
/// completes with `Sessions`.
struct LoadSessions {
    std::string after;       ///< the page starts after this session id
    std::size_t max = 1024;  ///< sessions per page at most
};
/// Records a session (insert or replace by id): completes with `Done`.
struct SaveSession {
    SessionRecord record;  ///< the record (replaces one with its id)
};
/// Forgets a session: completes with `Done`.
struct EraseSession {
    std::string id;  ///< the session's id
    /// Shared stores: the generation the engine held; a session claimed
    /// since (a newer generation) is not erased.
    std::uint64_t generation = 0;
};
/// Shared stores: takes the session for this node if `resume_token` is its
/// current token, atomically replacing the token by `new_token` and bumping
/// its generation; the node that held it is told (on_session_claimed).
/// Completes with `Claimed` (ok = false: unknown, expired or another token).
struct ClaimSession {
    std::string id;            ///< the session
    std::string resume_token;  ///< the token the client presented
    std::string new_token;     ///< the token from now on
    std::int64_t now_ms = 0;   ///< wall-clock now: a session expired by then is not claimed
};
/// Drops events older than the age bound, and publish-log records
/// appended before `publishes_before_ms`: completes with `Done`.
struct Trim {
    std::int64_t now_ms = 0;  ///< wall-clock now (the history's age bound counts from it)
    std::int64_t publishes_before_ms = 0;  ///< the publish log keeps records from this time on
};
}  // namespace store_op

/// Any request of a store.
using StoreOp = std::variant<store_op::Append, store_op::ReadStream, store_op::ReadRange,
                             store_op::LoadSessions, store_op::SaveSession, store_op::EraseSession,
                             store_op::ClaimSession, store_op::Trim>;

/// A request, with the id its result will carry.
struct StoreRequest {
    std::uint64_t id = 0;  ///< chosen by the engine; echoed in the result
    StoreOp op;            ///< what to do
};

/// What a request produced.
namespace store_result {
struct Done {};
/// An append is durable.
struct Appended {
    proto::StreamPosition position;  ///< where it was stored
    /// The publish id was in the publish log: nothing was stored, and
    /// `position` is the original's (durable too).
    bool duplicate = false;
};
/// The room's stream.
struct Stream {
    StreamInfo info;  ///< epoch, durable head, oldest offset kept
};
/// A page of durable events.
struct Range {
    StreamInfo info;                  ///< the stream when the range was read
    std::vector<StoredEvent> events;  ///< oldest first, consecutive offsets
};
/// A page of sessions.
struct Sessions {
    std::vector<SessionRecord> sessions;  ///< in id order
    bool more = false;                    ///< a full page: ask again after the last one
};
/// A session claim's answer.
struct Claimed {
    bool ok = false;       ///< the token matched: the session is this node's now
    SessionRecord record;  ///< when ok: the session, with the new token and generation
};
}  // namespace store_result

/// Any value a request can produce.
using StoreValue = std::variant<store_result::Done, store_result::Appended, store_result::Stream,
                                store_result::Range, store_result::Sessions, store_result::Claimed>;

/// The result of one request.
struct StoreResult {
    std::uint64_t id = 0;   ///< the request's id
    std::error_code error;  ///< set: the request failed and `value` is Done
    StoreValue value;       ///< what it produced
};

/// The interface of every store (see this file's description).
class Store {
  public:
    /// Where results go.
    using Sink = std::function<void(StoreResult)>;
    virtual ~Store() = default;

    /// Where results go. Set before the first submit(); an empty sink
    /// discards results (a driver that is going away).
    void set_sink(Sink sink) {
        std::unique_lock lock{sink_mu_};
        sink_ = std::move(sink);
    }
    /// Starts a request; its result reaches the sink exactly once, maybe
    /// before submit() returns. Never blocks on I/O.
    virtual void submit(StoreRequest request) = 0;
    /// Blocks until everything submitted so far completed: process shutdown
    /// only, never from the engine.
    virtual void flush() = 0;

    /// Fan-out between nodes: `on_append` is called (possibly from another
    /// thread) for every durable append that *another* node made. Single-node
    /// stores never call it. The driver posts each one to the engine's
    /// `handle_remote_append`.
    virtual void on_remote_append(const std::function<void(RemoteAppend)>& on_append) {
        (void)on_append;
    }

    /// Shared sessions: `on_claim` is called (possibly from another thread)
    /// when another node claimed a session (store_op::ClaimSession). Stores
    /// of one node never call it.
    virtual void on_session_claimed(const std::function<void(SessionClaim)>& on_claim) {
        (void)on_claim;
    }

    /// Fan-out between the shards of one gateway: `observer` is called for
    /// every append this store made durable and stored (not for duplicates),
    /// with the request that made it, a room's appends in offset order,
    /// from the thread that committed it and possibly under the store's lock
    /// of that room (it must not call the store), *before* the append's own
    /// result reaches the sink. Appends to different rooms may be reported
    /// from several threads at once: the observer must be thread-safe.
    /// Set before the first submit(); empty: none (one shard).
    void set_commit_observer(std::function<void(RemoteAppend)> observer) {
        observer_ = std::move(observer);
    }

  protected:
    /// A commit observer is set.
    [[nodiscard]] bool observed() const noexcept { return static_cast<bool>(observer_); }
    /// Reports one committed append to the observer.
    void committed(RemoteAppend a) const {
        if (observer_) observer_(std::move(a));
    }
    /// Delivers one result to the sink.
    void complete(StoreResult r) {
        std::shared_lock lock{sink_mu_};  // shards complete at once; only set_sink excludes them
        if (sink_) sink_(std::move(r));
    }

  private:
    std::shared_mutex sink_mu_;
    Sink sink_;
    std::function<void(RemoteAppend)> observer_;
};

}  // namespace tether
