#pragma once
/// @file
/// One table of deadlines keyed by an enum (the shape of quinn-proto's
/// `TimerTable`): a state machine with several deadlines keeps them here,
/// `poll_timeout()` is the minimum of the table, and `handle_timeout()`
/// dispatches what expired -- in the order of the enum, so that the order is
/// part of the design rather than of a chain of `if`s.
///
/// @par Example
/// @code
/// enum class T : std::uint8_t { retry, ping, count_ };
/// tether::TimerTable<T> timers;
/// timers.set(T::ping, now + 15s);
/// auto next = timers.next();                 // the earliest deadline
/// timers.for_each_expired(now, [](T t) { ... });  // cleared before the call
/// @endcode
///
/// @par Thread safety
/// Distinct objects: safe. Shared objects: unsafe.

#include <tether/core/time.hpp>

#include <array>
#include <cstddef>
#include <optional>

namespace tether {

/// `Timer` is an enum whose last enumerator is `count_`.
template <class Timer>
class TimerTable {
  public:
    /// Slots in the table: one per timer.
    static constexpr std::size_t size = static_cast<std::size_t>(Timer::count_);

    /// Arms (or moves) `t` to `at`.
    void set(Timer t, time_point at) noexcept { slots_[index(t)] = at; }
    /// Arms `t` to `at`, or disarms it for nullopt.
    void set(Timer t, std::optional<time_point> at) noexcept { slots_[index(t)] = at; }
    /// Disarms `t`.
    void clear(Timer t) noexcept { slots_[index(t)].reset(); }
    /// `t`'s deadline, if armed.
    [[nodiscard]] std::optional<time_point> get(Timer t) const noexcept { return slots_[index(t)]; }
    /// True when `t` is armed.
    [[nodiscard]] bool armed(Timer t) const noexcept { return slots_[index(t)].has_value(); }
    /// True when `t` is armed and due at `now`.
    [[nodiscard]] bool expired(Timer t, time_point now) const noexcept {
        return slots_[index(t)] && *slots_[index(t)] <= now;
    }
    /// The earliest armed deadline (what poll_timeout() returns).
    [[nodiscard]] std::optional<time_point> next() const noexcept {
        std::optional<time_point> out;
        for (const auto& s : slots_)
            if (s && (!out || *s < *out)) out = s;
        return out;
    }
    /// Calls `f(t)` for every timer due at `now`, in enum order; each is
    /// disarmed just before its call (the handler may arm it again). Timers
    /// armed by a handler for a slot already visited wait for the next call.
    template <class F>
    void for_each_expired(time_point now, F&& f) {
        for (std::size_t i = 0; i < size; ++i) {
            if (slots_[i] && *slots_[i] <= now) {
                slots_[i].reset();
                f(static_cast<Timer>(i));
            }
        }
    }
    /// Disarms every timer.
    void clear_all() noexcept { slots_.fill(std::nullopt); }

  private:
    static constexpr std::size_t index(Timer t) noexcept { return static_cast<std::size_t>(t); }
    std::array<std::optional<time_point>, size> slots_{};
};

}  // namespace tether
