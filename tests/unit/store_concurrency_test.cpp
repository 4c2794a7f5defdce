// The stores under concurrent submits (several engine shards share one
// store): offsets stay consecutive per room, a publish id sent from several
// threads at once is stored once and every copy gets the original's
// position, and the SQLite store still completes a room's appends in offset
// order. Run under TSan in CI (scripts/test.sh).
#include "store/memory_store.hpp"
#include "store/sqlite_store.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

namespace tether {
namespace {

constexpr int kThreads = 4;
constexpr int kPerThread = 500;
constexpr int kRooms = 3;

// Thread t's i-th append: its request id, its room, whether it is a publish
// of the shared user.
std::uint64_t request_id(int t, int i) {
    return static_cast<std::uint64_t>(t * 2 * kPerThread + i + 1);
}
std::string room_of(int i) {
    return "room-" + std::to_string(i % kRooms);
}
bool shared_publish(int i) {
    return i % 2 == 1;
}

struct Collected {
    std::mutex mu;
    std::map<std::uint64_t, StoreResult> by_id;
    std::map<std::string, std::vector<std::uint64_t>> completed_offsets;  // per room, in order
    std::map<std::uint64_t, std::string> room_of;                         // request id -> room
};

// Every thread appends kPerThread publishes with ids of its own, and each
// also sends every publish of the shared user ("shared", ids 0..kPerThread):
// kThreads copies of each of those race.
void hammer(Store& store, Collected& out) {
    {
        std::lock_guard lock{out.mu};
        for (int t = 0; t < kThreads; ++t)
            for (int i = 0; i < 2 * kPerThread; ++i)
                out.room_of[request_id(t, i)] = room_of(i);
    }
    store.set_sink([&out](StoreResult r) {
        std::lock_guard lock{out.mu};
        if (auto* a = std::get_if<store_result::Appended>(&r.value); a && !a->duplicate)
            out.completed_offsets[out.room_of.at(r.id)].push_back(a->position.offset);
        out.by_id.emplace(r.id, std::move(r));
    });
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&store, t] {
            for (int i = 0; i < 2 * kPerThread; ++i) {
                const std::string user = shared_publish(i) ? "shared" : "user-" + std::to_string(t);
                store.submit(StoreRequest{request_id(t, i),
                                          store_op::Append{room_of(i), std::to_string(i), user,
                                                           "p" + std::to_string(i), 1'000, 0}});
            }
        });
    for (auto& th : threads)
        th.join();
    store.flush();
}

void check(Collected& out, const std::function<StreamInfo(const std::string&)>& stream) {
    std::lock_guard lock{out.mu};
    ASSERT_EQ(out.by_id.size(), static_cast<std::size_t>(kThreads * 2 * kPerThread));
    // Own ids: all new. Shared ids: one new copy, the others duplicates of it.
    std::map<std::string, std::set<std::uint64_t>> positions_of_shared;  // publish id -> offsets
    std::size_t stored = 0;
    for (const auto& [id, r] : out.by_id) {
        ASSERT_FALSE(r.error) << r.error.message();
        const auto& a = std::get<store_result::Appended>(r.value);
        const auto i = static_cast<int>((id - 1) % (2 * kPerThread));
        if (!a.duplicate) ++stored;
        if (shared_publish(i)) {
            positions_of_shared["p" + std::to_string(i)].insert(a.position.offset);
        } else {
            EXPECT_FALSE(a.duplicate) << "an id of its own was taken for a duplicate";
        }
    }
    EXPECT_EQ(stored, static_cast<std::size_t>(kThreads * kPerThread + kPerThread));
    for (const auto& [pid, offsets] : positions_of_shared)
        EXPECT_EQ(offsets.size(), 1u) << pid << " was stored at several offsets";
    // Offsets are consecutive per room: every stored append has its own.
    std::size_t total = 0;
    for (int r = 0; r < kRooms; ++r) {
        const std::string room = "room-" + std::to_string(r);
        auto offsets = out.completed_offsets[room];
        std::set<std::uint64_t> distinct(offsets.begin(), offsets.end());
        ASSERT_EQ(distinct.size(), offsets.size()) << room;
        ASSERT_FALSE(distinct.empty());
        EXPECT_EQ(*distinct.begin(), 1u);
        EXPECT_EQ(*distinct.rbegin(), offsets.size());
        EXPECT_EQ(stream(room).head, offsets.size());
        total += offsets.size();
    }
    EXPECT_EQ(total, stored);
}

TEST(StoreConcurrency, MemoryStoreSerialisesAppendsAndDedupe) {
    store::MemoryStore s;
    Collected out;
    hammer(s, out);
    check(out, [&](const std::string& room) { return s.stream(room); });
}

TEST(StoreConcurrency, SqliteStoreSerialisesAppendsAndCompletesEachRoomInOrder) {
    const auto dir = std::filesystem::temp_directory_path() /
                     ("tether-store-concurrency-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    {
        store::SqliteStore s{dir, store::FsyncMode::batch, {}, 1'000};
        Collected out;
        hammer(s, out);
        check(out, [&](const std::string& room) { return s.stream(room); });
        // One writer thread completes appends in queue order, which is
        // offset order per room whichever thread submitted them.
        std::lock_guard lock{out.mu};
        for (const auto& [room, offsets] : out.completed_offsets)
            EXPECT_TRUE(std::is_sorted(offsets.begin(), offsets.end())) << room;
    }
    std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tether
