#pragma once
// The embedded durable store: SQLite in WAL mode, one writer thread with
// group commit, history cached in memory (bounded like MemoryStore) so that
// reads never touch the disk on the engine's thread.
//
// Durability (`--fsync`):
// - always: synchronous=FULL. An append is durable once its commit group was
//   fsynced. Survives kill -9 and power loss.
// - batch:  synchronous=NORMAL. Durable once its commit group was written to
//   the OS (WAL). Survives kill -9; a power loss may lose the last moments.
// - off:    durable at once, written behind. Fastest; a crash may lose
//   acknowledged messages. For disposable data only.
// Sessions and resume tokens are persisted the same way.

#include "store/memory_store.hpp"

#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>
#include <tuple>
#include <variant>

struct sqlite3;

namespace tether::store {

enum class FsyncMode : std::uint8_t { always, batch, off };
std::optional<FsyncMode> parse_fsync_mode(std::string_view name);
std::string_view to_string(FsyncMode m);

class SqliteStore : public MemoryStore {
  public:
    /// Opens (or creates) `dir`/tether.db and loads the history into memory
    /// (sessions stay in the database; LoadSessions pages through them).
    /// Throws std::runtime_error with a readable message on failure.
    SqliteStore(const std::filesystem::path& dir, FsyncMode mode, StoreLimits limits,
                std::int64_t now_ms);
    ~SqliteStore() override;
    SqliteStore(const SqliteStore&) = delete;
    SqliteStore& operator=(const SqliteStore&) = delete;

    /// Appends, sessions and session loads go to the writer thread (and
    /// complete after its commit); history reads are answered from memory at
    /// once, bounded by what the writer committed. The publish log is kept
    /// in memory too (loaded at open), so that the dedupe check of an append
    /// never reads the disk.
    void submit(StoreRequest request) override;
    void flush() override;
    void reset_stream(std::string_view room) override;

    std::size_t loaded_events() const noexcept { return loaded_events_; }
    std::size_t loaded_sessions() const noexcept { return loaded_sessions_; }
    std::uint64_t commits() const noexcept { return commits_.load(); }

  private:
    struct EventOp {
        std::uint64_t request = 0;
        std::string room;
        std::uint64_t epoch = 0, offset = 0;
        std::int64_t at_ms = 0;
        std::string data, publisher, publish_id;
    };
    struct SessionOp {
        std::uint64_t request = 0;
        SessionRecord record;
    };
    struct EraseSessionOp {
        std::uint64_t request = 0;
        std::string id;
    };
    struct LoadSessionsOp {
        std::uint64_t request = 0;
        store_op::LoadSessions page;
    };
    /// An append that repeats a publish id: answered in the queue's order,
    /// so after the original is durable.
    struct DuplicateOp {
        std::uint64_t request = 0;
        proto::StreamPosition original;
    };
    struct ResetOp {
        std::string room;
        std::uint64_t epoch = 0;
    };
    struct TrimOp {
        std::int64_t cutoff_ms = 0;
        std::int64_t publishes_before_ms = 0;
        std::vector<std::tuple<std::string, std::uint64_t, std::uint64_t>>
            firsts;  // room, epoch, first kept
    };
    using Op = std::variant<EventOp, SessionOp, EraseSessionOp, LoadSessionsOp, DuplicateOp,
                            ResetOp, TrimOp>;

    std::uint64_t durable_head(std::string_view room, const Stream& s) const override;
    void load();
    void enqueue(Op op);
    void writer();
    void exec(const char* sql);
    void trim(const store_op::Trim& t);
    /// Fails a request because the writer stopped (store_failed).
    void fail(std::uint64_t request);

    FsyncMode mode_;
    sqlite3* db_ = nullptr;
    std::size_t loaded_events_ = 0;
    std::size_t loaded_sessions_ = 0;
    std::atomic<std::int64_t> last_trim_ms_{0};

    mutable std::mutex mu_;
    std::condition_variable cv_;               // writer waits for work
    mutable std::condition_variable done_cv_;  // flush() waits for the writer
    std::deque<Op> queue_;
    std::size_t pending_ops_ = 0;  // queued + being written
    bool stop_ = false;
    std::string writer_error_;
    /// Room -> (epoch, last committed offset): what reads may return.
    std::map<std::string, std::pair<std::uint64_t, std::uint64_t>, std::less<>> durable_;
    std::atomic<std::uint64_t> commits_{0};
    std::thread thread_;
};

}  // namespace tether::store
