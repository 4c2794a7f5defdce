#pragma once
// In-memory store: tests, the simulator and `tether serve --memory`.
// Everything is durable at once (durable_seq() == last seq); nothing survives
// the process. Bounded by StoreLimits per room.

#include <tether/core/store.hpp>

#include <atomic>
#include <deque>
#include <map>
#include <mutex>

namespace tether::store {

class MemoryStore : public Store {
  public:
    /// What save_session() does with a record.
    enum class Sessions {
        keep,     ///< kept for load_sessions(): an engine restarted on the same
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

    AppendResult append(std::string_view room, std::string data, std::string_view publisher,
                        std::string_view publish_id, std::int64_t now_ms) override;
    std::uint64_t durable_seq() const noexcept override { return durable_.load(); }
    void on_durable(std::function<void()> notify) override;
    void flush() override {}

    StreamInfo stream(std::string_view room) const override;
    std::vector<StoredEvent> read(std::string_view room, std::uint64_t after, std::uint64_t up_to,
                                  std::size_t max_events, std::size_t max_bytes) const override;
    std::vector<std::string> rooms() const override;
    void trim(std::int64_t now_ms) override;
    void reset_stream(std::string_view room) override;

    void save_session(SessionRecord s) override {
        if (keep_sessions_) sessions_[s.id] = std::move(s);
    }
    void erase_session(std::string_view id) override {
        if (auto it = sessions_.find(id); it != sessions_.end()) sessions_.erase(it);
    }
    std::vector<SessionRecord> load_sessions() const override;

  protected:
    /// Appends to memory and assigns the next sequence number, without
    /// declaring it durable (durable stores do that after their write).
    AppendResult append_entry(std::string_view room, std::string data, std::string_view publisher,
                              std::string_view publish_id, std::int64_t now_ms);
    /// Declares everything up to `seq` durable and notifies.
    void mark_durable(std::uint64_t seq);

    struct Stream {
        std::uint64_t epoch = 0;
        std::uint64_t head = 0;
        std::deque<StoredEvent> events;
    };
    /// Inserts an event that is already stored elsewhere (recovery of a
    /// durable store at startup).
    void restore(std::string_view room, std::uint64_t epoch, StoredEvent e);
    void restore_epoch(std::string_view room, std::uint64_t epoch, std::uint64_t head);
    Stream& stream_for(std::string_view room);
    void bound(Stream& s);

    StoreLimits limits_;
    std::uint64_t epoch_base_ = 1;
    bool keep_sessions_ = true;
    std::map<std::string, Stream, std::less<>> streams_;
    std::map<std::string, SessionRecord, std::less<>> sessions_;
    std::uint64_t next_seq_ = 0;  // strand only
    std::atomic<std::uint64_t> durable_{0};
    std::mutex notify_mu_;  // on_durable() may race a writer thread's notification
    std::function<void()> notify_;
};

}  // namespace tether::store
