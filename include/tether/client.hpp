#pragma once
/// @file
/// `tether::Client`: the reconnecting tether client over Asio/Beast.
///
/// A thin driver around the sans-I/O `ClientCore`: it opens the WebSocket
/// (ws:// or wss:// with certificate and host-name verification), feeds the
/// core with socket events and a steady clock, and carries out what the core
/// asks. Every decision (backoff, resume, replay, dedupe, outbox order) is the
/// core's and is tested in virtual time and in the simulator.
///
/// @par Example
/// @code
/// tether::ClientOptions opt;
/// opt.url = "ws://127.0.0.1:8080/";
/// opt.token = "...";
/// tether::Client client{opt};                  // runs on its own thread
/// auto room = client.join("lobby");
/// room.on_message([](const tether::MessageReceived& m) { std::puts(m.data.c_str()); });
/// room.publish(R"({"text":"hi"})", [](const tether::PublishOutcome& r) {
///     if (r.ok()) std::printf("stored at offset %llu\n", (unsigned long long)r.position.offset);
/// });
/// if (!client.wait_connected(std::chrono::seconds(5))) std::puts(client.status_line().c_str());
/// @endcode
///
/// @par Thread safety
/// Every public member function may be called from any thread. Callbacks run
/// on the client's strand, one at a time, never concurrently with each other;
/// they may call back into the client (but must not block on it:
/// wait_connected() from a callback returns false at once).
///
/// @par Lifetime
/// The destructor closes the connection (close handshake bounded by
/// `close_timeout`), stops the network monitor and, when the client owns its
/// thread, joins it. Publishes still pending get their callback with
/// error::client_closed from the destructor (they may still be delivered:
/// `possibly_delivered`, and a state file keeps them). No callback runs
/// after the destructor returned.

#include <tether/core/client_core.hpp>
#include <tether/transport_options.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <system_error>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace tether {

/// The answer to a credentials request: call exactly one of ok()/fail(),
/// from any thread, at any later time (a token can be fetched over HTTP).
class CredentialsReply {
  public:
    CredentialsReply() = default;
    /// Wraps the function that answers (the client makes these).
    explicit CredentialsReply(std::function<void(bool, std::string)> f) : f_(std::move(f)) {}
    /// The token to send.
    void ok(std::string token) const { f_(true, std::move(token)); }
    /// No token can be had: the attempt fails (and is retried with backoff).
    void fail(std::string reason) const { f_(false, std::move(reason)); }

  private:
    std::function<void(bool, std::string)> f_;
};

/// Asked before every connection attempt. `refresh` is true when the previous
/// token was rejected (4003/4004): fetch a new one.
using CredentialsCallback = std::function<void(bool refresh, CredentialsReply reply)>;

struct PublishOutcome;

/// Options of a tether::Client: every option of the core (ClientConfig:
/// backoff, timeouts, fatal and re-auth codes, outbox, limits, ...), how to
/// reach the server (TransportOptions), and what the network client adds.
/// Every field has a usable default except `url`.
///
/// `dynamic_credentials` is set from `credentials`; `seed` 0 draws one from
/// the OS.
struct ClientOptions : ClientConfig, TransportOptions {
    /// Asked before every attempt (a token may come over HTTP); unset: the
    /// static `token` is sent.
    CredentialsCallback credentials;

    /// Keep the outbox and room positions in this file across restarts.
    std::optional<std::string> state_file;
    /// Room positions are saved at most this often (outbox changes at once).
    std::chrono::milliseconds state_save_delay{100};

    /// Handlers installed before the client starts, so that none misses the
    /// first events (the on_*() setters may: the client connects at once).
    std::function<void(const ClientStatus&)> on_status;
    std::function<void(std::chrono::milliseconds rtt)> on_latency;  ///< each heartbeat round trip
    std::function<void(const SessionStarted&)> on_session;  ///< each session started or resumed
    std::function<void(const PublishOutcome&)>
        on_publish;  ///< every publish outcome (see on_publish())
};

/// The outcome of Room::publish: acknowledged at `position`, or failed with
/// `error` (outbox_full, too_large, invalid_data, invalid_room, expired,
/// dropped, client_closed, or the server's refusal: not_permitted, ...).
struct PublishOutcome {
    std::error_code error;           ///< none: acknowledged
    std::string id;                  ///< publish id (set unless the client refused it at once)
    std::string room;                ///< its room
    proto::StreamPosition position;  ///< where the server stored it (acknowledged only)
    std::string server_code;         ///< the NACK code as sent, when the server refused it
    std::string reason;              ///< human-readable detail
    /// It may have reached the server (an acknowledgement lost with the link).
    bool possibly_delivered = false;
    /// True when acknowledged.
    [[nodiscard]] bool ok() const noexcept { return !error; }
};

class Client;

