#pragma once
/// @file
/// The history and session store behind the gateway (one interface for the
/// memory store, the embedded durable store and, later, Redis).
///
/// Contract:
/// - `append` assigns the next offset of the room atomically and returns it
///   with a commit sequence number. The entry is *durable* once
///   `durable_seq() >= seq`. The engine fans out and acknowledges an entry only
///   when it is durable, so no client ever sees an offset that a crash could
///   give to another message.
/// - Reads return committed entries only, oldest first, bounded by count and
///   bytes (a replay read is never unbounded).
/// - History is bounded by size and by age (`trim`).
/// - A stream's epoch changes when its history was lost (`reset_stream`);
///   offsets restart at 1.
/// - Sessions are kept with their resume token so that they survive restarts
///   of a durable store.
///
/// A Redis engine maps this one-to-one: offset increment + XADD + PUBLISH in
/// one Lua script (append), XRANGE (read), XTRIM MAXLEN/MINID (trim), a hash
/// with EXPIRE per session, and pub/sub for fan-out between nodes.
///
/// @par Thread safety
/// Called from the engine's strand only, except `durable_seq()` which is
/// safe from any thread.

#include <tether/core/protocol.hpp>
#include <tether/core/time.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
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
    std::uint64_t head = 0;   ///< last offset appended (0: none yet)
    std::uint64_t first = 1;  ///< oldest offset still in history (head + 1 when empty)
};

struct SessionRecord {
    std::string id;
    std::string resume_token;
    std::string user;
    std::vector<std::string> rooms;
    std::int64_t expires_at_ms = 0;  ///< 0 while a connection holds the session
};

struct AppendResult {
    proto::StreamPosition position;
    std::uint64_t seq = 0;  ///< durable once durable_seq() >= seq
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

class Store {
  public:
    virtual ~Store() = default;

    virtual AppendResult append(std::string_view room, std::string data, std::string_view publisher,
                                std::string_view publish_id, std::int64_t now_ms) = 0;
    virtual std::uint64_t durable_seq() const noexcept = 0;
    /// Called (possibly from another thread) whenever durable_seq() advances.
    virtual void on_durable(std::function<void()> notify) = 0;
    /// Blocks until everything appended so far is durable (drain, shutdown).
    virtual void flush() = 0;

    virtual StreamInfo stream(std::string_view room) const = 0;
    /// Entries with offset > after, at most max_events and (beyond the first)
    /// max_bytes of data, never past `up_to`.
    virtual std::vector<StoredEvent> read(std::string_view room, std::uint64_t after,
                                          std::uint64_t up_to, std::size_t max_events,
                                          std::size_t max_bytes) const = 0;
    virtual std::vector<std::string> rooms() const = 0;
    /// Drops events older than the age bound.
    virtual void trim(std::int64_t now_ms) = 0;
    /// Forgets a stream's history: new epoch, offsets restart at 1.
    virtual void reset_stream(std::string_view room) = 0;

    /// Fan-out between nodes: `on_append` is called (possibly from another
    /// thread) for every durable append that *another* node made. Single-node
    /// stores never call it. The driver posts each one to the engine's
    /// `handle_remote_append`.
    virtual void on_remote_append(std::function<void(RemoteAppend)> on_append) { (void)on_append; }

    /// Records a session (insert or replace by id). By value: the engine
    /// builds the record for the call, a store that keeps it moves it.
    virtual void save_session(SessionRecord s) = 0;
    virtual void erase_session(std::string_view id) = 0;
    virtual std::vector<SessionRecord> load_sessions() const = 0;
};

}  // namespace tether
