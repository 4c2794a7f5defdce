// `tether connect`: a websocat-like client that reconnects, resumes and
// replays (tether mode, on tether::Client) or reconnects to any WebSocket
// server (--raw, on tether::ReconnectingWebSocket). docs/CLI.md documents the
// output formats and exit codes.
#include "tools/commands.hpp"
#include "tools/options.hpp"

#include <tether/client.hpp>
#include <tether/reconnecting_websocket.hpp>

#include <boost/json.hpp>

#include <atomic>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <deque>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <thread>

#include <pthread.h>
#include <unistd.h>

namespace tether::tools {
namespace {

namespace json = boost::json;

/// Exit codes of `tether connect` beyond the shared ones (docs/CLI.md).
constexpr int exit_fatal_close = 3;   ///< the server closed with a fatal code or reason
constexpr int exit_max_attempts = 4;  ///< attempts_max exhausted (and re-auth failed)
constexpr int exit_auth_failed = 5;   ///< credentials rejected, or the auth reply was refused
constexpr int exit_unsent = 6;        ///< stdin ended but messages stayed unacknowledged
constexpr int exit_certificate = 7;   ///< the server's TLS certificate failed verification

struct ConnectArgs {
    std::string url;
    std::string token, token_file;
    std::vector<std::string> rooms;
    bool json = false, raw = false;
    std::string ping_interval, pong_timeout;
    std::string fatal_codes;
    std::vector<std::string> fatal_reasons;
    std::uint32_t max_attempts = 0;
    std::string state;
    std::string ca_file;
    bool insecure = false;
    std::string probe;
    std::vector<std::string> headers;
    std::string backoff = "exponential", backoff_initial = "500ms", backoff_max = "15s";
    double jitter = 0.25;
    bool no_network_monitor = false;
    bool no_exit_on_eof = false;
    std::string drain_timeout = "10s";
    std::string open_timeout = "10s";
    bool retry_certificate_errors = false;
    // --raw only
    std::string auth_message, auth_expect, ping_mode = "ws", ping_payload = "ping",
                                           pong_match = "pong";
    std::vector<std::string> subscribe, answer;
    std::string subprotocol;
};

// ---- output ---------------------------------------------------------------------------

std::mutex out_mu;  // lines from callbacks and the main thread never interleave

void out_line(const std::string& s) {
    std::lock_guard lk(out_mu);
    std::fwrite(s.data(), 1, s.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
}

void err_line(const std::string& s, const char* colour) {
    static const bool tty = ::isatty(2) != 0;
    std::lock_guard lk(out_mu);
    if (tty && colour)
        std::fprintf(stderr, "\x1b[%sm%s\x1b[0m\n", colour, s.c_str());
    else
        std::fprintf(stderr, "%s\n", s.c_str());
    std::fflush(stderr);
}
constexpr const char* kYellow = "33";
constexpr const char* kGreen = "32";
constexpr const char* kRed = "31";

void emit_json(const json::object& o) {
    out_line(json::serialize(o));
}

/// Raw JSON text as a JSON value (the data of tether events is always JSON).
json::value as_json(const std::string& text) {
    boost::system::error_code ec;
    auto v = json::parse(text, ec);
    if (ec) return json::value(text);
    return v;
}

std::string base64(std::string_view in) {
    static constexpr char k[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    std::size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        const auto n = (std::uint32_t{static_cast<unsigned char>(in[i])} << 16) |
                       (std::uint32_t{static_cast<unsigned char>(in[i + 1])} << 8) |
                       static_cast<unsigned char>(in[i + 2]);
        for (int s = 18; s >= 0; s -= 6)
            out += k[(n >> s) & 63];
    }
    if (i < in.size()) {
        std::uint32_t n = std::uint32_t{static_cast<unsigned char>(in[i])} << 16;
        if (i + 1 < in.size()) n |= std::uint32_t{static_cast<unsigned char>(in[i + 1])} << 8;
        out += k[(n >> 18) & 63];
        out += k[(n >> 12) & 63];
        out += i + 1 < in.size() ? k[(n >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

std::string fmt_seconds(std::int64_t ms) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f s", static_cast<double>(ms) / 1000.0);
    return buf;
}

/// Status fields common to both modes.
json::object status_json(const ConnectionStatus& s) {
    json::object o;
    o["type"] = "status";
    o["state"] = to_string(s.state);
    o["reason"] = to_id(s.reason);
    o["attempt"] = s.attempt;
    if (s.next_retry_at)
        o["next_retry_ms"] = std::max<std::int64_t>(0, (*s.next_retry_at - Client::now()).count());
    o["close_code"] = s.close_code;
    o["close_reason"] = s.close_reason;
    if (s.error) o["error"] = s.error.message();
    o["online"] = s.online;
    return o;
}

/// The human status banner (docs/CLI.md): yellow while reconnecting, green when
/// (re)connected, red when it stopped for good with how to go on.
template <class Status>
class Banner {
  public:
    void show(const Status& s, bool interactive) {
        const auto now = Client::now();
        switch (s.state) {
            case ConnState::connected:
                if (last_ != ConnState::connected)
                    err_line(ever_connected_ ? "Reconnected" : "Connected", kGreen);
                ever_connected_ = true;
                break;
            case ConnState::connecting:
            case ConnState::reconnecting:
                if (s.next_retry_at) {
                    const auto in = std::max<std::int64_t>(0, (*s.next_retry_at - now).count());
                    std::string what = ever_connected_ ? "Connection lost. Reconnecting…"
                                                       : "Cannot connect. Retrying…";
                    if (!s.close_reason.empty()) what += " [" + s.close_reason + "]";
                    err_line(what + " (attempt " + std::to_string(s.attempt) + ", next in " +
                                 fmt_seconds(in) + ")",
                             kYellow);
                } else if (s.state == ConnState::connecting && last_ != s.state) {
                    err_line("Connecting…", nullptr);
                }
                break;
            case ConnState::disconnected:
            case ConnState::error:
                if (s.reason == StopReason::offline) {
                    if (last_reason_ != StopReason::offline)
                        err_line("Offline: waiting for the network", kYellow);
                } else if (s.reason != StopReason::manual && s.reason != StopReason::not_started) {
                    std::string why{to_string(s.reason)};
                    if (s.close_code != 0)
                        why += " (close " + std::to_string(s.close_code) +
                               (s.close_reason.empty() ? "" : " " + s.close_reason) + ")";
                    err_line("Connection failed: " + why +
                                 (interactive ? ". Type /retry to try again, /quit to exit."
                                              : ". Run the command again to retry."),
                             kRed);
                }
                break;
        }
        last_ = s.state;
        last_reason_ = s.reason;
    }

  private:
    ConnState last_ = ConnState::disconnected;
    StopReason last_reason_ = StopReason::not_started;
    bool ever_connected_ = false;
};

// ---- the main loop: stdin lines, signals and the end condition ------------------------------

struct Loop {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::string> lines;
    bool eof = false;
    int signal = 0;
    std::optional<int> finish;  ///< set by callbacks: exit with this code

    // Notified under the lock: the waiter may leave (and end the process) at once.
    void push_line(std::string l) {
        std::lock_guard lk(mu);
        lines.push_back(std::move(l));
        cv.notify_all();
    }
    void set_eof() {
        std::lock_guard lk(mu);
        eof = true;
        cv.notify_all();
    }
    void set_finish(int code) {
        std::lock_guard lk(mu);
        if (!finish) finish = code;
        cv.notify_all();
    }
    void set_signal(int sig) {
        std::lock_guard lk(mu);
        signal = sig;
        cv.notify_all();
    }
};

/// SIGINT/SIGTERM are blocked in every thread and taken by sigwait here.
void start_signal_thread(const std::shared_ptr<Loop>& loop) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    std::thread([loop, set] {  // detached: shares the loop instead of borrowing it
        int sig = 0;
        sigwait(&set, &sig);
        loop->set_signal(sig);
    })
        .detach();
}

void start_stdin_thread(const std::shared_ptr<Loop>& loop) {
    std::thread([loop] {
        std::string line;
        while (std::getline(std::cin, line)) {
            if (!line.empty() && line.back() == '\r') line.pop_back();
            loop->push_line(std::move(line));
        }
        loop->set_eof();
    }).detach();
}

int stop_code(StopReason r) {
    switch (r) {
        case StopReason::fatal:
            return exit_fatal_close;
        case StopReason::max_attempts:
            return exit_max_attempts;
        case StopReason::auth_failed:
            return exit_auth_failed;
        case StopReason::certificate:
            return exit_certificate;
        default:
            return exit_failure;
    }
}

bool terminal_stop(ConnState state, StopReason r) {
    return (state == ConnState::disconnected || state == ConnState::error) &&
           (r == StopReason::fatal || r == StopReason::max_attempts ||
            r == StopReason::auth_failed || r == StopReason::certificate);
}

std::optional<std::vector<std::uint16_t>> parse_codes(const std::string& text) {
    std::vector<std::uint16_t> out;
    std::stringstream ss(text);
    std::string item;
    while (std::getline(ss, item, ',')) {
        if (item.empty() || item.size() > 4 ||
            item.find_first_not_of("0123456789") != std::string::npos)
            return std::nullopt;
        const auto v = std::stoul(item);
        if (v < 1000 || v > 4999) return std::nullopt;
        out.push_back(static_cast<std::uint16_t>(v));
    }
    return out;
}

std::string read_token_file(const std::string& path) {
    std::ifstream in(path);
    std::string t;
    std::getline(in, t);
    while (!t.empty() && (t.back() == '\r' || t.back() == ' '))
        t.pop_back();
    return t;
}

int usage(const std::string& m) {
    std::fprintf(stderr, "tether connect: %s\n", m.c_str());
    return exit_usage;
}

/// Liveness flags: both modes ping, each core under its own names.
struct Liveness {
    std::optional<duration> interval, timeout;
};

/// The options both modes share, mapped once: the reconnect lifecycle
/// (backoff, fatal codes and reasons, open timeout, certificate policy),
/// the transport (URL, headers, TLS, probe, network monitor) and liveness.
std::optional<int> common_options(const ConnectArgs& a, ReconnectConfig& rc, TransportOptions& t,
                                  Liveness& live) {
    BackoffPolicy& b = rc.backoff;
    auto strategy = parse_backoff_strategy(a.backoff);
    if (!strategy) return usage("unknown --backoff '" + a.backoff + "'");
    b.strategy = *strategy;
    auto ini = parse_duration_ms(a.backoff_initial), max = parse_duration_ms(a.backoff_max);
    if (!ini) return usage("--backoff-initial must be a duration such as 500ms");
    if (!max) return usage("--backoff-max must be a duration such as 15s");
    b.initial = duration{*ini};
    b.max = duration{*max};
    b.jitter_ratio = a.jitter;
    if (a.max_attempts > 0) b.attempts_max = a.max_attempts;
    if (auto v = b.validate(); !v) return usage("backoff: " + v.error().message);
    const auto open = parse_duration_ms(a.open_timeout);
    if (!open || *open <= 0) return usage("--open-timeout must be a duration such as 10s");
    rc.open_timeout = duration{*open};
    if (!a.fatal_codes.empty()) {
        auto c = parse_codes(a.fatal_codes);
        if (!c) return usage("--fatal-codes must be a comma-separated list of codes 1000-4999");
        rc.fatal_codes = *c;
    }
    rc.fatal_reasons = a.fatal_reasons;
    rc.retry_certificate_errors = a.retry_certificate_errors;
    t.url = a.url;
    for (const auto& h : a.headers) {
        const auto colon = h.find(':');
        if (colon == std::string::npos || colon == 0)
            return usage("--header must be 'Name: value'");
        std::string v = h.substr(colon + 1);
        while (!v.empty() && v.front() == ' ')
            v.erase(0, 1);
        t.headers.emplace_back(h.substr(0, colon), v);
    }
    if (!a.ca_file.empty()) t.ca_file = a.ca_file;
    t.tls_verify = !a.insecure;
    if (!a.probe.empty()) t.probe_url = a.probe;
    t.network_monitor = !a.no_network_monitor;
    if (!a.ping_interval.empty()) {
        auto d = parse_duration_ms(a.ping_interval);
        if (!d) return usage("--ping-interval must be a duration");
        live.interval = duration{*d};
    }
    if (!a.pong_timeout.empty()) {
        auto d = parse_duration_ms(a.pong_timeout);
        if (!d) return usage("--pong-timeout must be a duration");
        live.timeout = duration{*d};
    }
    return std::nullopt;
}

/// The commands both modes share (/retry /connect /close /offline /online
/// /status); true when `cmd` was one of them.
template <class Client>
bool shared_command(std::string_view cmd, Client& c) {
    if (cmd == "/retry")
        c.retry_now();
    else if (cmd == "/connect")
        c.connect(true);
    else if (cmd == "/close")
        c.close();
    else if (cmd == "/offline")
        c.set_online(false);
    else if (cmd == "/online")
        c.set_online(true);
    else if (cmd == "/status")
        err_line(c.status_line(), nullptr);
    else
        return false;
    return true;
}

/// Waits for the loop; `handle_line` gets stdin lines; at the end of stdin
/// `flush(timeout)` waits for what is still unacknowledged (`pending` counts it).
template <class HandleLine, class Flush, class Pending>
int run_loop(Loop& loop, const ConnectArgs& a, HandleLine handle_line, Flush flush,
             Pending pending) {
    const auto drain_ms = parse_duration_ms(a.drain_timeout).value_or(10'000);
    std::unique_lock lk(loop.mu);
    for (;;) {
        if (loop.signal != 0) return exit_ok;
        if (loop.finish) return *loop.finish;
        while (!loop.lines.empty()) {
            std::string l = std::move(loop.lines.front());
            loop.lines.pop_front();
            lk.unlock();
            const auto rc = handle_line(l);
            lk.lock();
            if (rc) return *rc;
        }
        if (loop.eof && !a.no_exit_on_eof) {
            lk.unlock();
            if (flush(std::chrono::milliseconds(drain_ms))) return exit_ok;
            err_line(
                std::to_string(pending()) + " message(s) not acknowledged before --drain-timeout",
                kRed);
            return exit_unsent;
        }
        loop.cv.wait(lk);
    }
}

// ---- tether mode ------------------------------------------------------------------------

int run_tether(const ConnectArgs& a) {
    ClientOptions o;
    Liveness live;
    if (auto rc = common_options(a, o, o, live)) return *rc;
    o.heartbeat_interval = live.interval;
    o.heartbeat_ack_timeout = live.timeout;
    o.token = a.token;
    if (!a.token_file.empty()) {
        // Read before every connect. After a rejection (refresh) the same
        // token is not offered again: wait for whoever refreshes the file
        // (a sidecar, a projected service-account token), at most 9 s.
        struct TokenFile {
            std::string path;
            std::mutex mu;
            std::string last;
        };
        auto tf = std::make_shared<TokenFile>();
        tf->path = a.token_file;
        o.credentials = [tf](bool refresh, const CredentialsReply& reply) {
            std::thread([tf, refresh, reply] {
                const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(9);
                std::string t = read_token_file(tf->path);
                std::unique_lock lk(tf->mu);
                while (refresh && t == tf->last && std::chrono::steady_clock::now() < deadline) {
                    lk.unlock();
                    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // file polling
                    t = read_token_file(tf->path);
                    lk.lock();
                }
                if (t.empty())
                    return reply.fail("token file " + tf->path + " is empty or unreadable");
                if (refresh && t == tf->last)
                    return reply.fail("token file " + tf->path + " was not refreshed");
                tf->last = t;
                reply.ok(t);
            }).detach();
        };
    }
    if (!a.state.empty()) o.state_file = a.state;

    const bool interactive = ::isatty(0) != 0;
    auto loop_ptr = std::make_shared<Loop>();
    Loop& loop = *loop_ptr;
    start_signal_thread(loop_ptr);
    const bool js = a.json;
    const bool one_room = a.rooms.size() == 1;
    auto banner = std::make_shared<Banner<ClientStatus>>();
    auto last_sending = std::make_shared<std::pair<std::size_t, std::size_t>>(0, 0);
    // Handlers go into the options: installed before the client starts, they
    // see every event from the first one.
    o.on_status = [js, banner, last_sending, interactive, loop_ptr](const ClientStatus& s) {
        if (js) {
            auto o2 = status_json(s);
            o2["phase"] = to_id(s.phase);
            o2["pending"] = s.pending;
            o2["sending_done"] = s.sending_done;
            o2["sending_total"] = s.sending_total;
            emit_json(o2);
        } else {
            banner->show(s, interactive);
            if (s.state == ConnState::connected && s.sending_total > 1 &&
                std::pair{s.sending_done, s.sending_total} != *last_sending &&
                (s.sending_done == 0 || s.sending_done + 1 >= s.sending_total ||
                 s.sending_done % 100 == 0))
                err_line("Sending " + std::to_string(s.sending_done + 1) + " of " +
                             std::to_string(s.sending_total),
                         nullptr);
            *last_sending = {s.sending_done, s.sending_total};
        }
        if (terminal_stop(s.state, s.reason) && !interactive)
            loop_ptr->set_finish(stop_code(s.reason));
    };
    o.on_latency = [js](std::chrono::milliseconds rtt) {
        if (js) emit_json({{"type", "latency"}, {"rtt_ms", rtt.count()}});
    };
    o.on_session = [js](const SessionStarted& s) {
        if (js)
            emit_json({{"type", "session"},
                       {"session_id", s.session_id},
                       {"user", s.user},
                       {"resumed", s.resumed}});
    };
    o.on_publish = [js](const PublishOutcome& r) {
        if (js) {
            if (r.ok())
                emit_json({{"type", "ack"},
                           {"id", r.id},
                           {"room", r.room},
                           {"epoch", r.position.epoch},
                           {"offset", r.position.offset}});
            else
                emit_json({{"type", "publish_failed"},
                           {"id", r.id},
                           {"room", r.room},
                           {"error", r.error.message()},
                           {"server_code", r.server_code},
                           {"reason", r.reason},
                           {"possibly_delivered", r.possibly_delivered}});
        } else if (!r.ok()) {
            err_line("Message " + r.id + " failed: " + r.error.message() + " (" + r.reason + ")",
                     kRed);
        }
    };
    std::unique_ptr<Client> client;
    try {
        client = std::make_unique<Client>(o);
    } catch (const std::exception& e) {
        return usage(e.what());
    }
    std::map<std::string, Room> rooms;
    auto make_room_options = [js, one_room](const std::string&) {
        RoomOptions ro;
        ro.on_message = [js, one_room](const MessageReceived& m) {
            if (js)
                emit_json({{"type", "message"},
                           {"room", m.room},
                           {"epoch", m.position.epoch},
                           {"offset", m.position.offset},
                           {"data", as_json(m.data)},
                           {"replayed", m.replayed}});
            else
                out_line(one_room ? m.data : m.room + "\t" + m.data);
        };
        ro.on_status = [js](const RoomStatusChanged& r) {
            if (js)
                emit_json({{"type", "room"},
                           {"room", r.room},
                           {"state", to_string(r.state)},
                           {"reason", r.reason}});
            else if (r.state == RoomState::error)
                err_line("Room " + r.room + ": " + r.reason, kRed);
        };
        ro.on_history_lost = [js](const HistoryLost& h) {
            if (js)
                emit_json({{"type", "history_lost"},
                           {"room", h.room},
                           {"last_offset", h.last_delivered.offset},
                           {"resumed_offset", h.resumed_at.offset}});
            else
                err_line("Room " + h.room + ": history lost after offset " +
                             std::to_string(h.last_delivered.offset) + "; refetch",
                         kYellow);
        };
        return ro;
    };
    for (const auto& r : a.rooms) {
        try {
            rooms.emplace(r, client->join(r, make_room_options(r)));
        } catch (const std::exception& e) {
            return usage("--room " + r + ": " + e.what());
        }
    }
    start_stdin_thread(loop_ptr);
    auto handle = [&](const std::string& line) -> std::optional<int> {
        if (line.empty()) return std::nullopt;
        if (line[0] == '/' && line.rfind("//", 0) != 0) {
            std::istringstream ss(line);
            std::string cmd, arg;
            ss >> cmd >> arg;
            if (cmd == "/quit") return exit_ok;
            if (shared_command(cmd, *client)) {
            } else if (cmd == "/join" && !arg.empty()) {
                try {
                    rooms.emplace(arg, client->join(arg, make_room_options(arg)));
                } catch (const std::exception& e) {
                    err_line(std::string{"join: "} + e.what(), kRed);
                }
            } else if (cmd == "/leave" && rooms.count(arg)) {
                (void)rooms.at(arg).leave();  // the client outlives the loop
                rooms.erase(arg);
            } else {
                err_line("unknown command " + cmd +
                             " (commands: /retry /connect /close /offline /online /status /join R "
                             "/leave R /quit; start a line with // to publish a '/')",
                         kRed);
            }
            return std::nullopt;
        }
        std::string room, data = line[0] == '/' ? line.substr(1) : line;
        if (const auto tab = data.find('\t'); tab != std::string::npos && !one_room) {
            room = data.substr(0, tab);
            data = data.substr(tab + 1);
        } else if (rooms.size() == 1) {
            room = rooms.begin()->first;
        } else {
            err_line("with several rooms (or none), write room<TAB>data", kRed);
            return std::nullopt;
        }
        // Data must be one JSON value; a plain line is sent as a JSON string.
        boost::system::error_code ec;
        json::parse(data, ec);
        if (ec) data = json::serialize(json::value(data));
        auto it = rooms.find(room);
        if (it == rooms.end()) {
            it = rooms.emplace(room, client->join(room, make_room_options(room))).first;
        }
        it->second.publish(std::move(data));
        return std::nullopt;
    };
    const int rc = run_loop(
        loop, a, handle, [&](std::chrono::milliseconds t) { return client->flush(t); },
        [&] { return client->pending(); });
    client.reset();  // closes with 1000, bounded by the close timeout
    return rc;
}

// ---- raw mode ------------------------------------------------------------------------------

int run_raw(const ConnectArgs& a) {
    ReconnectingWebSocketOptions o;
    Liveness live;
    if (auto rc = common_options(a, o, o, live)) return *rc;
    if (live.interval) o.ping_interval = *live.interval;
    if (live.timeout) o.pong_timeout = *live.timeout;
    o.subprotocol = a.subprotocol;
    if (!a.token.empty()) o.headers.emplace_back("Authorization", "Bearer " + a.token);
    if (!a.auth_message.empty()) {
        o.auth = [m = a.auth_message] { return SocketMessage{m, false}; };
        if (!a.auth_expect.empty())
            o.auth_validator = [want =
                                    a.auth_expect](const SocketMessage& m) -> std::optional<bool> {
                return m.data.find(want) != std::string::npos;
            };
    }
    for (const auto& s : a.subscribe)
        o.subscriptions.push_back(SocketMessage{s, false});
    if (a.ping_mode == "ws")
        o.liveness = LivenessMode::ws_ping;
    else if (a.ping_mode == "app")
        o.liveness = LivenessMode::app_message;
    else if (a.ping_mode == "none")
        o.liveness = LivenessMode::none;
    else
        return usage("--ping-mode must be ws, app or none");
    o.ping_payload = a.ping_payload;
    o.pong_matcher = [want = a.pong_match](const SocketMessage& m) { return m.data == want; };
    if (!a.answer.empty()) {
        std::map<std::string, std::string> answers;
        for (const auto& x : a.answer) {
            const auto eq = x.find('=');
            if (eq == std::string::npos) return usage("--answer must be MESSAGE=REPLY");
            answers[x.substr(0, eq)] = x.substr(eq + 1);
        }
        o.ping_responder = [answers](const SocketMessage& m) -> std::optional<SocketMessage> {
            if (auto it = answers.find(m.data); it != answers.end())
                return SocketMessage{it->second, false};
            return std::nullopt;
        };
    }

    const bool interactive = ::isatty(0) != 0;
    auto loop_ptr = std::make_shared<Loop>();
    Loop& loop = *loop_ptr;
    start_signal_thread(loop_ptr);
    const bool js = a.json;
    auto banner = std::make_shared<Banner<SocketStatus>>();
    o.on_status = [js, banner, interactive, loop_ptr](const SocketStatus& s) {
        if (js) {
            auto o2 = status_json(s);
            o2["queued"] = s.queued;
            emit_json(o2);
        } else {
            banner->show(s, interactive);
        }
        if (terminal_stop(s.state, s.reason) && !interactive)
            loop_ptr->set_finish(stop_code(s.reason));
    };
    o.on_message = [js](const SocketMessage& m) {
        if (js)
            emit_json({{"type", "message"},
                       {"binary", m.binary},
                       {"data", m.binary ? base64(m.data) : m.data}});
        else
            out_line(m.binary
                         ? "<binary " + std::to_string(m.data.size()) + " bytes> " + base64(m.data)
                         : m.data);
    };
    o.on_latency = [js](std::chrono::milliseconds rtt) {
        if (js) emit_json({{"type", "latency"}, {"rtt_ms", rtt.count()}});
    };
    o.on_dropped = [js](const SocketMessage& m, std::error_code error) {
        if (js)
            emit_json({{"type", "dropped"}, {"error", error.message()}, {"bytes", m.data.size()}});
        else
            err_line("Message not sent: " + error.message(), kRed);
    };
    std::unique_ptr<ReconnectingWebSocket> ws;
    try {
        ws = std::make_unique<ReconnectingWebSocket>(o);
    } catch (const std::exception& e) {
        return usage(e.what());
    }
    start_stdin_thread(loop_ptr);
    auto handle = [&](const std::string& line) -> std::optional<int> {
        if (line == "/quit") return exit_ok;
        if (!shared_command(line, *ws)) ws->send(line.rfind("//", 0) == 0 ? line.substr(1) : line);
        return std::nullopt;
    };
    const int rc = run_loop(
        loop, a, handle, [&](std::chrono::milliseconds t) { return ws->flush(t); },
        [&] { return ws->status().queued; });
    ws.reset();
    return rc;
}

}  // namespace

Action add_connect_command(CLI::App& app) {
    auto a = std::make_shared<ConnectArgs>();
    auto* cmd = app.add_subcommand(
        "connect", "Connect, reconnect and resume; print what arrives, publish stdin lines");
    cmd->add_option("url", a->url, "ws:// or wss:// URL of the server")->required();
    cmd->add_option("--token", a->token, "Access token (--raw: sent as Authorization: Bearer)");
    cmd->add_option("--token-file", a->token_file,
                    "Read the token from this file before every connect (token refresh)");
    cmd->add_option("--room", a->rooms, "Join this room (repeatable)");
    cmd->add_flag("--json", a->json, "One JSON object per line (docs/CLI.md)");
    cmd->add_flag("--raw", a->raw, "Any WebSocket server: print each frame, send each line");
    cmd->add_option("--ping-interval", a->ping_interval,
                    "Liveness ping interval (default: the server's, --raw: 15s)");
    cmd->add_option("--pong-timeout", a->pong_timeout,
                    "Close and reconnect when no pong arrives in time (default: ping interval)");
    cmd->add_option(
        "--fatal-codes", a->fatal_codes,
        "Close codes that stop retrying, comma-separated (default 4003,4004,4012,4013,4014; "
        "--raw: 1008,4003,4004)");
    cmd->add_option("--fatal-reason", a->fatal_reasons,
                    "A close reason containing this text stops retrying (repeatable)");
    cmd->add_option("--max-attempts", a->max_attempts, "Give up after N attempts (default: never)");
    cmd->add_option("--state", a->state,
                    "Keep pending messages and room positions in this file across restarts");
    cmd->add_option("--ca-file", a->ca_file, "Trust this CA file instead of the system store");
    cmd->add_flag("--insecure", a->insecure,
                  "Do not verify the server certificate (development only)");
    cmd->add_flag("--retry-certificate-errors", a->retry_certificate_errors,
                  "Keep retrying when the server certificate fails verification (default: stop, "
                  "exit 7)");
    cmd->add_option("--probe", a->probe, "HTTP(S) URL that must answer 2xx before each attempt");
    cmd->add_option("--header", a->headers, "Extra upgrade header 'Name: value' (repeatable)");
    cmd->add_option("--backoff", a->backoff,
                    "exponential|full-jitter|decorrelated-jitter|fixed|linear|immediate|never");
    cmd->add_option("--backoff-initial", a->backoff_initial, "First retry delay (default 500ms)");
    cmd->add_option("--backoff-max", a->backoff_max, "Retry delay cap (default 15s)");
    cmd->add_option("--jitter", a->jitter, "Jitter ratio after the cap (default 0.25)");
    cmd->add_flag("--no-network-monitor", a->no_network_monitor,
                  "Do not follow the host's network (netlink)");
    cmd->add_flag("-n,--no-exit-on-eof", a->no_exit_on_eof, "Keep running when stdin ends");
    cmd->add_option(
        "--open-timeout", a->open_timeout,
        "Give up an attempt whose TCP/TLS/WebSocket handshake takes longer (default 10s)");
    cmd->add_option("--drain-timeout", a->drain_timeout,
                    "At end of stdin, wait this long for acknowledgements (default 10s)");
    cmd->add_option("--auth-message", a->auth_message, "--raw: sent first on every connect");
    cmd->add_option("--auth-expect", a->auth_expect,
                    "--raw: the auth reply must contain this text, else stop (exit 5)");
    cmd->add_option("--subscribe", a->subscribe,
                    "--raw: sent after auth on every connect (repeatable)");
    cmd->add_option("--ping-mode", a->ping_mode,
                    "--raw: ws (RFC 6455 pings, default), app or none");
    cmd->add_option("--ping-payload", a->ping_payload, "--raw: ping payload (default 'ping')");
    cmd->add_option("--pong-match", a->pong_match,
                    "--raw, app pings: the reply text (default 'pong')");
    cmd->add_option(
        "--answer", a->answer,
        "--raw: answer MESSAGE with REPLY, as MESSAGE=REPLY (server pings; repeatable)");
    cmd->add_option("--subprotocol", a->subprotocol, "--raw: Sec-WebSocket-Protocol to request");
    return [cmd, a]() -> int {
        if (!cmd->parsed()) return exit_usage;
        return a->raw ? run_raw(*a) : run_tether(*a);
    };
}

}  // namespace tether::tools
