#include "store/memory_store.hpp"

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

AppendResult MemoryStore::append_entry(std::string_view room, std::string data,
                                       std::string_view publisher, std::string_view publish_id,
                                       std::int64_t now_ms) {
    Stream& s = stream_for(room);
    ++s.head;
    s.events.push_back(StoredEvent{s.head, now_ms, std::move(data), std::string{publisher},
                                   std::string{publish_id}});
    bound(s);
    return AppendResult{{s.epoch, s.head}, ++next_seq_};
}

void MemoryStore::mark_durable(std::uint64_t seq) {
    durable_.store(seq);
    std::function<void()> notify;
    {
        std::lock_guard lock{notify_mu_};
        notify = notify_;
    }
    if (notify) notify();
}

void MemoryStore::on_durable(std::function<void()> notify) {
    std::lock_guard lock{notify_mu_};
    notify_ = std::move(notify);
}

AppendResult MemoryStore::append(std::string_view room, std::string data,
                                 std::string_view publisher, std::string_view publish_id,
                                 std::int64_t now_ms) {
    auto res = append_entry(room, std::move(data), publisher, publish_id, now_ms);
    mark_durable(res.seq);  // memory is as durable as this store gets
    return res;
}

StreamInfo MemoryStore::stream(std::string_view room) const {
    auto it = streams_.find(room);
    if (it == streams_.end()) return StreamInfo{epoch_base_, 0, 1};
    const Stream& s = it->second;
    return StreamInfo{s.epoch, s.head, s.events.empty() ? s.head + 1 : s.events.front().offset};
}

std::vector<StoredEvent> MemoryStore::read(std::string_view room, std::uint64_t after,
                                           std::uint64_t up_to, std::size_t max_events,
                                           std::size_t max_bytes) const {
    std::vector<StoredEvent> out;
    auto it = streams_.find(room);
    if (it == streams_.end() || it->second.events.empty()) return out;
    const auto& ev = it->second.events;
    const std::uint64_t first = ev.front().offset;
    std::size_t i = after + 1 > first ? static_cast<std::size_t>(after + 1 - first) : 0;
    std::size_t bytes = 0;
    for (; i < ev.size() && out.size() < max_events; ++i) {
        if (ev[i].offset > up_to) break;
        if (!out.empty() && bytes + ev[i].data.size() > max_bytes) break;
        bytes += ev[i].data.size();
        out.push_back(ev[i]);
    }
    return out;
}

std::vector<std::string> MemoryStore::rooms() const {
    std::vector<std::string> out;
    for (const auto& [name, s] : streams_)
        out.push_back(name);
    return out;
}

void MemoryStore::trim(std::int64_t now_ms) {
    const auto cutoff = now_ms - limits_.history_ttl.count();
    for (auto& [name, s] : streams_)
        while (!s.events.empty() && s.events.front().at_ms < cutoff)
            s.events.pop_front();
}

void MemoryStore::reset_stream(std::string_view room) {
    Stream& s = stream_for(room);
    ++s.epoch;
    s.head = 0;
    s.events.clear();
}

std::vector<SessionRecord> MemoryStore::load_sessions() const {
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
