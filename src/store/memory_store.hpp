#pragma once
// In-memory store: tests, the simulator and `tether serve --memory`.
// Everything is durable at once and every request completes inside submit();
// nothing survives the process. Bounded by StoreLimits per room. Several
// shards submit at once: the rooms and the publish log are split into
// stripes, each under its own mutex (a room by the hash of its name, a
// publish record by the hash of its user), so appends to different rooms
// by different users do not wait for each other. Results are delivered
// after the locks are released (docs/DESIGN.md, "Shards").

#include <tether/core/store.hpp>

#include <array>
#include <atomic>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string_view>
#include <unordered_map>

namespace tether::store {

class MemoryStore : public Store {
  public:
    /// What SaveSession does with a record.
    enum class Sessions {
        keep,     ///< kept for LoadSessions: an engine restarted on the same
                  ///< store (the simulator, tests) finds its sessions again
        discard,  ///< dropped: nothing can read them back (`tether serve
                  ///< --memory`, whose store dies with the process). Saves a
                  ///< copy of every session (~400 bytes per idle connection).
    };

    /// New streams start at `epoch_base` (use the wall clock at creation, ms):
    /// epochs must never repeat across store instances, or a position from a
    /// lost store could look recoverable in an unrelated new stream.
    explicit MemoryStore(StoreLimits limits = {}, std::uint64_t epoch_base = 1,
                         Sessions sessions = Sessions::keep)
        : limits_(limits),
          epoch_base_(epoch_base == 0 ? 1 : epoch_base),
          keep_sessions_(sessions == Sessions::keep) {}

    void submit(StoreRequest request) override;
    void flush() override {}

    /// Forgets a stream's history: new epoch, offsets restart at 1 (the
    /// simulator's history-loss fault; not an engine request).
    virtual void reset_stream(std::string_view room);
    /// Forgets a stream's newest `count` events, as a Redis failover to a
    /// lagging replica does, and gives it a new epoch, as the Redis store's
    /// term rule does; offsets go on from the new head (the simulator's
    /// lost-writes fault). Returns the new epoch and the head kept.
    proto::StreamPosition lose_newest(std::string_view room, std::uint64_t count);
    /// The stream as stored (tests and the simulator's checker).
    [[nodiscard]] StreamInfo stream(std::string_view room) const;
    /// Every session kept (tests and the simulator).
    [[nodiscard]] std::vector<SessionRecord> sessions() const;
    /// Records in the publish log (tests, metrics).
    [[nodiscard]] std::size_t publish_log_size() const;
    /// The stripe of the publish log that holds `user`'s records (tests:
    /// the bound in all forgets the oldest record of the stripe it fills).
    [[nodiscard]] static std::size_t log_stripe_of(std::string_view user) noexcept;

  protected:
    struct Stream {
        std::uint64_t epoch = 0;
        std::uint64_t head = 0;
        std::deque<StoredEvent> events;
    };

    /// Transparent string hashing (lookups by string_view copy nothing).
    struct StrHash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept {
            return std::hash<std::string_view>{}(s);
        }
    };
    using Streams = std::unordered_map<std::string, Stream, StrHash, std::equal_to<>>;

    /// Stripes of the state. 16: twice the shards of a big node is enough
    /// to make two appends meeting on one stripe rare; a stripe costs a
    /// mutex and two empty tables.
    static constexpr std::size_t kStripes = 16;
    struct RoomStripe {
        mutable std::mutex mu;
        Streams streams;
    };
    /// The publish log (the dedupe window) of the users hashed to one
    /// stripe: per user, a table of their ids; every record on two lists,
    /// its user's (oldest first: dedupe_per_user_max) and the stripe's
    /// (in the order they came: the age trim and the bound in all). The
    /// lists run through the records themselves, so a record costs one table
    /// node and its id, and nothing is copied to remember an order (three
    /// copies of every key were ~8% of an append's time; perf,
    /// docs/BENCHMARKS.md).
    struct UserLog;
    struct PublishRecord {
        proto::StreamPosition position;
        std::int64_t at_ms = 0;
        std::uint64_t room = 0;  ///< room_tag() of the original's room
        UserLog* user = nullptr;
        const std::string* id = nullptr;  ///< the key of its table node
        PublishRecord* user_prev = nullptr;
        PublishRecord* user_next = nullptr;
        PublishRecord* prev = nullptr;
        PublishRecord* next = nullptr;
    };
    struct UserLog {
        /// Node-based: a record's address and its key's stay put while it lives.
        std::unordered_map<std::string, PublishRecord, StrHash, std::equal_to<>> ids;
        PublishRecord* oldest = nullptr;
        PublishRecord* newest = nullptr;
        const std::string* name = nullptr;  ///< the key of its node in LogStripe::users
    };
    struct LogStripe {
        mutable std::mutex mu;
        std::unordered_map<std::string, UserLog, StrHash, std::equal_to<>> users;
        PublishRecord* oldest = nullptr;
        PublishRecord* newest = nullptr;
        std::size_t records = 0;
    };

