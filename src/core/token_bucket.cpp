#include <tether/core/assert.hpp>
#include <tether/core/token_bucket.hpp>

#include <algorithm>
#include <cmath>

namespace tether {

bool TokenBucket::take(const RateLimit& limit, std::int64_t now_ms,
                       std::int64_t& retry_after_ms) noexcept {
    TETHER_ASSERT(limit.per_second > 0 && limit.burst >= 1);
    const double elapsed_s =
        static_cast<double>(std::max<std::int64_t>(0, now_ms - at_ms_)) / 1000.0;
    tokens_ = std::min(limit.burst, tokens_ + elapsed_s * limit.per_second);
    at_ms_ = std::max(at_ms_, now_ms);
    if (tokens_ >= 1.0) {
        tokens_ -= 1.0;
        return true;
    }
    retry_after_ms = std::max<std::int64_t>(
        1, static_cast<std::int64_t>(std::ceil((1.0 - tokens_) * 1000.0 / limit.per_second)));
    TETHER_ASSERT(tokens_ >= 0 && tokens_ < 1.0);
    return false;
}

}  // namespace tether
