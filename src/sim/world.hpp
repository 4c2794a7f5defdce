#pragma once
// One simulated world: the clients (each a real ClientCore with its own
// links), the network, the server backend, the workload, the faults and the
// checker, driven step by step by the scheduler. workload.cpp and faults.cpp
// act on it; checker.cpp judges it.

#include "sim/backend.hpp"
#include "sim/checker.hpp"
#include "sim/network.hpp"
#include "sim/scheduler.hpp"
#include "sim/simulator.hpp"

#include <tether/core/client_core.hpp>

#include <memory>
#include <string>
#include <vector>

namespace tether::sim {

class World;

/// One application with its client core: feeds the core its inputs, hands
/// its transmits to the network and its events to the checker and the
/// application's reactions.
class SimClient : public ClientSide {
  public:
    SimClient(World& w, std::size_t index, ClientConfig cfg);

    /// Runs `fn` (an input to the core), then drains what the core produced.
    template <class F>
    void input(Input kind, F&& fn) {
        const ClientStatus before = core.status().get();
        fn();
        drain(kind, before);
    }

    void link_opened(std::uint64_t local) override;
    void link_message(std::uint64_t local, const std::string& text) override;
    void link_closed(std::uint64_t local, LinkClose why) override;

    std::size_t index;
    ClientConfig cfg;
    ClientCore core;
    bool online = true;
    std::uint64_t token_gen = 1;
    bool app_retry_pending = false;

  private:
    void drain(Input kind, const ClientStatus& before);
    World& w_;
};

/// The application's behaviour: traffic, credentials, retries after a stop.
class Workload {
  public:
    explicit Workload(World& w) : w_(w) {}
    void start();
    /// The application's reaction to an event of client `c`.
    void on_event(SimClient& c, const ClientEvent& e);
    /// Healing: one last event per room (a live subscriber learns of a lost
    /// stream from the next event).
    void heal();

  private:
    void schedule_backend();
    void schedule_client_traffic();
    void schedule_app_retry(SimClient& c);
    World& w_;
};

/// The faults of the fault phase.
class Faults {
  public:
    explicit Faults(World& w) : w_(w) {}
    void start();
    /// Stops faults and undoes the lasting ones.
    void heal();

  private:
    void schedule();
    void inject();
    World& w_;
};

class World {
  public:
    explicit World(const Options& o);
    Result run();

    // The parts (public: workload.cpp, faults.cpp and the clients use them).
    Options opt;
    Scheduler sched;
    SimServer::Config server_cfg;
    std::uint64_t sloppy_overlap = 0;
    StoreDelays store_delays;
    std::unique_ptr<Backend> server;
    std::unique_ptr<Network> net;
    std::unique_ptr<Checker> checker;
    std::vector<std::unique_ptr<SimClient>> clients;
    Workload workload{*this};
    Faults faults{*this};
    std::vector<std::string> room_names;
    bool healing = false;
    bool traffic = true;

    /// Delivers what the server wrote (after any server input).
    void drain_server() { net->drain_server(); }

  private:
    std::unique_ptr<Backend> make_backend();
    ClientConfig client_config(std::size_t index);
    bool step();
    [[nodiscard]] bool converged() const;
};

}  // namespace tether::sim
