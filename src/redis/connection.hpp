#pragma once
// One Redis connection: hiredis's asynchronous context driven by an Asio
// io_context (non-blocking: hiredis parses and buffers, Asio waits for
// readability and writability of its socket). All of it runs on the one
// thread of that io_context; nothing here is thread-safe.
//
// Bounds and policies (docs/SCALING.md, "Limits"):
// - every command has a deadline (`command_timeout`); when the oldest one
//   passes it, the connection is declared dead: it is dropped, every pending
//   command fails with error::store_unavailable, and it reconnects;
// - at most `pending_max` commands in flight; beyond it command() fails at
//   once with store_unavailable (the caller NACKs, never queues without end);
// - reconnects back off from 100 ms, doubling to 5 s, with jitter.

#include <tether/core/error.hpp>
#include <tether/core/time.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct redisAsyncContext;
struct redisReply;

namespace tether::redis {

/// Where a Redis server listens: `redis://HOST[:PORT][/DB]`.
struct Endpoint {
    std::string host = "127.0.0.1";
    std::uint16_t port = 6379;
    unsigned db = 0;
    /// `host:port` (for logs and metrics labels).
    [[nodiscard]] std::string name() const;
    friend bool operator==(const Endpoint&, const Endpoint&) = default;
};

/// Parses `redis://HOST[:PORT][/DB]` (IPv6 hosts in brackets). On failure,
/// nullopt and `why` says what is wrong.
std::optional<Endpoint> parse_url(std::string_view url, std::string* why = nullptr);

/// A reply, copied out of hiredis's (which dies with its callback).
struct Reply {
    enum class Type : std::uint8_t { nil, integer, string, status, error, array };
    Type type = Type::nil;
    std::int64_t integer = 0;
    std::string str;  ///< string, status or error text
    std::vector<Reply> elements;

    [[nodiscard]] bool is_error() const noexcept { return type == Type::error; }
    /// The value as an unsigned number: an integer, or a string of digits.
    [[nodiscard]] std::optional<std::uint64_t> as_u64() const;
    /// The value as text: a string or status, or an integer in decimal.
    [[nodiscard]] std::string as_text() const;
};

/// Counters of one connection (they feed /metrics).
struct ConnectionStats {
    std::uint64_t commands = 0;        ///< commands sent
    std::uint64_t errors = 0;          ///< error replies and failed commands
    std::uint64_t timeouts = 0;        ///< connections dropped for a command past its deadline
    std::uint64_t reconnects = 0;      ///< connections made after the first
    std::uint64_t latency_us_sum = 0;  ///< sum of command round trips (µs)
    std::uint64_t latency_samples = 0;
};

/// See the file's description.
class Connection {
  public:
    struct Options {
        Endpoint endpoint;
        std::string name;                  ///< for logs: "store", "pubsub"
        duration command_timeout{2'000};   ///< deadline of every command
        duration connect_timeout{2'000};   ///< deadline of the TCP connect and the start-up
        std::size_t pending_max = 65'536;  ///< commands in flight at most
    };
    /// A command's outcome: an error code (store_unavailable: not sent, or
    /// the connection died before its reply) or the reply (which may be a
    /// Redis error reply).
    using Callback = std::function<void(std::error_code, Reply&&)>;
    /// A message of a subscribed channel.
    using MessageHandler = std::function<void(std::string_view channel, std::string_view payload)>;
    /// Runs each time the connection is up (after SELECT): the owner loads
    /// functions, subscribes, checks what it may have missed. The connection
    /// counts as up for callers only once `done` was called with true (false:
    /// drop and reconnect).
    using OnUp = std::function<void(std::function<void(bool ok)> done)>;
    using OnDown = std::function<void(std::string_view why)>;
    /// Finds the endpoint before each connect (Sentinel): calls back with
    /// it, or with nullopt and why not (then the connect is retried with
    /// backoff).
    using Resolve = std::function<void(
        std::function<void(std::optional<Endpoint> endpoint, std::string why)> done)>;
    using Log = std::function<void(int level, std::string_view text)>;  ///< 0 info, 1 warn

    Connection(boost::asio::io_context& io, Options options, Log log);
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    void set_on_up(OnUp f) { on_up_ = std::move(f); }
    void set_on_down(OnDown f) { on_down_ = std::move(f); }
    /// Set before start(): the endpoint is asked for before every connect.
    void set_resolve(Resolve f) { resolve_ = std::move(f); }

    /// Connects, and reconnects after every loss until stop().
    void start();
    /// Drops the connection for good; pending commands fail.
    void stop();
    /// Up and ready (its OnUp finished).
    [[nodiscard]] bool ready() const noexcept { return state_ == State::ready; }
    /// Sends a command; `cb` runs exactly once. `during_startup`: allowed
    /// before ready() (the OnUp hook's own commands).
    void command(std::vector<std::string> argv, Callback cb, bool during_startup = false);
    /// SUBSCRIBE: `on_message` runs for every message; `cb` when subscribed.
    void subscribe(const std::string& channel, MessageHandler on_message,
                   std::function<void(bool ok)> cb);
    /// Drops the connection now (it reconnects): a probe found it deaf.
    void reset(std::string_view why);
    /// Commands in flight.
    [[nodiscard]] std::size_t pending() const noexcept { return pending_.size(); }
    [[nodiscard]] const ConnectionStats& stats() const noexcept { return stats_; }
    [[nodiscard]] const Options& options() const noexcept { return opt_; }

  private:
    enum class State : std::uint8_t { idle, connecting, starting, ready, stopped };
    struct Pending;
    struct Io;  // the descriptor and its waits; outlives the context's cleanup

    void connect();
    void connect_now();
    void on_connected(bool ok, std::string_view why);
    void on_disconnected(std::string_view why);
    void schedule_reconnect();
    void arm_deadline();
    void check_deadline();
    void fail_all(std::string_view why);
    static void reply_cb(redisAsyncContext* ac, void* reply, void* priv);
    static void message_cb(redisAsyncContext* ac, void* reply, void* priv);

    boost::asio::io_context& io_;
    Options opt_;
    Log log_;
    OnUp on_up_;
    OnDown on_down_;
    Resolve resolve_;
    State state_ = State::idle;
    redisAsyncContext* ac_ = nullptr;
    std::shared_ptr<Io> sock_;
    std::deque<std::shared_ptr<Pending>> pending_;  // oldest first (Redis answers in order)
    std::unique_ptr<MessageHandler> on_message_;
    boost::asio::steady_timer deadline_;
    boost::asio::steady_timer retry_;
    bool deadline_armed_ = false;
    std::int64_t backoff_ms_ = 0;
    std::uint64_t generation_ = 0;  // a new one per connection
    bool connected_once_ = false;
    ConnectionStats stats_;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace tether::redis
