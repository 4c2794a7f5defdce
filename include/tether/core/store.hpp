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
/// - Every append with a publish id also goes to the publish log, which the
///   engine reads back at start-up (`LoadPublishes`) to rebuild its dedupe
///   window; it is trimmed by age only, never by the history bound.
/// - A request that fails completes with an error code (error::store_failed,
///   error::store_unavailable); nothing is acknowledged that was not stored.
///
/// A Redis engine maps this one-to-one: offset increment + XADD + PUBLISH in
/// one server-side function (append), XRANGE (read), XTRIM (trim), a hash
/// with EXPIRE per session, and pub/sub for fan-out between nodes.
///
/// @par Thread safety
/// submit() is called from the engine's strand only; the sink may be called
/// from any thread (it must be thread-safe).

#include <tether/core/error.hpp>
#include <tether/core/protocol.hpp>
#include <tether/core/time.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <mutex>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace tether {

struct StoredEvent {
    std::uint64_t offset = 0;
    std::int64_t at_ms = 0;  ///< wall-clock append time (ms since the Unix epoch)
    std::string data;        ///< raw JSON
    std::string publisher;   ///< user id; empty for server-side publishes
    std::string publish_id;  ///< client id of the publish; empty for server-side publishes
};

struct StreamInfo {
    std::uint64_t epoch = 1;
    std::uint64_t head = 0;   ///< last durable offset (0: none yet)
    std::uint64_t first = 1;  ///< oldest offset still in history (head + 1 when empty)
    friend bool operator==(const StreamInfo&, const StreamInfo&) = default;
};

struct SessionRecord {
    std::string id;
    std::string resume_token;
    std::string user;
    std::vector<std::string> rooms;
    std::int64_t expires_at_ms = 0;  ///< 0 while a connection holds the session
};

/// An append made through another gateway node on the same backing store
/// (multi-node fan-out, e.g. Redis pub/sub). Delivered once durable.
struct RemoteAppend {
    std::string room;
    proto::StreamPosition position;
    std::string data;
};

struct StoreLimits {
    std::size_t history_size = 10'000;     ///< events kept per room
    duration history_ttl{24 * 3'600'000};  ///< events older than this are trimmed
};

/// The requests a store carries out.
namespace store_op {
/// Appends one event; completes with `Appended` once durable.
struct Append {
    std::string room;
    std::string data;
    std::string publisher;
    std::string publish_id;
    std::int64_t at_ms = 0;
};
/// The room's stream: completes with `Stream`.
struct ReadStream {
    std::string room;
};
/// Durable entries with after < offset <= up_to, at most max_events and
/// (beyond the first) max_bytes of data: completes with `Range`.
struct ReadRange {
    std::string room;
    std::uint64_t after = 0;
    std::uint64_t up_to = std::numeric_limits<std::uint64_t>::max();
    std::size_t max_events = 256;
    std::size_t max_bytes = 256u << 10;
};
/// The publish log (every Append with a publish id, kept apart from the
/// room history and trimmed by age only, so that a retry is recognised
/// even after its event left the history): records with (user, id) after
/// (`after_user`, `after_id`) in that order, at most `max`, appended at or
/// after `since_ms`. Completes with `Publishes`.
struct LoadPublishes {
    std::int64_t since_ms = 0;
    std::string after_user;
    std::string after_id;
    std::size_t max = 1024;
};
/// Sessions with an id greater than `after`, in id order, at most `max`:
/// completes with `Sessions`.
struct LoadSessions {
    std::string after;
    std::size_t max = 1024;
};
/// Records a session (insert or replace by id): completes with `Done`.
struct SaveSession {
    SessionRecord record;
};
struct EraseSession {
    std::string id;
};
/// Drops events older than the age bound, and publish-log records
/// appended before `publishes_before_ms`: completes with `Done`.
struct Trim {
    std::int64_t now_ms = 0;
    std::int64_t publishes_before_ms = 0;
};
}  // namespace store_op

using StoreOp = std::variant<store_op::Append, store_op::ReadStream, store_op::ReadRange,
                             store_op::LoadPublishes, store_op::LoadSessions, store_op::SaveSession,
                             store_op::EraseSession, store_op::Trim>;

struct StoreRequest {
    std::uint64_t id = 0;  ///< chosen by the engine; echoed in the result
    StoreOp op;
};

/// What a request produced.
namespace store_result {
struct Done {};
struct Appended {
    proto::StreamPosition position;
};
struct Stream {
    StreamInfo info;
};
struct Range {
    StreamInfo info;  ///< the stream when the range was read
    std::vector<StoredEvent> events;
};
/// One record of the publish log.
struct PublishRecord {
    std::string user;
    std::string publish_id;
    std::string room;
    proto::StreamPosition position;
    std::int64_t at_ms = 0;
};
struct Publishes {
    std::vector<PublishRecord> records;
    bool more = false;  ///< a full page: ask again after the last one
};
struct Sessions {
    std::vector<SessionRecord> sessions;
    bool more = false;
};
}  // namespace store_result

using StoreValue =
    std::variant<store_result::Done, store_result::Appended, store_result::Stream,
                 store_result::Range, store_result::Publishes, store_result::Sessions>;

struct StoreResult {
    std::uint64_t id = 0;
    std::error_code error;  ///< set: the request failed and `value` is Done
    StoreValue value;
};

class Store {
  public:
    using Sink = std::function<void(StoreResult)>;
    virtual ~Store() = default;

    /// Where results go. Set before the first submit(); an empty sink
    /// discards results (a driver that is going away).
    void set_sink(Sink sink) {
        std::lock_guard lock{sink_mu_};
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
    virtual void on_remote_append(std::function<void(RemoteAppend)> on_append) { (void)on_append; }

  protected:
    /// Delivers one result to the sink.
    void complete(StoreResult r) {
        std::lock_guard lock{sink_mu_};
        if (sink_) sink_(std::move(r));
    }

  private:
    std::mutex sink_mu_;
    Sink sink_;
};

}  // namespace tether
