#include "sim/simulator.hpp"

#include "sim/world.hpp"

namespace tether::sim {

Result run(const Options& options) {
    World w{options};
    return w.run();
}

std::string replay_command(std::uint64_t seed) {
    return "tether sim --seed " + std::to_string(seed);
}

}  // namespace tether::sim
