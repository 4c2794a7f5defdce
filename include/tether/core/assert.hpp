#pragma once
/// @file
/// Always-on assertions (TigerBeetle style): an invariant that does not hold
/// is a bug, and continuing would corrupt delivery guarantees. They stay on in
/// release builds; the cost is a predictable branch.

#include <cstdio>
#include <cstdlib>

#define TETHER_ASSERT(cond)                                                                 \
    do {                                                                                    \
        if (!(cond)) [[unlikely]] {                                                         \
            std::fprintf(stderr, "tether: assertion failed: %s (%s:%d)\n", #cond, __FILE__, \
                         __LINE__);                                                         \
            std::abort();                                                                   \
        }                                                                                   \
    } while (false)
