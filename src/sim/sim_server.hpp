#pragma once
// A simulated tether server speaking protocol v1, for the deterministic
// simulator. It keeps sessions, rooms as (epoch, offset) streams with bounded
// history, publish dedupe and replay, and exposes fault knobs. The gateway
// issue replaces it with the real server engine.
//
// Internal to tether (not installed): used by `tether sim` and tests/sim.

#include <tether/core/protocol.hpp>
#include <tether/core/server_engine.hpp>
#include <tether/core/time.hpp>

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace tether::sim {

/// The simulated server speaks through the same transmit type as the real engine.
using ServerOutput = ServerTransmit;

class SimServer {
  public:
    struct Config {
        duration heartbeat{5'000};
        duration session_ttl{60'000};
        std::size_t history_max = 200;
    };
    /// Every entry ever appended, per room and epoch, for the checker.
    struct Entry {
        std::uint64_t offset = 0;
        std::string data;
        std::string publish_id;  // empty for backend publishes
    };
    struct Stream {
        std::uint64_t epoch = 1;
        std::uint64_t head = 0;
        std::deque<Entry> history;  // served history, bounded
    };

    explicit SimServer(Config c) : config_(c) {}

    /// The world's clock; set before every interaction.
    void set_now(time_point now) { now_ = now; }

    // connections
    void on_open(time_point now, std::uint64_t conn);
    void on_frame(time_point now, std::uint64_t conn, std::string_view text);
    void on_disconnect(time_point now, std::uint64_t conn);
    std::vector<ServerOutput> take_outputs();

    // world-side actions
    proto::StreamPosition publish_backend(std::string_view room, std::string data);
    void lose_history(std::string_view room);
    void lose_sessions() { sessions_.clear(); }
    /// Closes every connection (server restart); returns their ids.
    std::vector<std::uint64_t> drop_all();
    void drain(std::int64_t retry_after_ms);
    void close_conn(std::uint64_t conn, std::uint16_t code, std::string reason);
    std::vector<std::uint64_t> connections() const;

    // fault knobs
    bool reject_identify = false;  ///< IDENTIFY -> close 4004
    bool rate_limit = false;       ///< PUBLISH -> NACK rate_limited
    std::int64_t rate_limit_retry_ms = 500;
    std::set<std::string, std::less<>> forbidden_rooms;  ///< JOIN -> fatal JOIN_ERROR
    std::uint32_t join_error_budget = 0;  ///< next N joins answered with a retryable JOIN_ERROR
    /// At-least-once server: replays start `sloppy_overlap` events before the
    /// requested position, and every 7th live event is sent twice. Clients
    /// must dedupe; the checker sees any duplicate that gets through.
    std::uint64_t sloppy_overlap = 0;

    // inspection for the checker
    const std::map<std::string, Stream, std::less<>>& streams() const { return streams_; }
    /// (room, epoch) -> all entries ever appended in that epoch.
    const std::map<std::pair<std::string, std::uint64_t>, std::vector<Entry>>& archive() const {
        return archive_;
    }

  private:
    struct Session {
        std::string id;
        std::string resume_token;
        std::string user;
        std::set<std::string, std::less<>> rooms;
        std::optional<std::uint64_t> conn;
        time_point detached_at{};
    };
    struct Conn {
        std::optional<std::string> session;  // set once identified/resumed
        std::set<std::string, std::less<>> rooms;
    };

    void send(std::uint64_t conn, const proto::Message& m);
    void close(std::uint64_t conn, std::uint16_t code, std::string reason);
    void join(std::uint64_t conn, const std::string& room,
              std::optional<proto::StreamPosition> since);
    void attach(time_point now, std::uint64_t conn, const std::string& session_id);
    Stream& stream(std::string_view room);
    proto::StreamPosition append(std::string_view room, std::string data, std::string publish_id);

    Config config_;
    time_point now_{};
    std::uint64_t next_session_ = 1;
    std::uint64_t live_sent_ = 0;
    std::map<std::uint64_t, Conn> conns_;
    std::map<std::string, Session, std::less<>> sessions_;
    std::map<std::string, Stream, std::less<>> streams_;
    std::map<std::pair<std::string, std::uint64_t>, std::vector<Entry>> archive_;
    std::map<std::pair<std::string, std::string>, proto::Ack> dedupe_;  // (user, id)
    std::vector<ServerOutput> out_;
};

}  // namespace tether::sim
