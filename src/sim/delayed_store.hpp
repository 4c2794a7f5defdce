#pragma once
// The simulator's store: a memory store whose requests are carried out after
// a seeded delay and whose results arrive after another one -- reads and
// appends of different rooms in any order, appends of one room in order (the
// Store contract, include/tether/core/store.hpp). Every executed append is
// also written to the checker's archive.

#include "sim/scheduler.hpp"
#include "sim/sim_server.hpp"
#include "store/memory_store.hpp"

#include <map>
#include <memory>
#include <string>

namespace tether::sim {

/// Everything ever appended, per (room, epoch), for the checker.
using Archive = std::map<std::pair<std::string, std::uint64_t>, std::vector<SimServer::Entry>>;

struct StoreDelays {
    duration execute_max{0};  ///< a request is carried out within this
    duration notify_max{0};   ///< its result arrives within this after
};

class DelayedStore : public Store {
  public:
    DelayedStore(Scheduler& sched, StoreDelays delays, StoreLimits limits, std::uint64_t epoch_base,
                 Archive& archive);

    void submit(StoreRequest request) override;
    void flush() override {}

    /// The process died, and with it the store's queue (an embedded store
    /// lives in the process): requests not carried out yet never are, and
    /// results still on their way are lost. What was carried out stays.
    void forget_pending() {
        ++process_gen_;
        room_clock_.clear();
    }
    /// The store itself is lost: a fresh one, new epochs; nothing queued runs.
    void replace(std::uint64_t epoch_base);
    void reset_stream(std::string_view room) { inner_->reset_stream(room); }
    /// The newest `count` events of the room are lost, and it gets a new
    /// epoch (a failover to a lagging replica, detected by the term rule).
    void lose_newest(std::string_view room, std::uint64_t count);
    [[nodiscard]] StreamInfo stream(std::string_view room) const { return inner_->stream(room); }
    /// Drops every stored session (a restart that loses them).
    void lose_sessions();

  private:
    Scheduler& sched_;
    StoreDelays delays_;
    StoreLimits limits_;
    Archive& archive_;
    std::unique_ptr<store::MemoryStore> inner_;  ///< carries requests out at once, into last_
    StoreResult last_;
    std::uint64_t process_gen_ = 0;
    std::uint64_t store_gen_ = 0;
    /// Per room: when its last append runs and when its result arrives (in order).
    std::map<std::string, std::pair<time_point, time_point>, std::less<>> room_clock_;
};

}  // namespace tether::sim
