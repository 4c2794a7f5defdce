#pragma once
// Implementation of tether::Observable<T>; included from observable.hpp.

#include <tether/core/assert.hpp>

#include <vector>

namespace tether {

template <class T>
void Observable<T>::State::complete(std::uint64_t id, WaitResult r) {
    auto it = waiters.find(id);
    if (it == waiters.end()) return;
    // Erase before calling: the completion may re-enter and must see the
    // waiter gone, and whatever it captured is released when `w` dies.
    PendingWait w = std::move(it->second);
    waiters.erase(it);
    if (w.done) w.done(r, value);
}

template <class T>
auto Observable<T>::Subscription::operator=(Subscription&& o) noexcept -> Subscription& {
    if (this != &o) {
        reset();
        state_ = std::move(o.state_);
        id_ = std::exchange(o.id_, 0);
    }
    return *this;
}

template <class T>
void Observable<T>::Subscription::reset() noexcept {
    if (auto s = state_.lock()) s->subscribers.erase(id_);
    state_.reset();
}

template <class T>
bool Observable<T>::Subscription::active() const noexcept {
    auto s = state_.lock();
    return s && s->subscribers.count(id_) != 0;
}

template <class T>
auto Observable<T>::Waiter::operator=(Waiter&& o) noexcept -> Waiter& {
    if (this != &o) {
        cancel();
        state_ = std::move(o.state_);
        id_ = std::exchange(o.id_, 0);
    }
    return *this;
}

template <class T>
void Observable<T>::Waiter::cancel() noexcept {
    if (auto s = state_.lock()) s->complete(id_, WaitResult::cancelled);
    state_.reset();
}

template <class T>
bool Observable<T>::Waiter::pending() const noexcept {
    auto s = state_.lock();
    return s && s->waiters.count(id_) != 0;
}

template <class T>
Observable<T>::Observable(T initial) : state_(std::make_shared<State>()) {
    state_->value = std::move(initial);
}

template <class T>
Observable<T>::~Observable() {
    // Keep the state alive while completions run; they may touch handles.
    auto keep = state_;
    while (!keep->waiters.empty())
        keep->complete(keep->waiters.begin()->first, WaitResult::abandoned);
    keep->subscribers.clear();
}

template <class T>
void Observable<T>::set(T v) {
    if (state_->notifying) {
        state_->queued.push_back(std::move(v));
        return;
    }
    if (v == state_->value) return;
    state_->value = std::move(v);
    deliver();
}

template <class T>
void Observable<T>::deliver() {
    auto keep = state_;
    keep->notifying = true;
    for (;;) {
        // Snapshot ids: callbacks may add or remove subscribers and waiters.
        std::vector<std::uint64_t> ids;
        ids.reserve(keep->subscribers.size());
        for (auto& [id, cb] : keep->subscribers)
            ids.push_back(id);
        for (auto id : ids) {
            auto it = keep->subscribers.find(id);
            if (it == keep->subscribers.end()) continue;
            Callback cb = it->second;  // copy: the callback may unsubscribe itself
            cb(keep->value);
        }
        std::vector<std::uint64_t> wids;
        for (auto& [id, w] : keep->waiters)
            wids.push_back(id);
        for (auto id : wids) {
            auto it = keep->waiters.find(id);
            if (it != keep->waiters.end() && it->second.pred(keep->value))
                keep->complete(id, WaitResult::satisfied);
        }
        // Apply re-entrant sets in order; skip values equal to the current.
        bool changed = false;
        while (!keep->queued.empty() && !changed) {
            T next = std::move(keep->queued.front());
            keep->queued.pop_front();
            if (!(next == keep->value)) {
                keep->value = std::move(next);
                changed = true;
            }
        }
        if (!changed) break;
    }
    keep->notifying = false;
}

template <class T>
auto Observable<T>::subscribe(Callback cb) const -> Subscription {
    TETHER_ASSERT(cb);
    const auto id = state_->next_id++;
    state_->subscribers.emplace(id, std::move(cb));
    return Subscription{state_, id};
}

template <class T>
auto Observable<T>::wait_for(Predicate pred, Completion done,
                             std::optional<time_point> deadline) const -> Waiter {
    TETHER_ASSERT(pred);
    if (pred(state_->value)) {
        if (done) done(WaitResult::satisfied, state_->value);
        return Waiter{};
    }
    const auto id = state_->next_id++;
    state_->waiters.emplace(id, PendingWait{std::move(pred), std::move(done), deadline});
    return Waiter{state_, id};
}

template <class T>
std::optional<time_point> Observable<T>::poll_timeout() const {
    std::optional<time_point> earliest;
    for (auto& [id, w] : state_->waiters)
        if (w.deadline && (!earliest || *w.deadline < *earliest)) earliest = w.deadline;
    return earliest;
}

template <class T>
void Observable<T>::handle_timeout(time_point now) {
    auto keep = state_;
    std::vector<std::uint64_t> due;
    for (auto& [id, w] : keep->waiters)
        if (w.deadline && *w.deadline <= now) due.push_back(id);
    for (auto id : due)
        keep->complete(id, WaitResult::timed_out);
}

}  // namespace tether
