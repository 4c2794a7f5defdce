#include "store/memory_store.hpp"

#include <tether/core/constant_time.hpp>

#include <algorithm>

namespace tether::store {

MemoryStore::Stream& MemoryStore::stream_for(std::string_view room) {
    auto& streams = room_stripe(room).streams;
    auto it = streams.find(room);
    if (it == streams.end())
        it = streams.emplace(std::string{room}, Stream{epoch_base_, 0, {}}).first;
    return it->second;
}

void MemoryStore::bound(Stream& s) {
    while (s.events.size() > limits_.history_size)
        s.events.pop_front();
}

std::size_t MemoryStore::log_stripe_of(std::string_view user) noexcept {
    // Not the bits the rooms use: a user's stripe is independent of theirs.
    return (StrHash{}(user) >> 8) % kStripes;
}

MemoryStore::AppendLocks MemoryStore::lock_append(const store_op::Append& a) const {
    AppendLocks locks;
    if (!a.publish_id.empty()) locks.log = std::unique_lock{log_stripe(a.publisher).mu};
    locks.room = std::unique_lock{room_stripe(a.room).mu};
    return locks;
}

std::optional<proto::StreamPosition> MemoryStore::find_duplicate(const store_op::Append& a) const {
    if (a.publish_id.empty()) return std::nullopt;
    const auto& users = log_stripe(a.publisher).users;
    auto u = users.find(std::string_view{a.publisher});
    if (u == users.end()) return std::nullopt;
    auto it = u->second.ids.find(std::string_view{a.publish_id});
    if (it == u->second.ids.end() || it->second.at_ms < a.dedupe_since_ms) return std::nullopt;
    // A retry goes to the room of the original; an id reused in another room
    // is a new publish (acknowledging it with the other room's offset named
    // an offset that room does not hold: found by fuzz_server_engine).
    if (it->second.room != room_tag(a.room)) return std::nullopt;
    return it->second.position;
}

proto::StreamPosition MemoryStore::append_entry(const store_op::Append& a) {
    Stream& s = stream_for(a.room);
    ++s.head;
    s.events.push_back(StoredEvent{s.head, a.at_ms, a.data, a.publisher, a.publish_id});
    bound(s);
    const proto::StreamPosition pos{s.epoch, s.head};
    if (!a.publish_id.empty()) log_publish(a.publisher, a.publish_id, a.room, pos, a.at_ms);
    return pos;
}

std::uint64_t MemoryStore::room_tag(std::string_view room) noexcept {
    return std::hash<std::string_view>{}(room);
}

namespace {

/// Doubly linked lists threaded through the records (`Prev`/`Next` name the
/// links of one list).
template <auto Prev, auto Next, class R, class Owner>
void unlink(Owner& o, R& r) {
    (r.*Prev ? (r.*Prev)->*Next : o.oldest) = r.*Next;
    (r.*Next ? (r.*Next)->*Prev : o.newest) = r.*Prev;
    r.*Prev = r.*Next = nullptr;
}

template <auto Prev, auto Next, class R, class Owner>
void push_newest(Owner& o, R& r) {
    r.*Prev = o.newest;
    r.*Next = nullptr;
    (o.newest ? o.newest->*Next : o.oldest) = &r;
    o.newest = &r;
}

}  // namespace

void MemoryStore::log_publish(const std::string& user, const std::string& id, std::string_view room,
                              proto::StreamPosition position, std::int64_t at_ms) {
    using R = PublishRecord;
    LogStripe& l = log_stripe(user);
    auto u = l.users.find(std::string_view{user});
    if (u == l.users.end()) {
        u = l.users.emplace(user, UserLog{}).first;
        u->second.name = &u->first;
    }
    UserLog& mine = u->second;
    auto [it, fresh] = mine.ids.try_emplace(id);
    R& r = it->second;
    if (fresh) {
        r.user = &mine;
        r.id = &it->first;
        ++l.records;
        ++publish_records_;
    } else {
        // Renewed (its id came back after its window): it moves to the end
        // of both orders.
        unlink<&R::user_prev, &R::user_next>(mine, r);
        unlink<&R::prev, &R::next>(l, r);
    }
    r.position = position;
    r.at_ms = at_ms;
    r.room = room_tag(room);
    push_newest<&R::user_prev, &R::user_next>(mine, r);
    push_newest<&R::prev, &R::next>(l, r);
    if (mine.ids.size() > limits_.dedupe_per_user_max) forget_publish(l, *mine.oldest);
    // Over the bound in all: this stripe forgets its oldest. Each stripe
    // keeps its newest record, so the log may exceed the bound by at most
    // kStripes - 1 records while other stripes hold the rest.
    while (publish_records_.load() > limits_.dedupe_records_max && l.records > 1)
        forget_publish(l, *l.oldest);
}

void MemoryStore::forget_publish(LogStripe& l, PublishRecord& r) {
    using R = PublishRecord;
    UserLog& u = *r.user;
    unlink<&R::user_prev, &R::user_next>(u, r);
    unlink<&R::prev, &R::next>(l, r);
    --l.records;
    --publish_records_;
    u.ids.erase(u.ids.find(std::string_view{*r.id}));  // r is gone from here on
    if (u.ids.empty()) l.users.erase(l.users.find(std::string_view{*u.name}));
}

void MemoryStore::trim_publishes(std::int64_t before_ms) {
    for (auto& l : logs_) {
        std::lock_guard lock{l.mu};
        while (l.oldest && l.oldest->at_ms < before_ms)
            forget_publish(l, *l.oldest);
    }
}

std::size_t MemoryStore::publish_log_size() const {
    std::size_t n = 0;
    for (const auto& l : logs_) {
        std::lock_guard lock{l.mu};
        n += l.records;
    }
    return n;
}

std::uint64_t MemoryStore::durable_head(std::string_view, const Stream& s) const {
    return s.head;
}

StreamInfo MemoryStore::stream(std::string_view room) const {
    std::lock_guard lock{room_stripe(room).mu};
    return stream_locked(room);
}

StreamInfo MemoryStore::stream_locked(std::string_view room) const {
    const auto& streams = room_stripe(room).streams;
    auto it = streams.find(room);
    if (it == streams.end()) return StreamInfo{epoch_base_, 0, 1};
    const Stream& s = it->second;
    const auto head = durable_head(room, s);
    std::uint64_t first = head + 1;
    if (!s.events.empty()) first = std::min(first, s.events.front().offset);
    return StreamInfo{s.epoch, head, first};
}

store_result::Range MemoryStore::range(const store_op::ReadRange& r) const {
    store_result::Range out{stream_locked(r.room), {}};
    const auto& streams = room_stripe(r.room).streams;
    auto it = streams.find(r.room);
    if (it == streams.end() || it->second.events.empty()) return out;
    const auto& ev = it->second.events;
    const std::uint64_t up_to = std::min(r.up_to, out.info.head);
    const std::uint64_t first = ev.front().offset;
    std::size_t i = r.after + 1 > first ? static_cast<std::size_t>(r.after + 1 - first) : 0;
    std::size_t bytes = 0;
    for (; i < ev.size() && out.events.size() < r.max_events; ++i) {
        if (ev[i].offset > up_to) break;
        if (!out.events.empty() && bytes + ev[i].data.size() > r.max_bytes) break;
        bytes += ev[i].data.size();
        out.events.push_back(ev[i]);
    }
    return out;
}

store_result::Sessions MemoryStore::page_sessions(const store_op::LoadSessions& l) const {
    store_result::Sessions out;
    for (auto it = sessions_.upper_bound(l.after); it != sessions_.end(); ++it) {
        if (out.sessions.size() >= l.max) {
            out.more = true;
            break;
        }
        out.sessions.push_back(it->second);
    }
    return out;
}

void MemoryStore::trim_memory(const store_op::Trim& t) {
    const auto cutoff = t.now_ms - limits_.history_ttl.count();
    for (auto& st : rooms_) {
        std::lock_guard lock{st.mu};
        for (auto& [name, s] : st.streams)
            while (!s.events.empty() && s.events.front().at_ms < cutoff)
                s.events.pop_front();
    }
    trim_publishes(t.publishes_before_ms);
}

void MemoryStore::save(SessionRecord s) {
    if (!keep_sessions_) return;
    auto it = sessions_.find(s.id);
    if (it != sessions_.end() && it->second.generation > s.generation) return;  // a stale save
    sessions_[s.id] = std::move(s);
}

store_result::Claimed MemoryStore::claim(const store_op::ClaimSession& c) {
    auto it = sessions_.find(c.id);
    if (it == sessions_.end()) return {};
    SessionRecord& s = it->second;
    if (!constant_time_equal(s.resume_token, c.resume_token)) return {};
    if (s.expires_at_ms != 0 && s.expires_at_ms <= c.now_ms) return {};
    s.resume_token = c.new_token;
    s.expires_at_ms = 0;
    ++s.generation;
    return store_result::Claimed{true, s};
}

void MemoryStore::erase(std::string_view id, std::uint64_t generation) {
    auto it = sessions_.find(id);
    if (it != sessions_.end() && it->second.generation <= generation) sessions_.erase(it);
}

void MemoryStore::submit(StoreRequest request) {
    complete(execute(request));  // the locks are released before the result goes out
}

StoreResult MemoryStore::execute(StoreRequest& request) {
    StoreResult r{request.id, {}, store_result::Done{}};
    std::visit(
        [&](auto& op) {
            using T = std::decay_t<decltype(op)>;
            if constexpr (std::is_same_v<T, store_op::Append>) {
                // Reported under the room's lock: in offset order per room.
                const auto locks = lock_append(op);
                if (auto original = find_duplicate(op))
                    r.value = store_result::Appended{*original, true};
                else {
                    const auto pos = append_entry(op);  // durable at once
                    r.value = store_result::Appended{pos};
                    if (observed())
                        committed(RemoteAppend{op.room, pos, op.data, nullptr, request.id});
                }
            } else if constexpr (std::is_same_v<T, store_op::ReadStream>) {
                std::lock_guard lock{room_stripe(op.room).mu};
                r.value = store_result::Stream{stream_locked(op.room)};
            } else if constexpr (std::is_same_v<T, store_op::ReadRange>) {
                std::lock_guard lock{room_stripe(op.room).mu};
                r.value = range(op);
            } else if constexpr (std::is_same_v<T, store_op::LoadSessions>) {
                std::lock_guard lock{sessions_mu_};
                r.value = page_sessions(op);
            } else if constexpr (std::is_same_v<T, store_op::SaveSession>) {
                std::lock_guard lock{sessions_mu_};
                save(std::move(op.record));
            } else if constexpr (std::is_same_v<T, store_op::EraseSession>) {
                std::lock_guard lock{sessions_mu_};
                erase(op.id, op.generation);
            } else if constexpr (std::is_same_v<T, store_op::ClaimSession>) {
                std::lock_guard lock{sessions_mu_};
                r.value = claim(op);
            } else if constexpr (std::is_same_v<T, store_op::Trim>) {
                trim_memory(op);
            }
        },
        request.op);
    return r;
}

proto::StreamPosition MemoryStore::lose_newest(std::string_view room, std::uint64_t count) {
    std::lock_guard lock{room_stripe(room).mu};
    Stream& s = stream_for(room);
    const auto lost = std::min(count, s.head);
    s.head -= lost;
    while (!s.events.empty() && s.events.back().offset > s.head)
        s.events.pop_back();
    ++s.epoch;
    return {s.epoch, s.head};
}

void MemoryStore::reset_stream(std::string_view room) {
    std::lock_guard lock{room_stripe(room).mu};
    Stream& s = stream_for(room);
    ++s.epoch;
    s.head = 0;
    s.events.clear();
}

std::vector<SessionRecord> MemoryStore::sessions() const {
    std::lock_guard lock{sessions_mu_};
    std::vector<SessionRecord> out;
    for (const auto& [id, s] : sessions_)
        out.push_back(s);
    return out;
}

void MemoryStore::restore(std::string_view room, std::uint64_t epoch, StoredEvent e) {
    Stream& s = stream_for(room);
    if (epoch != s.epoch) {
        s.epoch = epoch;
        s.events.clear();
    }
    s.head = std::max(s.head, e.offset);
    s.events.push_back(std::move(e));
    bound(s);
}

void MemoryStore::restore_epoch(std::string_view room, std::uint64_t epoch, std::uint64_t head) {
    Stream& s = stream_for(room);
    s.epoch = epoch;
    s.head = head;
}

}  // namespace tether::store
