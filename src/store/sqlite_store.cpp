#include "store/sqlite_store.hpp"
#include "store/session_rooms.hpp"

#include <sqlite3.h>
#include <boost/json.hpp>

#include <algorithm>
#include <stdexcept>

namespace tether::store {
namespace {

constexpr std::size_t kBatchOpsMax = 4096;
constexpr std::int64_t kTrimEveryMs = 10'000;

struct Stmt {
    sqlite3_stmt* s = nullptr;
    Stmt(sqlite3* db, const char* sql) {
        if (sqlite3_prepare_v2(db, sql, -1, &s, nullptr) != SQLITE_OK)
            throw std::runtime_error(std::string{"sqlite prepare: "} + sqlite3_errmsg(db));
    }
    ~Stmt() { sqlite3_finalize(s); }
    Stmt(const Stmt&) = delete;
    Stmt& operator=(const Stmt&) = delete;
    void text(int i, std::string_view v) {
        sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    }
    void i64(int i, std::int64_t v) { sqlite3_bind_int64(s, i, v); }
    void u64(int i, std::uint64_t v) { sqlite3_bind_int64(s, i, static_cast<std::int64_t>(v)); }
    /// Binds the parameters 1..N in order (text, signed or unsigned integers).
    template <class... Args>
    Stmt& bind(const Args&... args) {
        int i = 0;
        (bind_one(++i, args), ...);
        return *this;
    }
    /// Binds the parameters and runs a statement that returns no row.
    template <class... Args>
    void run(sqlite3* db, const Args&... args) {
        bind(args...);
        done(db);
    }
    void bind_one(int i, std::string_view v) { text(i, v); }
    void bind_one(int i, std::int64_t v) { i64(i, v); }
    void bind_one(int i, std::uint64_t v) { u64(i, v); }
    int step() { return sqlite3_step(s); }
    void done(sqlite3* db) {
        const int rc = sqlite3_step(s);
        if (rc != SQLITE_DONE)
            throw std::runtime_error(std::string{"sqlite write: "} + sqlite3_errmsg(db));
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
    }
    std::string col_text(int i) {
        const auto* p = sqlite3_column_text(s, i);
        return p ? std::string{reinterpret_cast<const char*>(p),
                               static_cast<std::size_t>(sqlite3_column_bytes(s, i))}
                 : std::string{};
    }
    std::int64_t col_i64(int i) { return sqlite3_column_int64(s, i); }
};

}  // namespace

std::optional<FsyncMode> parse_fsync_mode(std::string_view name) {
    if (name == "always") return FsyncMode::always;
    if (name == "batch") return FsyncMode::batch;
    if (name == "off") return FsyncMode::off;
    return std::nullopt;
}

std::string_view to_string(FsyncMode m) {
    switch (m) {
        case FsyncMode::always:
            return "always";
        case FsyncMode::batch:
            return "batch";
        case FsyncMode::off:
            return "off";
    }
    return "?";
}

SqliteStore::SqliteStore(const std::filesystem::path& dir, FsyncMode mode, StoreLimits limits,
                         std::int64_t now_ms)
    : MemoryStore(limits, static_cast<std::uint64_t>(now_ms), Sessions::discard), mode_(mode) {
    std::error_code fec;
    std::filesystem::create_directories(dir, fec);
    if (fec)
        throw std::runtime_error("cannot create data directory " + dir.string() + ": " +
                                 fec.message());
    const auto path = (dir / "tether.db").string();
    if (sqlite3_open_v2(path.c_str(), &db_,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        nullptr) != SQLITE_OK) {
        std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
        sqlite3_close(db_);
        throw std::runtime_error("cannot open " + path + ": " + msg);
    }
    try {
        exec("PRAGMA journal_mode=WAL");
        exec(mode == FsyncMode::always  ? "PRAGMA synchronous=FULL"
             : mode == FsyncMode::batch ? "PRAGMA synchronous=NORMAL"
                                        : "PRAGMA synchronous=OFF");
        exec("PRAGMA busy_timeout=5000");
        exec(
            "CREATE TABLE IF NOT EXISTS streams (room TEXT PRIMARY KEY, epoch INTEGER NOT NULL, "
            "head INTEGER NOT NULL)");
        exec(
            "CREATE TABLE IF NOT EXISTS events (room TEXT NOT NULL, epoch INTEGER NOT NULL, offset "
            "INTEGER NOT NULL,"
            " at_ms INTEGER NOT NULL, data TEXT NOT NULL, publisher TEXT NOT NULL, publish_id TEXT "
            "NOT NULL,"
            " PRIMARY KEY (room, epoch, offset)) WITHOUT ROWID");
        exec(
            "CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, resume_token TEXT NOT NULL, "
            "user TEXT NOT NULL,"
            " rooms TEXT NOT NULL, expires_at_ms INTEGER NOT NULL)");
        // The publish log: the dedupe window (kept in memory too), trimmed by age.
        // A database from before it existed gets it filled from the events.
        Stmt exists{db_, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'publishes'"};
        const bool had_log = exists.step() == SQLITE_ROW;
        exec(
            "CREATE TABLE IF NOT EXISTS publishes (user TEXT NOT NULL, publish_id TEXT NOT NULL,"
            " room TEXT NOT NULL, epoch INTEGER NOT NULL, offset INTEGER NOT NULL,"
            " at_ms INTEGER NOT NULL, PRIMARY KEY (user, publish_id)) WITHOUT ROWID");
        exec("CREATE INDEX IF NOT EXISTS publishes_at ON publishes (at_ms)");
        if (!had_log)
            exec(
                "INSERT OR IGNORE INTO publishes SELECT publisher, publish_id, room, epoch, offset,"
                " at_ms FROM events WHERE publish_id <> ''");
        load();
    } catch (...) {
        sqlite3_close(db_);
        throw;
    }
    last_trim_ms_ = now_ms;
    thread_ = std::thread([this] { writer(); });
}

SqliteStore::~SqliteStore() {
    SqliteStore::flush();
    {
        std::lock_guard lock{mu_};
        stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
    sqlite3_close(db_);
}

void SqliteStore::exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
        std::string msg = err ? err : "unknown error";
        sqlite3_free(err);
        throw std::runtime_error(std::string{"sqlite: "} + msg + " in: " + sql);
    }
}

void SqliteStore::load() {
    Stmt streams{db_, "SELECT room, epoch, head FROM streams"};
    std::vector<std::tuple<std::string, std::uint64_t, std::uint64_t>> rooms;
    while (streams.step() == SQLITE_ROW)
        rooms.emplace_back(streams.col_text(0), static_cast<std::uint64_t>(streams.col_i64(1)),
                           static_cast<std::uint64_t>(streams.col_i64(2)));
    Stmt events{db_,
                "SELECT offset, at_ms, data, publisher, publish_id FROM events WHERE room = ?1 AND "
                "epoch = ?2"
                " ORDER BY offset DESC LIMIT ?3"};
    for (const auto& [room, epoch, head] : rooms) {
        restore_epoch(room, epoch, head);
        durable_[room] = {epoch, head};  // what is on disk is durable
        events.bind(room, epoch, limits_.history_size);
        std::vector<StoredEvent> newest_first;
        while (events.step() == SQLITE_ROW)
            newest_first.push_back(StoredEvent{static_cast<std::uint64_t>(events.col_i64(0)),
                                               events.col_i64(1), events.col_text(2),
                                               events.col_text(3), events.col_text(4)});
        sqlite3_reset(events.s);
        std::reverse(newest_first.begin(), newest_first.end());
        for (auto& e : newest_first)
            restore(room, epoch, std::move(e));
        loaded_events_ += newest_first.size();
    }
    // The publish log (the dedupe window), oldest first, within its bounds.
    Stmt publishes{
        db_, "SELECT user, publish_id, room, epoch, offset, at_ms FROM publishes ORDER BY at_ms"};
    while (publishes.step() == SQLITE_ROW)
        log_publish(publishes.col_text(0), publishes.col_text(1), publishes.col_text(2),
                    {static_cast<std::uint64_t>(publishes.col_i64(3)),
                     static_cast<std::uint64_t>(publishes.col_i64(4))},
                    publishes.col_i64(5));
    // Sessions stay in the database (not in memory): the engine pages through
    // them once at start-up (LoadSessions).
    Stmt sessions{db_, "SELECT COUNT(*) FROM sessions"};
    if (sessions.step() == SQLITE_ROW)
        loaded_sessions_ = static_cast<std::size_t>(sessions.col_i64(0));
}

std::uint64_t SqliteStore::durable_head(std::string_view room, const Stream& s) const {
    if (mode_ == FsyncMode::off) return s.head;  // acknowledged before the write, by design
    std::lock_guard lock{mu_};
    auto it = durable_.find(room);
    if (it == durable_.end() || it->second.first != s.epoch) return 0;
    return std::min(it->second.second, s.head);
}

void SqliteStore::enqueue(Op op) {
    {
        std::lock_guard lock{mu_};
        queue_.push_back(std::move(op));
        ++pending_ops_;
    }
    cv_.notify_one();
}

void SqliteStore::fail(std::uint64_t request) {
    complete(StoreResult{request, error::store_failed, store_result::Done{}});
}

void SqliteStore::submit(StoreRequest request) {
    bool failed = false;
    {
        std::lock_guard lock{mu_};
        failed = !writer_error_.empty();
    }
    auto* append = std::get_if<store_op::Append>(&request.op);
    auto* save = std::get_if<store_op::SaveSession>(&request.op);
    auto* erase = std::get_if<store_op::EraseSession>(&request.op);
    auto* load = std::get_if<store_op::LoadSessions>(&request.op);
    auto* trim_op = std::get_if<store_op::Trim>(&request.op);
    if (failed && (append || save || erase || load)) return fail(request.id);
    if (append) {
        auto locks = lock_append(*append);
        store_result::Appended done;
        if (auto original = find_duplicate(*append)) {
            done = store_result::Appended{*original, true};
            if (mode_ != FsyncMode::off) enqueue(DuplicateOp{request.id, *original});
        } else {
            done = store_result::Appended{append_entry(*append)};
            // fsync off: visible and acknowledged now, so reported now (in
            // offset order: under the state lock).
            if (mode_ == FsyncMode::off && observed())
                committed(
                    RemoteAppend{append->room, done.position, append->data, nullptr, request.id});
            // Queued under the state lock: the writer sees a room's appends
            // in offset order, whichever shard submitted them.
            enqueue(EventOp{request.id, append->room, done.position.epoch, done.position.offset,
                            append->at_ms, std::move(append->data), std::move(append->publisher),
                            std::move(append->publish_id)});
        }
        locks = {};
        // fsync off: acknowledged before the write, by design (docs/CLI.md).
        if (mode_ == FsyncMode::off) complete(StoreResult{request.id, {}, done});
    } else if (save) {
        enqueue(SessionOp{request.id, std::move(save->record)});
    } else if (erase) {
        enqueue(EraseSessionOp{request.id, std::move(erase->id)});
    } else if (load) {
        // The writer thread owns the connection: it answers after what is queued.
        enqueue(LoadSessionsOp{request.id, std::move(*load)});
    } else if (trim_op) {
        trim(*trim_op);  // one stripe at a time
        complete(StoreResult{request.id, {}, store_result::Done{}});
    } else {
        MemoryStore::submit(std::move(request));  // reads: from memory, at once
    }
}

void SqliteStore::flush() {
    std::unique_lock lock{mu_};
    done_cv_.wait(lock, [this] { return pending_ops_ == 0 || !writer_error_.empty(); });
}

void SqliteStore::trim(const store_op::Trim& t) {
    trim_memory(t);
    const auto now_ms = t.now_ms;
    // Several shards trim: one of them writes the database's trim.
    auto last = last_trim_ms_.load();
    if (now_ms - last < kTrimEveryMs || !last_trim_ms_.compare_exchange_strong(last, now_ms))
        return;
    TrimOp op{now_ms - limits_.history_ttl.count(), t.publishes_before_ms, {}};
    for_each_stream([&op](const std::string& name, const Stream& s) {
        op.firsts.emplace_back(name, s.epoch,
                               s.events.empty() ? s.head + 1 : s.events.front().offset);
    });
    enqueue(std::move(op));
}

void SqliteStore::reset_stream(std::string_view room) {
    MemoryStore::reset_stream(room);
    std::lock_guard lock{room_stripe(room).mu};
    enqueue(ResetOp{std::string{room}, room_stripe(room).streams.find(room)->second.epoch});
}

void SqliteStore::writer() {
    Stmt insert{
        db_,
        "INSERT OR REPLACE INTO events (room, epoch, offset, at_ms, data, publisher, publish_id)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"};
    Stmt head{db_,
              "INSERT INTO streams (room, epoch, head) VALUES (?1, ?2, ?3)"
              " ON CONFLICT(room) DO UPDATE SET epoch = excluded.epoch, head = excluded.head"};
    Stmt put_session{
        db_,
        "INSERT OR REPLACE INTO sessions (id, resume_token, user, rooms, expires_at_ms)"
        " VALUES (?1, ?2, ?3, ?4, ?5)"};
    Stmt del_session{db_, "DELETE FROM sessions WHERE id = ?1"};
    Stmt page_sessions{db_,
                       "SELECT id, resume_token, user, rooms, expires_at_ms FROM sessions"
                       " WHERE id > ?1 ORDER BY id LIMIT ?2"};
    Stmt del_room{db_, "DELETE FROM events WHERE room = ?1"};
    Stmt trim_old{db_, "DELETE FROM events WHERE at_ms < ?1"};
    Stmt put_publish{
        db_,
        "INSERT OR REPLACE INTO publishes (user, publish_id, room, epoch, offset, at_ms)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6)"};
    Stmt trim_publishes{db_, "DELETE FROM publishes WHERE at_ms < ?1"};
    Stmt trim_room{db_, "DELETE FROM events WHERE room = ?1 AND (epoch <> ?2 OR offset < ?3)"};
    for (;;) {
        std::deque<Op> batch;
        {
            std::unique_lock lock{mu_};
            cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
            if (queue_.empty() && stop_) return;
            while (!queue_.empty() && batch.size() < kBatchOpsMax) {
                batch.push_back(std::move(queue_.front()));
                queue_.pop_front();
            }
        }
        std::vector<StoreResult> results;  // delivered once the batch committed
        std::vector<std::tuple<std::string, std::uint64_t, std::uint64_t>> committed;
        try {
            exec("BEGIN");
            for (auto& op : batch) {
                if (auto* e = std::get_if<EventOp>(&op)) {
                    insert.run(db_, e->room, e->epoch, e->offset, e->at_ms, e->data, e->publisher,
                               e->publish_id);
                    head.run(db_, e->room, e->epoch, e->offset);
                    if (!e->publish_id.empty()) {
                        put_publish.run(db_, e->publisher, e->publish_id, e->room, e->epoch,
                                        e->offset, e->at_ms);
                    }
                    committed.emplace_back(e->room, e->epoch, e->offset);
                    if (mode_ != FsyncMode::off)
                        results.push_back(StoreResult{
                            e->request, {}, store_result::Appended{{e->epoch, e->offset}}});
                } else if (auto* s = std::get_if<SessionOp>(&op)) {
                    put_session.run(db_, s->record.id, s->record.resume_token, s->record.user,
                                    rooms_to_json(s->record.rooms), s->record.expires_at_ms);
                    results.push_back(StoreResult{s->request, {}, store_result::Done{}});
                } else if (auto* d = std::get_if<EraseSessionOp>(&op)) {
                    del_session.run(db_, d->id);
                    results.push_back(StoreResult{d->request, {}, store_result::Done{}});
                } else if (auto* l = std::get_if<LoadSessionsOp>(&op)) {
                    store_result::Sessions page;
                    page_sessions.bind(l->page.after, l->page.max + 1);
                    while (page_sessions.step() == SQLITE_ROW) {
                        if (page.sessions.size() == l->page.max) {
                            page.more = true;
                            break;
                        }
                        page.sessions.push_back(SessionRecord{
                            page_sessions.col_text(0), page_sessions.col_text(1),
                            page_sessions.col_text(2), rooms_from_json(page_sessions.col_text(3)),
                            page_sessions.col_i64(4)});
                    }
                    sqlite3_reset(page_sessions.s);
                    sqlite3_clear_bindings(page_sessions.s);
                    results.push_back(StoreResult{l->request, {}, std::move(page)});
                } else if (auto* dup = std::get_if<DuplicateOp>(&op)) {
                    results.push_back(
                        StoreResult{dup->request, {}, store_result::Appended{dup->original, true}});
                } else if (auto* r = std::get_if<ResetOp>(&op)) {
                    del_room.run(db_, r->room);
                    head.run(db_, r->room, r->epoch, std::uint64_t{0});
                } else if (auto* t = std::get_if<TrimOp>(&op)) {
                    trim_old.run(db_, t->cutoff_ms);
                    trim_publishes.run(db_, t->publishes_before_ms);
                    for (const auto& [room, epoch, first] : t->firsts) {
                        trim_room.run(db_, room, epoch, first);
                    }
                }
            }
            exec("COMMIT");
            ++commits_;
        } catch (const std::exception& ex) {
            // A store that cannot write must not acknowledge anything more:
            // every request of the batch, and every later one, fails.
            std::deque<Op> rest;
            {
                std::lock_guard lock{mu_};
                writer_error_ = ex.what();
                rest.swap(queue_);
                pending_ops_ = 0;
            }
            std::fprintf(stderr, "tether: store write failed, no further acknowledgements: %s\n",
                         ex.what());
            for (auto* ops : {&batch, &rest})
                for (auto& op : *ops)
                    std::visit(
                        [this](auto& o) {
                            if constexpr (requires { o.request; }) fail(o.request);
                        },
                        op);
            done_cv_.notify_all();
            return;
        }
        {
            std::lock_guard lock{mu_};
            for (const auto& [room, epoch, offset] : committed) {
                auto& d = durable_[room];
                d = {epoch, std::max(d.first == epoch ? d.second : 0, offset)};
            }
            pending_ops_ -= batch.size();
        }
        // The other shards hear of each append before its own result (offset
        // order: the writer is the only thread completing appends).
        if (mode_ != FsyncMode::off && observed())
            for (auto& op : batch)
                if (auto* e = std::get_if<EventOp>(&op))
                    Store::committed(RemoteAppend{
                        e->room, {e->epoch, e->offset}, std::move(e->data), nullptr, e->request});
        for (auto& r : results)
            complete(std::move(r));
        done_cv_.notify_all();
    }
}

}  // namespace tether::store
