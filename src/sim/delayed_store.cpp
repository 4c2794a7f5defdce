#include "sim/delayed_store.hpp"

#include <tether/core/assert.hpp>

namespace tether::sim {

DelayedStore::DelayedStore(Scheduler& sched, StoreDelays delays, StoreLimits limits,
                           std::uint64_t epoch_base, Archive& archive)
    : sched_(sched), delays_(delays), limits_(limits), archive_(archive) {
    replace(epoch_base);
}

void DelayedStore::replace(std::uint64_t epoch_base) {
    ++store_gen_;
    ++process_gen_;
    room_clock_.clear();
    inner_ = std::make_unique<store::MemoryStore>(limits_, epoch_base);
    inner_->set_sink([this](StoreResult r) { last_ = std::move(r); });
}

void DelayedStore::submit(StoreRequest request) {
    auto run_at = sched_.within(delays_.execute_max);
    auto done_at = run_at + (sched_.within(delays_.notify_max) - sched_.now());
    if (auto* a = std::get_if<store_op::Append>(&request.op)) {
        // Appends of one room run and complete in the order they came.
        auto& [run_last, done_last] = room_clock_[a->room];
        run_at = std::max(run_at, run_last);
        done_at = std::max(std::max(done_at, run_at), done_last);
        run_last = run_at;
        done_last = done_at;
    }
    const auto gen = process_gen_;
    const auto store_gen = store_gen_;
    sched_.at(run_at, [this, gen, store_gen, done_at, request = std::move(request)]() mutable {
        if (store_gen != store_gen_ || gen != process_gen_) return;  // its process is gone
        const auto* append = std::get_if<store_op::Append>(&request.op);
        std::optional<std::pair<std::string, SimServer::Entry>> record;
        if (append) record = {append->room, SimServer::Entry{0, append->data, append->publish_id}};
        inner_->submit(std::move(request));  // executed now: durable, visible to reads
        StoreResult r = std::move(last_);
        const auto* appended = std::get_if<store_result::Appended>(&r.value);
        std::optional<RemoteAppend> commit;
        if (record && appended && !appended->duplicate) {  // a duplicate stored nothing
            const auto pos = appended->position;
            if (observed())
                commit = RemoteAppend{record->first, pos, record->second.data, nullptr, r.id};
            auto& entries = archive_[{record->first, pos.epoch}];
            TETHER_ASSERT(entries.size() + 1 == pos.offset);  // the archive is indexed by offset
            record->second.offset = pos.offset;
            entries.push_back(std::move(record->second));
        }
        sched_.at(done_at, [this, gen, r = std::move(r), commit = std::move(commit)]() mutable {
            if (gen != process_gen_) return;  // the engine that asked is gone
            // The shards hear of the append before its own result (Store contract).
            if (commit) committed(std::move(*commit));
            complete(std::move(r));
        });
    });
}

void DelayedStore::lose_newest(std::string_view room, std::uint64_t count) {
    const auto old = inner_->stream(room);
    const auto kept = inner_->lose_newest(room, count);
    // The new epoch keeps the old one's prefix (the archive is per epoch).
    auto& from = archive_[{std::string{room}, old.epoch}];
    auto& to = archive_[{std::string{room}, kept.epoch}];
    TETHER_ASSERT(to.empty() && from.size() >= kept.offset);
    to.assign(from.begin(), from.begin() + static_cast<std::ptrdiff_t>(kept.offset));
}

void DelayedStore::lose_sessions() {
    for (const auto& s : inner_->sessions())
        inner_->submit(StoreRequest{0, store_op::EraseSession{s.id, s.generation}});
}

}  // namespace tether::sim
