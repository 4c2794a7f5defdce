#pragma once
/// @file
/// Assertions in the style of TigerBeetle.
///
/// - `TETHER_ASSERT(cond)`: always on, release builds included. An invariant
///   that does not hold is a bug, and continuing would corrupt delivery
///   guarantees; the cost is a predictable branch.
/// - `TETHER_CHECKED(object)`: checks `object.check_invariants()` where it is
///   written and again when the scope ends, i.e. at the entry and exit of a
///   handler. The whole-state checks walk rooms, sessions and queues, so they
///   are compiled in only with `TETHER_INVARIANTS` defined (the dev,
///   sanitizer and fuzz builds; CMake option TETHER_INVARIANTS).

#include <cstdio>
#include <cstdlib>
#include <type_traits>

/// Aborts with the condition, file and line when `cond` is false (always on).
#define TETHER_ASSERT(cond)                                                                 \
    do {                                                                                    \
        if (!(cond)) [[unlikely]] {                                                         \
            std::fprintf(stderr, "tether: assertion failed: %s (%s:%d)\n", #cond, __FILE__, \
                         __LINE__);                                                         \
            std::abort();                                                                   \
        }                                                                                   \
    } while (false)

namespace tether::detail {

/// Calls `object.check_invariants()` on construction and destruction.
template <class T>
class InvariantScope {
  public:
    explicit InvariantScope(const T& object) : object_(object) { object_.check_invariants(); }
    ~InvariantScope() { object_.check_invariants(); }
    InvariantScope(const InvariantScope&) = delete;
    InvariantScope& operator=(const InvariantScope&) = delete;

  private:
    const T& object_;
};

}  // namespace tether::detail

#if defined(TETHER_INVARIANTS)
/// Checks `object.check_invariants()` here and at the end of the scope.
#define TETHER_CHECKED(object)                                                    \
    const ::tether::detail::InvariantScope<std::remove_cvref_t<decltype(object)>> \
    tether_invariant_scope_(object)
/// 1 when TETHER_CHECKED checks, 0 when it compiles to nothing.
#define TETHER_INVARIANTS_ON 1
#else
#define TETHER_CHECKED(object) static_cast<void>(0)
#define TETHER_INVARIANTS_ON 0
#endif
