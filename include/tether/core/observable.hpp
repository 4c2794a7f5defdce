#pragma once
/// @file
/// An observable value with RAII subscriptions and waiters that cannot leak
/// (a waitFor must not leak when the awaited value never comes).
///
/// - `subscribe(cb)` returns a Subscription; destroying it unsubscribes.
/// - `wait_for(pred, done, deadline)` completes *exactly once*: at once when
///   the predicate already holds, later when a new value satisfies it, when
///   the deadline passes (`handle_timeout`), when the Waiter handle is
///   cancelled or destroyed, or when the Observable itself is destroyed. After
///   completion nothing of the waiter remains in the Observable.
///
/// Time is never read: deadlines are driven through `poll_timeout()` and
/// `handle_timeout(now)`, like the rest of the sans-I/O core.
///
/// @par Example
/// @code
/// tether::Observable<int> level{0};
/// auto w = level.wait_for([](int v) { return v >= 3; },
///                         [](tether::WaitResult r, const int& v) { ... },
///                         now + std::chrono::seconds(5));
/// level.set(3);   // done(WaitResult::satisfied, 3)
/// @endcode
///
/// @par Thread safety
/// Distinct objects: safe. Shared objects: unsafe. Callbacks run synchronously
/// inside set()/handle_timeout()/cancel(); they may subscribe, unsubscribe,
/// cancel waiters and call set() again (re-entrant sets are queued and
/// delivered in order).

#include <tether/core/time.hpp>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <utility>

namespace tether {

/// How a waiter completed.
enum class WaitResult : std::uint8_t {
    satisfied,  ///< the predicate held for the value passed
    cancelled,  ///< Waiter::cancel() or the Waiter handle was destroyed
    timed_out,  ///< the deadline passed first
    abandoned,  ///< the Observable was destroyed first
};

template <class T>
/// A value that tells subscribers and waiters when it changes (see this file's description).
class Observable {
    struct State;

  public:
    /// Called with every new value.
    using Callback = std::function<void(const T&)>;
    /// What a waiter waits for.
    using Predicate = std::function<bool(const T&)>;
    /// How a waiter completed, with the value then.
    using Completion = std::function<void(WaitResult, const T&)>;

    /// Handle that keeps a subscription alive. Movable, not copyable.
    class Subscription {
      public:
        Subscription() = default;
        /// Moves the subscription (the source no longer unsubscribes).
        Subscription(Subscription&&) noexcept = default;
        /// Unsubscribes this one, then takes `o`'s.
        Subscription& operator=(Subscription&& o) noexcept;
        Subscription(const Subscription&) = delete;
        Subscription& operator=(const Subscription&) = delete;
        ~Subscription() { reset(); }
        /// Stops delivery; safe to call twice or after the Observable died.
        void reset() noexcept;
        /// True while the subscription delivers.
        bool active() const noexcept;

      private:
        friend class Observable;
        Subscription(std::weak_ptr<State> s, std::uint64_t id) : state_(std::move(s)), id_(id) {}
        std::weak_ptr<State> state_;
        std::uint64_t id_ = 0;
    };

    /// Handle to a pending wait. Destroying it cancels the wait.
    class Waiter {
      public:
        Waiter() = default;
        /// Moves the waiter.
        Waiter(Waiter&&) noexcept = default;
        /// Cancels this waiter, then takes `o`'s.
        Waiter& operator=(Waiter&& o) noexcept;
        Waiter(const Waiter&) = delete;
        Waiter& operator=(const Waiter&) = delete;
        ~Waiter() { cancel(); }
        /// Completes the wait with WaitResult::cancelled if still pending.
        void cancel() noexcept;
        /// True until the wait completed.
        bool pending() const noexcept;
        /// Detaches the handle: the wait stays pending without it and still
        /// completes by value, deadline or the Observable's destruction.
        void release() noexcept { state_.reset(); }

      private:
        friend class Observable;
        Waiter(std::weak_ptr<State> s, std::uint64_t id) : state_(std::move(s)), id_(id) {}
        std::weak_ptr<State> state_;
        std::uint64_t id_ = 0;
    };

    /// Starts with `initial`.
    explicit Observable(T initial = T{});
    ~Observable();
    Observable(const Observable&) = delete;
    Observable& operator=(const Observable&) = delete;

    /// The current value.
    const T& get() const noexcept { return state_->value; }

    /// Stores `v`; when it differs from the current value (operator==),
    /// notifies subscribers in subscription order, then checks waiters.
    void set(T v);

    /// Subscribing does not change the value, so it is allowed on a const
    /// Observable (a read-only view handed out by an owner).
    [[nodiscard]] Subscription subscribe(Callback cb) const;

    /// See the file comment. `done` runs exactly once.
    [[nodiscard]] Waiter wait_for(Predicate pred, Completion done,
                                  std::optional<time_point> deadline = std::nullopt) const;

    /// Earliest waiter deadline, if any.
    [[nodiscard]] std::optional<time_point> poll_timeout() const;
    /// Completes every waiter whose deadline is <= now with timed_out.
    void handle_timeout(time_point now);

    /// Subscriptions alive (tests).
    std::size_t subscriber_count() const noexcept { return state_->subscribers.size(); }
    /// Waiters pending (tests).
    std::size_t waiter_count() const noexcept { return state_->waiters.size(); }

  private:
    struct PendingWait {
        Predicate pred;
        Completion done;
        std::optional<time_point> deadline;
    };
    struct State {
        T value;
        std::uint64_t next_id = 1;
        std::map<std::uint64_t, Callback> subscribers;
        std::map<std::uint64_t, PendingWait> waiters;
        bool notifying = false;
        std::deque<T> queued;  // re-entrant set() values, bounded by recursion depth
        void complete(std::uint64_t id, WaitResult r);
    };

    void deliver();

    std::shared_ptr<State> state_;
};

}  // namespace tether

#include <tether/core/impl/observable.ipp>
