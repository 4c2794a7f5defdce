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

proto::StreamPosition MemoryStore::append_entry(const store_op::Append& a) {
    Stream& s = stream_for(a.room);
    ++s.head;
    s.events.push_back(StoredEvent{s.head, a.at_ms, a.data, a.publisher, a.publish_id});
    bound(s);
    const proto::StreamPosition pos{s.epoch, s.head};
    if (keep_sessions_ && !a.publish_id.empty()) {
        auto key = std::make_pair(a.publisher, a.publish_id);
        publishes_[key] =
            store_result::PublishRecord{a.publisher, a.publish_id, a.room, pos, a.at_ms};
        publish_order_.emplace_back(a.at_ms, std::move(key));
    }
    return pos;
}

std::uint64_t MemoryStore::durable_head(std::string_view, const Stream& s) const {
    return s.head;
}

StreamInfo MemoryStore::stream(std::string_view room) const {
    auto it = streams_.find(room);
    if (it == streams_.end()) return StreamInfo{epoch_base_, 0, 1};
    const Stream& s = it->second;
    const auto head = durable_head(room, s);
    std::uint64_t first = head + 1;
    if (!s.events.empty()) first = std::min(first, s.events.front().offset);
    return StreamInfo{s.epoch, head, first};
}

store_result::Range MemoryStore::range(const store_op::ReadRange& r) const {
    store_result::Range out{stream(r.room), {}};
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

store_result::Publishes MemoryStore::page_publishes(const store_op::LoadPublishes& l) const {
    store_result::Publishes out;
    for (auto it = publishes_.upper_bound({l.after_user, l.after_id}); it != publishes_.end();
         ++it) {
        if (it->second.at_ms < l.since_ms) continue;
        if (out.records.size() >= l.max) {
            out.more = true;
            break;
        }
        out.records.push_back(it->second);
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
    while (!publish_order_.empty() && publish_order_.front().first < t.publishes_before_ms) {
        auto it = publishes_.find(publish_order_.front().second);
        if (it != publishes_.end() && it->second.at_ms < t.publishes_before_ms)
            publishes_.erase(it);
        publish_order_.pop_front();
    }
}

void MemoryStore::save(SessionRecord s) {
    if (keep_sessions_) sessions_[s.id] = std::move(s);
}

void MemoryStore::erase(std::string_view id) {
    if (auto it = sessions_.find(id); it != sessions_.end()) sessions_.erase(it);
}

void MemoryStore::submit(StoreRequest request) {
    StoreResult r{request.id, {}, store_result::Done{}};
    std::visit(
        [&](auto& op) {
            using T = std::decay_t<decltype(op)>;
            if constexpr (std::is_same_v<T, store_op::Append>) {
                r.value = store_result::Appended{append_entry(op)};  // durable at once
            } else if constexpr (std::is_same_v<T, store_op::ReadStream>) {
                r.value = store_result::Stream{stream(op.room)};
            } else if constexpr (std::is_same_v<T, store_op::ReadRange>) {
                r.value = range(op);
            } else if constexpr (std::is_same_v<T, store_op::LoadPublishes>) {
                r.value = page_publishes(op);
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
    complete(std::move(r));
}

void MemoryStore::reset_stream(std::string_view room) {
    Stream& s = stream_for(room);
    ++s.epoch;
    s.head = 0;
    s.events.clear();
}

std::vector<SessionRecord> MemoryStore::sessions() const {
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
