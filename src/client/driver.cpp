#include "client/driver.hpp"

#include <random>

namespace tether::detail {

std::uint64_t seed_or_random(std::uint64_t seed) {
    if (seed != 0) return seed;
    std::random_device rd;
    const std::uint64_t s = (std::uint64_t{rd()} << 32) ^ rd();
    return s != 0 ? s : 1;
}

}  // namespace tether::detail