    [[nodiscard]] RoomStripe& room_stripe(std::string_view room) const noexcept {
        return rooms_[StrHash{}(room) % kStripes];
    }
    [[nodiscard]] LogStripe& log_stripe(std::string_view user) const noexcept {
        return logs_[log_stripe_of(user)];
    }

    /// The locks of one append, taken in the one order every path uses (the
    /// publisher's log stripe, then the room's stripe): the dedupe check, the
    /// append and its report are one step for both.
    struct AppendLocks {
        std::unique_lock<std::mutex> log;
        std::unique_lock<std::mutex> room;
    };
    [[nodiscard]] AppendLocks lock_append(const store_op::Append& a) const;

    // Everything below runs with the stripes it touches locked (or before the
    // store is shared).

    /// The original's position when `a` repeats a publish id still in the
    /// publish log (nothing is stored then).
    std::optional<proto::StreamPosition> find_duplicate(const store_op::Append& a) const;
    /// Appends to memory (and to the publish log) and returns the position,
    /// without declaring anything (durable stores complete the request after
    /// their write).
    proto::StreamPosition append_entry(const store_op::Append& a);
    /// Carries out a request in memory, taking the locks it needs (the
    /// memory store's submit, and the reads of durable stores).
    StoreResult execute(StoreRequest& request);
    StreamInfo stream_locked(std::string_view room) const;
    /// The last durable offset of a stream: what reads may return (memory:
    /// the head; a durable store: what its writer committed).
    virtual std::uint64_t durable_head(std::string_view room, const Stream& s) const;
    store_result::Range range(const store_op::ReadRange& r) const;
    store_result::Sessions page_sessions(const store_op::LoadSessions& l) const;
    store_result::Claimed claim(const store_op::ClaimSession& c);
    /// Trims every stripe, one at a time (takes the locks).
    void trim_memory(const store_op::Trim& t);
    void save(SessionRecord s);
    void erase(std::string_view id, std::uint64_t generation);

    /// Inserts an event that is already stored elsewhere (recovery of a
    /// durable store at startup).
    void restore(std::string_view room, std::uint64_t epoch, StoredEvent e);
    void restore_epoch(std::string_view room, std::uint64_t epoch, std::uint64_t head);
    Stream& stream_for(std::string_view room);
    void bound(Stream& s);

    /// Adds a record to the publish log, within its bounds.
    /// What the publish log keeps of a room: a hash (a record stays small).
    static std::uint64_t room_tag(std::string_view room) noexcept;
    void log_publish(const std::string& user, const std::string& id, std::string_view room,
                     proto::StreamPosition position, std::int64_t at_ms);
    /// Trims every log stripe (takes the locks).
    void trim_publishes(std::int64_t before_ms);
    /// Unlinks a record from both lists and forgets it (its user too, when
    /// it was their last).
    void forget_publish(LogStripe& l, PublishRecord& r);
    /// Calls f(room, stream) for every stream, each stripe locked in turn.
    template <class F>
    void for_each_stream(F&& f) const {
        for (auto& st : rooms_) {
            std::lock_guard lock{st.mu};
            for (const auto& [name, s] : st.streams)
                f(name, s);
        }
    }

    StoreLimits limits_;
    std::uint64_t epoch_base_ = 1;
    bool keep_sessions_ = true;
    mutable std::array<RoomStripe, kStripes> rooms_;
    mutable std::array<LogStripe, kStripes> logs_;
    /// Records in all the log stripes: the bound in all is checked on it.
    std::atomic<std::size_t> publish_records_{0};
    mutable std::mutex sessions_mu_;
    std::map<std::string, SessionRecord, std::less<>> sessions_;
};

}  // namespace tether::store
