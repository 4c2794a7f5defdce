#pragma once
// The simulator's checker: the invariants every step of every world must
// keep, per client (deliveries consecutive and byte-identical to the store's
// archive, history loss only when really unrecoverable, acks naming the
// stored message, each publish completing once, attempts only when allowed
// and never a storm, a status consistent with the connection), and at the
// end (convergence, no publish id stored twice, own publishes in order).

#include "sim/backend.hpp"
#include "sim/network.hpp"
#include "sim/scheduler.hpp"
#include "sim/simulator.hpp"

#include <tether/core/client_core.hpp>

#include <map>
#include <string>
#include <vector>

namespace tether::sim {

/// The client input that produced a batch of outputs, for attempt checks.
enum class Input : std::uint8_t { app, online, credentials, network, timeout };

class Checker {
  public:
    Checker(Scheduler& sched, Backend& server, Network& net, Sabotage sabotage);

    void add_client(const ClientConfig& cfg);
    /// Client `c` opens a connection (or asks for credentials first).
    /// `before`: the status before the input, `after`: after it.
    void on_attempt(std::size_t c, Input kind, const ClientStatus& before,
                    const ClientStatus& after, bool online);
    void on_event(std::size_t c, const ClientEvent& e, const ClientCore& core);
    /// After every input of client `c`: the status tells the truth.
    void after_input(std::size_t c, const ClientCore& core, bool online);
    /// The application published `id` (a check on its completion follows).
    void published(std::size_t c, const std::string& id, const std::string& room);
    void left(std::size_t c, const std::string& room);

    /// Every client connected, caught up with every room at the store's
    /// head, nothing pending.
    [[nodiscard]] bool converged(const std::vector<const ClientCore*>& clients) const;
    void final_checks() const;

    /// Off once rate limits or drops may reorder a client's own publishes.
    bool order_check = true;
    Stats stats;

  private:
    struct RoomCheck {
        std::optional<proto::StreamPosition> last;  ///< last position shown to the application
    };
    struct PublishRecord {
        std::string room;
        std::uint64_t index = 0;
        bool acked = false;
        bool failed = false;
        proto::StreamPosition position;
    };
    struct PerClient {
        ClientConfig cfg;
        duration retry_lo{0};
        duration retry_hi{0};
        std::map<std::string, RoomCheck, std::less<>> rooms;
        std::map<std::string, PublishRecord> publishes;
        std::vector<time_point> attempt_times;
    };

    void delivered(std::size_t c, const MessageReceived& e);
    [[noreturn]] void fail(std::size_t c, Violation kind, const std::string& what) const;

    Scheduler& sched_;
    Backend& server_;
    Network& net_;
    Sabotage sabotage_;
    std::uint64_t deliveries_seen_ = 0;
    std::uint64_t sabotage_at_ = 0;
    std::uint64_t publish_index_ = 0;
    std::vector<PerClient> clients_;
};

}  // namespace tether::sim
