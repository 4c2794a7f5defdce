#pragma once
// The simulated network between the clients and the server: links with
// latency (and slow periods), refused and hanging connects, resets,
// half-open links (frames in flight lost, nobody told), orderly closes, and
// the flow control that lets the server write its next replay page.
//
// Clients name their connections with their own ids; the network gives each
// one a world-wide id, which is what the server sees.

#include "sim/backend.hpp"
#include "sim/scheduler.hpp"

#include <tether/core/reconnector.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

namespace tether::sim {

/// What the network calls on a client (its driver).
class ClientSide {
  public:
    virtual ~ClientSide() = default;
    virtual void link_opened(std::uint64_t local) = 0;
    virtual void link_message(std::uint64_t local, const std::string& text) = 0;
    virtual void link_closed(std::uint64_t local, LinkClose why) = 0;
};

struct Link {
    enum class State : std::uint8_t { connecting, open, half_open, closed };
    std::size_t client = 0;
    std::uint64_t local = 0;
    State state = State::connecting;
    bool client_alive = true;  ///< the client still believes this socket may be open
    bool cut = false;          ///< reset or blackholed: frames in flight are lost
    time_point c2s_last{};
    time_point s2c_last{};
};

class Network {
  public:
    Network(Scheduler& sched, Backend& server, duration base_latency)
        : sched_(sched), server_(server), base_latency_(base_latency) {}

    void add_client(ClientSide& c) { clients_.push_back(&c); }

    /// Carries out one transmit of client `client`.
    void transmit(std::size_t client, Transmit& t);
    /// Delivers what the server wrote.
    void drain_server();
    /// The client side of `global` breaks (reset): the server learns at once,
    /// the client after a latency, with `code` (1006: no close frame).
    void close_client_side(std::uint64_t global, std::uint16_t code, const char* reason);
    /// Frames on `global` are lost from now on and nobody is told.
    void half_open(std::uint64_t global);

    /// The world-wide id of a client's connection.
    [[nodiscard]] std::optional<std::uint64_t> global_of(std::size_t client,
                                                         std::uint64_t local) const;
    [[nodiscard]] const Link* link(std::uint64_t global) const;
    /// Links the client still believes alive (never two at once).
    [[nodiscard]] std::vector<std::uint64_t> alive_links(std::size_t client) const;

    // ---- conditions, set by the faults ----
    bool server_up = true;
    time_point refuse_until{};
    bool hang_connects = false;
    time_point slow_until{};

  private:
    duration latency();
    void open(std::size_t client, std::uint64_t local);

    Scheduler& sched_;
    Backend& server_;
    duration base_latency_;
    std::vector<ClientSide*> clients_;
    std::uint64_t next_global_ = 1;
    std::map<std::uint64_t, Link> links_;                                 // by world-wide id
    std::map<std::pair<std::size_t, std::uint64_t>, std::uint64_t> ids_;  // (client, local) -> id
};

}  // namespace tether::sim