/// Handlers of a room, given to Client::join so that none can miss an event.
struct RoomOptions {
    /// Each event of the room, exactly once and in order (replays included).
    std::function<void(const MessageReceived&)> on_message;
    /// connecting, joined, reconnecting, disconnected, error.
    std::function<void(const RoomStatusChanged&)> on_status;
    /// Events between the last delivered one and the new position are gone:
    /// refetch the application state.
    std::function<void(const HistoryLost&)> on_history_lost;
};

/// A joined room. Cheap to copy; all copies refer to the same room. Handlers
/// set here replace earlier ones and survive reconnects.
class Room {
  public:
    Room() = default;
    /// The room's name.
    const std::string& name() const noexcept { return name_; }
    /// Each event of the room, exactly once and in order (replays included).
    /// False (and `f` never runs) when the client no longer exists.
    bool on_message(std::function<void(const MessageReceived&)> f) const;
    /// connecting, joined, reconnecting, disconnected, error. False when the
    /// client no longer exists.
    bool on_status(std::function<void(const RoomStatusChanged&)> f) const;
    /// Events between the last delivered one and the new position are gone.
    /// False when the client no longer exists.
    bool on_history_lost(std::function<void(const HistoryLost&)> f) const;
    /// Queues `data` (one JSON value). `done` runs exactly once: with the
    /// acknowledgement, with the failure, or with error::client_closed when
    /// the client is destroyed first (at once, on the calling thread, when
    /// it no longer exists). Messages are sent in order and survive reconnects.
    void publish(std::string data, std::function<void(const PublishOutcome&)> done = {}) const;
    /// Stops tracking the room (LEAVE when connected). False when the client
    /// no longer exists.
    bool leave() const;

    struct Shared;  ///< implementation detail
    Room(std::shared_ptr<Shared> s, std::string name) : s_(std::move(s)), name_(std::move(name)) {}

  private:
    std::shared_ptr<Shared> s_;
    std::string name_;
};

/// The reconnecting tether client: see this file's description.
class Client {
  public:
    /// Runs on its own thread. Starts connecting at once. Throws
    /// std::invalid_argument on invalid options (bad URL, bad backoff, ...).
    explicit Client(ClientOptions options);
    /// Runs on `executor` (the application's io_context, say) through a strand.
    Client(const boost::asio::any_io_executor& executor, ClientOptions options);
    ~Client();
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    /// Tracks `room`: joined now or once connected, rejoined after every
    /// reconnect from the last delivered position. Throws
    /// std::invalid_argument for an invalid name; error::too_many_rooms
    /// arrives as an `error` room status.
    [[nodiscard(
        "the Room publishes and leaves; cast to void when its handlers are all in "
        "RoomOptions")]] Room
    join(std::string room);
    /// join() with the room's handlers installed before anything can arrive.
    [[nodiscard(
        "the Room publishes and leaves; cast to void when its handlers are all in "
        "RoomOptions")]] Room
    join(std::string room, RoomOptions handlers);

    /// Blocks until the client is connected (true), the timeout passes, or
    /// the client stopped for good (fatal close, close(), error): false.
    [[nodiscard]] bool wait_connected(std::chrono::milliseconds timeout);

    /// The current status; `describe(status(), now())` renders it.
    ClientStatus status() const;
    /// "connected (sending 3 of 10)", "reconnecting (attempt 2, next in 1.4 s)".
    std::string status_line() const;
    /// Called at once with the current status, then on every change (retry
    /// countdown, sending x of y, ...).
    void on_status(std::function<void(const ClientStatus&)> f);
    /// Each heartbeat round trip.
    void on_latency(std::function<void(std::chrono::milliseconds rtt)> f);
    /// Each session started (READY) or resumed (RESUMED).
    void on_session(std::function<void(const SessionStarted&)> f);
    /// Every publish outcome, including messages restored from the state file
    /// (which have no per-call callback).
    void on_publish(std::function<void(const PublishOutcome&)> f);
    /// Counters since creation.
    ClientMetrics metrics() const;
    /// Messages in the outbox (not yet acknowledged).
    std::size_t pending() const;
    /// Blocks until every message published before the call was acknowledged
    /// or failed (true), or the timeout passed (false).
    [[nodiscard]] bool flush(std::chrono::milliseconds timeout);

    /// Attempt now (leaves a fatal or error state too).
    void retry_now();
    /// Starts again after close() or a fatal stop.
    void connect(bool reset_backoff = false);
    /// Closes (1000) and stops reconnecting until connect()/retry_now().
    void close();
    /// Tells the client the network is down/up (overrides the monitor until
    /// it sees the next change).
    void set_online(bool online);

    /// The clock of status().next_retry_at.
    static time_point now();

    struct Impl;  ///< implementation detail

  private:
    struct Own;
    std::unique_ptr<Own> own_;  ///< the io_context and thread when the client runs its own
    std::shared_ptr<Impl> impl_;
};

}  // namespace tether
