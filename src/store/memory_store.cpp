#include "store/memory_store.hpp"

#include <algorithm>

namespace tether::store {

MemoryStore::Stream& MemoryStore::stream_for(std::string_view room) {
    auto it = streams_.find(room);
    if (it == streams_.end())
        it = streams_.emplace(std::string{room}, Stream{epoch_base_, 0, {}}).first;
    return it->second;
}

void MemoryStore::bound(Stream& s) {
    while (s.events.size() > limits_.history_size)
        s.events.pop_front();
}

std::optional<proto::StreamPosition> MemoryStore::find_duplicate(const store_op::Append& a) const {
    if (a.publish_id.empty()) return std::nullopt;
    auto it = publishes_.find(PublishKeyView{a.publisher, a.publish_id});
    if (it == publishes_.end() || it->second.at_ms < a.dedupe_since_ms) return std::nullopt;
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

void MemoryStore::log_publish(const std::string& user, const std::string& id, std::string_view room,
                              proto::StreamPosition position, std::int64_t at_ms) {
    // A record renewed (its id came back after its window) gets new places
    // in the orders; the old ones are skipped when they come up.
    publishes_.insert_or_assign(PublishKey{user, id},
                                PublishEntry{position, at_ms, room_tag(room)});
    auto& mine = publishes_by_user_[user];
    mine.push_back(id);
    publish_order_.emplace_back(at_ms, PublishKey{user, id});
    if (mine.size() > limits_.dedupe_per_user_max) {
        if (auto old = publishes_.find(PublishKeyView{user, mine.front()}); old != publishes_.end())
            publishes_.erase(old);
        mine.pop_front();
    }
    // The order holds every live record (and some already forgotten by the
    // per-user bound): bounding it bounds the log.
    while (publish_order_.size() > limits_.dedupe_records_max)
        forget_oldest_publish();
}

void MemoryStore::forget_oldest_publish() {
    const auto& [at_ms, key] = publish_order_.front();
    auto it = publishes_.find(key);
    if (it != publishes_.end() && it->second.at_ms == at_ms) {
        publishes_.erase(it);
        auto u = publishes_by_user_.find(key.first);
        if (u != publishes_by_user_.end()) {
            auto& ids = u->second;
            if (auto i = std::find(ids.begin(), ids.end(), key.second); i != ids.end())
                ids.erase(i);
            if (ids.empty()) publishes_by_user_.erase(u);
        }
    }
    publish_order_.pop_front();
}

void MemoryStore::trim_publishes(std::int64_t before_ms) {
    while (!publish_order_.empty() && publish_order_.front().first < before_ms)
        forget_oldest_publish();
}

std::size_t MemoryStore::publish_log_size() const {
    std::lock_guard lock{state_mu_};
    return publishes_.size();
}

std::uint64_t MemoryStore::durable_head(std::string_view, const Stream& s) const {
    return s.head;
}

StreamInfo MemoryStore::stream(std::string_view room) const {
    std::lock_guard lock{state_mu_};
    return stream_locked(room);
}

StreamInfo MemoryStore::stream_locked(std::string_view room) const {
    auto it = streams_.find(room);
    if (it == streams_.end()) return StreamInfo{epoch_base_, 0, 1};
    const Stream& s = it->second;
    const auto head = durable_head(room, s);
    std::uint64_t first = head + 1;
    if (!s.events.empty()) first = std::min(first, s.events.front().offset);
    return StreamInfo{s.epoch, head, first};
}

store_result::Range MemoryStore::range(const store_op::ReadRange& r) const {
    store_result::Range out{stream_locked(r.room), {}};
    auto it = streams_.find(r.room);
    if (it == streams_.end() || it->second.events.empty()) return out;
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
    for (auto& [name, s] : streams_)
        while (!s.events.empty() && s.events.front().at_ms < cutoff)
            s.events.pop_front();
    trim_publishes(t.publishes_before_ms);
}

void MemoryStore::save(SessionRecord s) {
    if (keep_sessions_) sessions_[s.id] = std::move(s);
}

void MemoryStore::erase(std::string_view id) {
    if (auto it = sessions_.find(id); it != sessions_.end()) sessions_.erase(it);
}

void MemoryStore::submit(StoreRequest request) {
    StoreResult r;
    {
        std::lock_guard lock{state_mu_};
        r = execute(request);
    }
    complete(std::move(r));
}

StoreResult MemoryStore::execute(StoreRequest& request) {
    StoreResult r{request.id, {}, store_result::Done{}};
    std::visit(
        [&](auto& op) {
            using T = std::decay_t<decltype(op)>;
            if constexpr (std::is_same_v<T, store_op::Append>) {
                if (auto original = find_duplicate(op))
                    r.value = store_result::Appended{*original, true};
                else {
                    const auto pos = append_entry(op);  // durable at once
                    r.value = store_result::Appended{pos};
                    if (observed())
                        committed(RemoteAppend{op.room, pos, op.data, nullptr, request.id});
                }
            } else if constexpr (std::is_same_v<T, store_op::ReadStream>) {
                r.value = store_result::Stream{stream_locked(op.room)};
            } else if constexpr (std::is_same_v<T, store_op::ReadRange>) {
                r.value = range(op);
            } else if constexpr (std::is_same_v<T, store_op::LoadSessions>) {
                r.value = page_sessions(op);
            } else if constexpr (std::is_same_v<T, store_op::SaveSession>) {
                save(std::move(op.record));
            } else if constexpr (std::is_same_v<T, store_op::EraseSession>) {
                erase(op.id);
            } else if constexpr (std::is_same_v<T, store_op::Trim>) {
                trim_memory(op);
            }
        },
        request.op);
    return r;
}

void MemoryStore::reset_stream(std::string_view room) {
    std::lock_guard lock{state_mu_};
    Stream& s = stream_for(room);
    ++s.epoch;
    s.head = 0;
    s.events.clear();
}

std::vector<SessionRecord> MemoryStore::sessions() const {
    std::lock_guard lock{state_mu_};
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
