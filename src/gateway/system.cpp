#include "gateway/system.hpp"

#include <openssl/rand.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

namespace tether::gateway {

std::int64_t wall_ms() {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

void secure_random(std::span<std::uint8_t> out) {
    if (RAND_bytes(out.data(), static_cast<int>(out.size())) != 1) {
        std::fprintf(stderr, "tether: no secure random source available\n");
        std::abort();
    }
}

}  // namespace tether::gateway
