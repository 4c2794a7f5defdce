#include "client/driver.hpp"

#include <random>
#include <stdexcept>

namespace tether::detail {

std::uint64_t seed_or_random(std::uint64_t seed) {
    if (seed != 0) return seed;
    std::random_device rd;
    const std::uint64_t s = (std::uint64_t{rd()} << 32) ^ rd();
    return s != 0 ? s : 1;
}

std::shared_ptr<const Endpoint> endpoint_or_throw(const TransportOptions& t, std::string_view who) {
    auto ep = make_endpoint(t);
    if (!ep) throw std::invalid_argument(std::string{who} + ": " + ep.error().message);
    return std::make_shared<const Endpoint>(std::move(*ep));
}

}  // namespace tether::detail
