// `tether serve`: the gateway.
#include "tools/commands.hpp"
#include "tools/options.hpp"

#include <tether/core/protocol.hpp>
#include <tether/version.hpp>

#include "gateway/gateway.hpp"
#include "gateway/system.hpp"
#include "redis/redis_store.hpp"
#include "store/memory_store.hpp"
#include "store/sqlite_store.hpp"
#include "wire/jwt.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <boost/asio/signal_set.hpp>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

namespace tether::tools {
namespace {

struct ServeArgs {
    std::string listen = "127.0.0.1:8080";
    std::string data = "./tether-data";
    bool memory = false;
    std::string fsync = "batch";
    std::string admin_key;
    std::string token_secret;
    bool allow_anonymous = false;
    std::string heartbeat = "30s";
    std::string session_ttl = "5m";
    std::size_t history_size = 10'000;
    std::string history_ttl = "24h";
    std::size_t max_connections = 10'000;
    unsigned threads = 0;    ///< 0: the number of cores
    std::size_t shards = 0;  ///< 0: the thread count
    std::string outbound_max = "4MiB";
    std::string message_max = "64KiB";
    double publish_rate = 50;
    double publish_burst = 100;
    std::size_t rooms_per_connection = 100;
    std::string tls_cert, tls_key;
    std::string log_format = "text";
    std::string log_level = "info";
    std::string node_id = "node-1";
    std::string drain_timeout = "5s";
    std::string handshake_timeout = "10s";
    std::vector<std::string> redis;
    std::string redis_prefix = "tether";
    std::string redis_timeout = "2s";
    int redis_wait = 0;
    std::string redis_sentinel;
    std::string redis_master;
};

/// Prometheus text of the Redis store's counters.
std::string redis_metrics(const redis::RedisStats& s, bool healthy) {
    std::string out;
    auto add = [&out](const char* name, const char* help, const char* type, auto value) {
        out += std::string{"# HELP "} + name + " " + help + "\n# TYPE " + name + " " + type + "\n" +
               name + " " + std::to_string(value) + "\n";
    };
    add("tether_redis_up", "1 when every Redis connection of this node is up", "gauge",
        healthy ? 1 : 0);
    add("tether_redis_commands_total", "Redis commands sent", "counter",
        s.commands.commands + s.pubsub.commands);
    add("tether_redis_errors_total", "Redis commands that failed or got an error reply", "counter",
        s.commands.errors + s.pubsub.errors);
    add("tether_redis_timeouts_total", "Redis connections dropped for a command past its deadline",
        "counter", s.commands.timeouts + s.pubsub.timeouts);
    add("tether_redis_reconnects_total", "Redis connections made again after a loss", "counter",
        s.commands.reconnects + s.pubsub.reconnects);
    add("tether_redis_command_seconds_sum", "Round trips of Redis commands", "counter",
        static_cast<double>(s.commands.latency_us_sum) / 1e6);
    add("tether_redis_command_seconds_count", "Round trips of Redis commands measured", "counter",
        s.commands.latency_samples);
    add("tether_redis_notifications_total", "Appends of other nodes heard over pub/sub", "counter",
        s.notifications);
    add("tether_redis_gap_fills_total", "Ranges read because notifications were missed", "counter",
        s.gap_fills);
    add("tether_redis_gap_events_total", "Events delivered by gap fills", "counter", s.gap_events);
    add("tether_redis_epoch_changes_total", "Watched rooms seen with a new epoch", "counter",
        s.epoch_changes);
    add("tether_redis_function_loads_total", "FUNCTION LOAD calls", "counter", s.function_loads);
    add("tether_redis_term_changes_total",
        "Redis servers seen with a new run id (a restart or failover): their rooms start new "
        "epochs",
        "counter", s.term_changes);
    add("tether_redis_probes_lost_total", "Pub/sub probes that did not come back", "counter",
        s.probes_lost);
    add("tether_redis_watched_rooms", "Rooms with a fan-out cursor on this node", "gauge",
        s.watched_rooms);
    add("tether_redis_unwatched_rooms_total",
        "Rooms left without a cursor: the watched-room bound was reached", "counter",
        s.unwatched_overflow);
    add("tether_redis_primary_changes_total",
        "Sentinel named another primary while this node was connected", "counter",
        s.primary_changes);
    add("tether_redis_wait_failures_total",
        "Publishes refused because WAIT saw fewer replicas than --redis-wait", "counter",
        s.wait_failures);
    add("tether_redis_sessions_claimed_total", "Sessions claimed by a RESUME on this node",
        "counter", s.sessions_claimed);
    add("tether_redis_claims_refused_total",
        "Session claims refused (unknown, expired or another token)", "counter", s.claims_refused);
    add("tether_redis_stale_saves_total", "Session saves ignored: another node had claimed it",
        "counter", s.stale_saves);
    return out;
}

int usage_error(const std::string& msg) {
    std::fprintf(stderr, "tether serve: %s\n", msg.c_str());
    return exit_usage;
}

/// `%*` in a pattern: the message, escaped for a JSON string.
class JsonEscapedMessage : public spdlog::custom_flag_formatter {
  public:
    void format(const spdlog::details::log_msg& msg, const std::tm&,
                spdlog::memory_buf_t& dest) override {
        for (char ch : msg.payload) {
            const auto c = static_cast<unsigned char>(ch);
            if (c == '"' || c == '\\') {
                dest.push_back('\\');
                dest.push_back(ch);
            } else if (c < 0x20) {
                char buf[8];
                std::snprintf(buf, sizeof buf, "\\u%04x", c);
                dest.append(buf, buf + 6);
            } else {
                dest.push_back(ch);
            }
        }
    }
    std::unique_ptr<custom_flag_formatter> clone() const override {
        return std::make_unique<JsonEscapedMessage>();
    }
};

std::shared_ptr<spdlog::logger> make_logger(const ServeArgs& a) {
    auto log = spdlog::stderr_color_mt("tether");
    if (a.log_format == "json") {
        auto f = std::make_unique<spdlog::pattern_formatter>();
        f->add_flag<JsonEscapedMessage>('*').set_pattern(
            R"({"time":"%Y-%m-%dT%H:%M:%S.%e%z","level":"%l","msg":"%*"})");
        log->set_formatter(std::move(f));
    } else {
        log->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
    }
    log->set_level(spdlog::level::from_str(a.log_level));
    return log;
}

}  // namespace

Action add_serve_command(CLI::App& app) {
    auto a = std::make_shared<ServeArgs>();
    auto* cmd = app.add_subcommand("serve", "Run the gateway");
    cmd->add_option("--listen", a->listen,
                    "Address to listen on, HOST:PORT (default 127.0.0.1:8080)");
    auto* data = cmd->add_option(
        "--data", a->data, "Data directory of the embedded durable store (default ./tether-data)");
    auto* mem = cmd->add_flag("--memory", a->memory,
                              "Keep everything in memory (nothing survives a restart)");
    data->excludes(mem);
    cmd->add_option("--fsync", a->fsync, "Durability of the store: always, batch (default) or off");
    cmd->add_option("--admin-key", a->admin_key,
                    "Key for the admin API (default: $TETHER_ADMIN_KEY; unset disables /api)");
    auto* secret =
        cmd->add_option("--token-secret", a->token_secret,
                        "HS256 secret for access tokens (default: $TETHER_TOKEN_SECRET)");
    auto* anon = cmd->add_flag("--allow-anonymous", a->allow_anonymous,
                               "Accept any token as the user name (local development only)");
    secret->excludes(anon);
    cmd->add_option("--heartbeat", a->heartbeat,
                    "Heartbeat interval announced in HELLO (default 30s)");
    cmd->add_option("--session-ttl", a->session_ttl,
                    "How long a disconnected session is kept (default 5m)");
    cmd->add_option("--handshake-timeout", a->handshake_timeout,
                    "Time to send the HTTP upgrade, and then to IDENTIFY or RESUME (default 10s)");
    cmd->add_option("--history-size", a->history_size, "Events kept per room (default 10000)");
    cmd->add_option("--history-ttl", a->history_ttl,
                    "Age after which events are dropped (default 24h)");
    cmd->add_option("--max-connections", a->max_connections,
                    "WebSocket connections at most (default 10000)");
    cmd->add_option("--threads", a->threads,
                    "Threads serving connections and the engine (default: the number of cores)");
    cmd->add_option("--shards", a->shards,
                    "Engine shards, each on its own strand (default: the thread count; "
                    "docs/DESIGN.md, Shards)");
    cmd->add_option("--outbound-max", a->outbound_max,
                    "Outbound queue per connection before 4010 (default 4MiB)");
    cmd->add_option("--message-max", a->message_max, "Largest publish payload (default 64KiB)");
    cmd->add_option("--publish-rate", a->publish_rate,
                    "Publishes per second per connection (default 50)");
    cmd->add_option("--publish-burst", a->publish_burst,
                    "Publish burst per connection (default 100)");
    cmd->add_option("--rooms-per-connection", a->rooms_per_connection,
                    "Rooms one connection may join (default 100)");
    cmd->add_option("--tls-cert", a->tls_cert, "PEM certificate chain: serve wss:// and https://");
    cmd->add_option("--tls-key", a->tls_key, "PEM private key for --tls-cert");
    cmd->add_option("--log-format", a->log_format, "text (default) or json");
    cmd->add_option("--log-level", a->log_level, "trace, debug, info (default), warn, error");
    cmd->add_option("--node-id", a->node_id,
                    "Node id announced in HELLO; unique per node of a cluster (default node-1)");
    auto* redis = cmd->add_option("--redis", a->redis,
                                  "Keep history and sessions in Redis, shared by every node: "
                                  "redis://HOST[:PORT][/DB]; repeat it to spread rooms over "
                                  "several servers (docs/SCALING.md)");
    redis->excludes(data)->excludes(mem);
    cmd->add_option("--redis-prefix", a->redis_prefix,
                    "Prefix of every Redis key and channel (default tether)");
    cmd->add_option("--redis-timeout", a->redis_timeout,
                    "Deadline of every Redis command; beyond it the connection is replaced "
                    "(default 2s)");
    cmd->add_option("--redis-wait", a->redis_wait,
                    "Acknowledge a publish only once N replicas confirmed it (WAIT N; default 0: "
                    "once the primary has it)");
    auto* sentinel = cmd->add_option(
        "--redis-sentinel", a->redis_sentinel,
        "Find the Redis primary through these Sentinels (HOST:PORT,...) and follow its failovers");
    cmd->add_option("--redis-master", a->redis_master,
                    "The primary's name in Sentinel (with --redis-sentinel)");
    sentinel->excludes(data)->excludes(mem)->excludes(redis);
    cmd->add_option("--drain-timeout", a->drain_timeout, "Longest drain on SIGTERM (default 5s)");

    return [cmd, a]() -> int {
        if (!cmd->parsed()) return exit_usage;
        // ---- validate everything before touching the network or the disk ----
        const auto hp = parse_host_port(a->listen);
        if (!hp)
            return usage_error(
                "--listen must be HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080, not '" + a->listen +
                "'");
        const auto fsync = store::parse_fsync_mode(a->fsync);
        if (!fsync)
            return usage_error("--fsync must be always, batch or off, not '" + a->fsync + "'");
        struct D {
            const char* flag = nullptr;
            std::string& text;
            std::int64_t min_ms = 0;
            std::int64_t value = 0;
        };
        D durations[] = {{"--heartbeat", a->heartbeat, 1'000},
                         {"--session-ttl", a->session_ttl, 0},
                         {"--history-ttl", a->history_ttl, 1'000},
                         {"--drain-timeout", a->drain_timeout, 100},
                         {"--handshake-timeout", a->handshake_timeout, 100}};
        for (auto& d : durations) {
            auto v = parse_duration_ms(d.text);
            if (!v || *v < d.min_ms)
                return usage_error(std::string{d.flag} +
                                   " must be a duration like 250ms, 30s, 5m, 24h, not '" + d.text +
                                   "'");
            d.value = *v;
        }
        const auto outbound = parse_bytes(a->outbound_max);
        const auto message = parse_bytes(a->message_max);
        if (!outbound || *outbound < 1024)
            return usage_error("--outbound-max must be a size >= 1KiB, e.g. 4MiB");
        if (!message || *message < 16 || *message >= (1u << 20))
            return usage_error(
                "--message-max must be a size between 16 and 1MiB (exclusive), e.g. 64KiB");
        if (a->history_size == 0) return usage_error("--history-size must be >= 1");
        if (a->threads == 0) a->threads = std::max(1u, std::thread::hardware_concurrency());
        if (a->threads > 256) return usage_error("--threads must be between 1 and 256");
        if (a->shards == 0) a->shards = a->threads;
        if (a->shards > ServerConfig::kShardsMax)
            return usage_error("--shards must be between 1 and 256");
        if (a->max_connections == 0) return usage_error("--max-connections must be >= 1");
        if (!(a->publish_rate > 0) || !(a->publish_burst >= 1))
            return usage_error("--publish-rate must be > 0 and --publish-burst >= 1");
        if (a->log_format != "text" && a->log_format != "json")
            return usage_error("--log-format must be text or json");
        if (spdlog::level::from_str(a->log_level) == spdlog::level::off && a->log_level != "off")
            return usage_error("--log-level must be trace, debug, info, warn, error or off");
        std::vector<redis::Endpoint> redis_servers;
        for (const auto& url : a->redis) {
            std::string why;
            auto e = redis::parse_url(url, &why);
            if (!e) return usage_error("--redis: " + why + " (got '" + url + "')");
            redis_servers.push_back(*e);
        }
        std::vector<redis::Endpoint> sentinels;
        if (!a->redis_sentinel.empty() || !a->redis_master.empty()) {
            if (a->redis_sentinel.empty() || a->redis_master.empty())
                return usage_error("--redis-sentinel and --redis-master go together");
            std::string_view list = a->redis_sentinel;
            while (!list.empty()) {
                const auto comma = list.find(',');
                const auto item = list.substr(0, comma);
                list =
                    comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
                const auto e = parse_host_port(item);
                if (!e || e->port == 0)
                    return usage_error("--redis-sentinel takes HOST:PORT,... (got '" +
                                       std::string{item} + "')");
                sentinels.push_back(redis::Endpoint{e->host, e->port, 0});
            }
            if (sentinels.size() > 16) return usage_error("--redis-sentinel: at most 16 Sentinels");
            if (a->redis_master.size() > 128 ||
                a->redis_master.find_first_of(" \r\n") != std::string::npos)
                return usage_error("--redis-master must be 1..128 characters without spaces");
            redis_servers.push_back(redis::Endpoint{});  // found through the Sentinels
        }
        if (a->redis_wait < 0 || a->redis_wait > 16)
            return usage_error("--redis-wait must be between 0 and 16 replicas");
        if (a->redis_wait > 0 && redis_servers.empty())
            return usage_error("--redis-wait needs --redis or --redis-sentinel");
        const auto redis_timeout = parse_duration_ms(a->redis_timeout);
        if (!redis_timeout || *redis_timeout < 100)
            return usage_error("--redis-timeout must be a duration >= 100ms, e.g. 2s");
        if (a->redis_prefix.empty() || a->redis_prefix.size() > 64 ||
            a->redis_prefix.find_first_of("{}\n ") != std::string::npos)
            return usage_error(
                "--redis-prefix must be 1..64 characters without {, }, spaces or newlines");
        if (a->node_id.empty() || a->node_id.size() > 64 ||
            !std::all_of(a->node_id.begin(), a->node_id.end(), [](char c) {
                return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
                       c == '.';
            }))
            return usage_error("--node-id must be 1..64 letters, digits, '-', '_' or '.'");
        if (a->node_id == "probe" || a->node_id == "claim")  // the channel's own message kinds
            return usage_error("--node-id must not be \"probe\" or \"claim\"");
        if (a->admin_key.empty())
            if (const char* env = std::getenv("TETHER_ADMIN_KEY")) a->admin_key = env;
        if (a->token_secret.empty() && !a->allow_anonymous)
            if (const char* env = std::getenv("TETHER_TOKEN_SECRET")) a->token_secret = env;
        if (a->token_secret.empty() && !a->allow_anonymous)
            return usage_error(
                "give --token-secret (or TETHER_TOKEN_SECRET) to verify access tokens, or "
                "--allow-anonymous for local development");
        if (!a->admin_key.empty() && a->admin_key.size() < 16)
            return usage_error("--admin-key must be at least 16 characters");

        auto log = make_logger(*a);
        const auto now = gateway::wall_ms();
        StoreLimits limits;
        limits.history_size = a->history_size;
        limits.history_ttl = duration{durations[2].value};
        std::unique_ptr<Store> store;
        redis::RedisStore* redis_store = nullptr;
        std::string store_desc;
        try {
            if (!redis_servers.empty()) {
                redis::RedisOptions ro;
                ro.servers = redis_servers;
                ro.prefix = a->redis_prefix;
                ro.node_id = a->node_id;
                ro.limits = limits;
                ro.command_timeout = duration{*redis_timeout};
                ro.wait_replicas = static_cast<unsigned>(a->redis_wait);
                ro.sentinels = sentinels;
                ro.master_name = a->redis_master;
                ro.log = [log](int level, std::string_view text) {
                    if (level == 0)
                        log->info("{}", text);
                    else
                        log->warn("{}", text);
                };
                auto r = std::make_unique<redis::RedisStore>(ro);
                // Sessions are loaded at start: wait for Redis (bounded).
                if (!r->wait_healthy(duration{10'000})) {
                    log->error("cannot reach Redis at {} within 10s",
                               sentinels.empty() ? a->redis.front()
                                                 : "the primary '" + a->redis_master +
                                                       "' of Sentinel " + a->redis_sentinel);
                    return exit_failure;
                }
                redis_store = r.get();
                store_desc = "redis " + std::to_string(redis_servers.size()) +
                             " server(s), prefix " + a->redis_prefix + ", node " + a->node_id;
                store = std::move(r);
            } else if (a->memory) {
                // One engine per process: nothing reads sessions back.
                store = std::make_unique<store::MemoryStore>(
                    limits, static_cast<std::uint64_t>(now), store::MemoryStore::Sessions::discard);
                store_desc = "memory (nothing survives a restart)";
            } else {
                auto s = std::make_unique<store::SqliteStore>(a->data, *fsync, limits, now);
                store_desc = "sqlite " + a->data + " (fsync " +
                             std::string{store::to_string(*fsync)} + ", loaded " +
                             std::to_string(s->loaded_events()) + " events, " +
                             std::to_string(s->loaded_sessions()) + " sessions)";
                store = std::move(s);
            }
        } catch (const std::exception& e) {
            log->error("cannot open the store: {}", e.what());
            return exit_failure;
        }

        ServerConfig cfg;
        cfg.node_id = a->node_id;
        cfg.shared_store = redis_store != nullptr;  // any node resumes any session
        cfg.heartbeat = duration{durations[0].value};
        cfg.session_ttl = duration{durations[1].value};
        cfg.handshake_timeout = duration{durations[4].value};
        cfg.message_bytes_max = *message;
        cfg.publish_rate = a->publish_rate;
        cfg.publish_burst = a->publish_burst;
        cfg.rooms_per_connection_max = a->rooms_per_connection;
        cfg.random_bytes = gateway::secure_random;
        if (a->allow_anonymous) {
            cfg.authenticate = [](std::string_view token, std::int64_t) {
                // The token is the user name: at most 64 bytes of UTF-8.
                if (token.size() > 64 || !proto::is_valid_utf8(token))
                    return AuthResult{false, {}, "anonymous user names are 1..64 bytes of UTF-8"};
                return AuthResult{true, token.empty() ? "anonymous" : std::string{token}, {}};
            };
        } else {
            cfg.authenticate = [secret = a->token_secret, log](std::string_view token,
                                                               std::int64_t now_ms) {
                auto r = wire::jwt_verify(token, secret, now_ms / 1000);
                if (!r) {
                    log->info("identify refused: {}", r.error().message);  // never the token
                    return AuthResult{false, {}, r.error().message};
                }
                return AuthResult{true, r->sub, {}};
            };
        }

        gateway::GatewayOptions opt;
        opt.host = hp->host;
        opt.port = hp->port;
        opt.concurrency_hint = a->threads;
        opt.shards = a->shards;
        opt.connections_max = a->max_connections;
        opt.outbound_bytes_max = *outbound;
        opt.drain_timeout = duration{durations[3].value};
        opt.handshake_timeout = duration{durations[4].value};
        if (!a->admin_key.empty()) opt.admin_key = a->admin_key;
        if (!a->tls_cert.empty()) opt.tls_cert_file = a->tls_cert;
        if (!a->tls_key.empty()) opt.tls_key_file = a->tls_key;
        if (redis_store) {
            opt.health_problem = [redis_store]() -> std::string {
                return redis_store->healthy() ? "" : "redis unreachable";
            };
            opt.extra_metrics = [redis_store] {
                return redis_metrics(redis_store->stats(), redis_store->healthy());
            };
        }
        try {
            gateway::Gateway gw{opt, cfg, *store, log};
            const bool tls = opt.tls_cert_file.has_value();
            const std::string base =
                std::string{tls ? "s" : ""} + "://" +
                (hp->host.find(':') != std::string::npos ? "[" + hp->host + "]" : hp->host) + ":" +
                std::to_string(gw.port());
            log->info("tether {} listening on ws{} (subprotocol tether.v1)", version_string, base);
            log->info("store: {}; {} thread(s), {} shard(s)", store_desc, a->threads, a->shards);
            log->info("auth: {}", a->allow_anonymous
                                      ? "anonymous (development only: any token is a user name)"
                                      : "JWT HS256 access tokens");
            log->info("health:  curl http{}/healthz    metrics: curl http{}/metrics", base, base);
            if (!a->allow_anonymous)
                log->info("token:   tether token --secret <secret> --user alice");
            log->info("admin:   {}", opt.admin_key
                                         ? "curl -H 'Authorization: Bearer <admin key>' http" +
                                               base + "/api/sessions"
                                         : std::string{"disabled (start with --admin-key)"});
            // Process policy: SIGINT/SIGTERM drain; a->threads threads serve.
            boost::asio::signal_set signals{gw.executor(), SIGINT, SIGTERM};
            signals.async_wait([&](const boost::system::error_code& ec, int sig) {
                if (ec) return;
                log->info("signal {}: draining", sig);
                gw.drain();
            });
            std::vector<std::thread> threads;
            for (unsigned i = 1; i < a->threads; ++i)
                threads.emplace_back([&gw] { gw.run(); });
            gw.run();
            for (auto& t : threads)
                t.join();
        } catch (const std::exception& e) {
            log->error("{}", e.what());
            return exit_failure;
        }
        store->flush();
        log->info("stopped");
        return exit_ok;
    };
}

}  // namespace tether::tools
