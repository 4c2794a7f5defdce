#include <tether/core/assert.hpp>
#include <tether/core/close_codes.hpp>
#include <tether/core/socket_core.hpp>

#include <algorithm>
#include <cstdio>
#include <stdexcept>

namespace tether {
namespace {

constexpr std::size_t kQueueMax = 1u << 20;  // transmits/events between two polls

bool contains(const std::vector<std::uint16_t>& v, std::uint16_t x) {
    return std::find(v.begin(), v.end(), x) != v.end();
}

}  // namespace

std::optional<std::string> SocketConfig::validate() const {
    if (auto e = backoff.validate()) return "backoff: " + *e;
    if (open_timeout.count() <= 0) return "open timeout must be > 0";
    if (close_timeout.count() <= 0) return "close timeout must be > 0";
    if (auth_timeout.count() <= 0) return "auth timeout must be > 0";
    if (liveness != LivenessMode::none) {
        if (ping_interval.count() < 10) return "ping interval must be >= 10 ms";
        if (pong_timeout.count() <= 0) return "pong timeout must be > 0";
        if (liveness == LivenessMode::ws_ping && ping_payload.size() > 125)
            return "a ws ping payload is at most 125 bytes (RFC 6455)";
    }
    if (queue_count_max == 0) return "queue count max must be >= 1";
    if (queue_bytes_max == 0) return "queue bytes max must be >= 1";
    if (message_bytes_max == 0) return "message bytes max must be >= 1";
    return std::nullopt;
}

std::string describe(const SocketStatus& s, time_point now) {
    std::string out{to_string(s.state)};
    char buf[96];
    switch (s.state) {
        case ConnState::connected:
            break;
        case ConnState::connecting:
        case ConnState::reconnecting:
            if (s.next_retry_at) {
                const auto in = std::max<std::int64_t>(0, (*s.next_retry_at - now).count());
                std::snprintf(buf, sizeof buf, " (attempt %u, next in %.1f s)", s.attempt,
                              static_cast<double>(in) / 1000.0);
                out += buf;
            } else if (s.attempt > 0) {
                std::snprintf(buf, sizeof buf, " (attempt %u)", s.attempt);
                out += buf;
            }
            break;
        case ConnState::disconnected:
        case ConnState::error:
            out += ": ";
            out += to_string(s.reason);
            if (s.close_code != 0 && s.reason != StopReason::manual &&
                s.reason != StopReason::offline) {
                std::snprintf(buf, sizeof buf, " (close %u", s.close_code);
                out += buf;
                if (!s.close_reason.empty()) out += " " + s.close_reason;
                out += ")";
            }
            break;
    }
    if (s.queued > 0 && s.state != ConnState::connected) {
        std::snprintf(buf, sizeof buf, ", %zu queued", s.queued);
        out += buf;
    }
    return out;
}

SocketCore::SocketCore(SocketConfig config)
    : config_(std::move(config)), rng_(config_.seed), backoff_(BackoffPolicy{}) {
    if (auto e = config_.validate())
        throw std::invalid_argument("tether: invalid socket config: " + *e);
    backoff_ = Backoff{config_.backoff};
}

// ---- commands ----------------------------------------------------------------------

void SocketCore::connect(time_point now, bool reset_backoff) {
    if (conn_) return refresh();
    if (!want_connected_) {
        connected_once_ = false;
        outage_attempts_ = 0;
    }
    want_connected_ = true;
    error_ = false;
    stop_reason_ = StopReason::none;
    if (reset_backoff) backoff_.reset();
    retry_at_.reset();
    if (online_) start_attempt(now);
    refresh();
}

void SocketCore::retry_now(time_point now) {
    if (conn_) return refresh();
    want_connected_ = true;
    error_ = false;
    stop_reason_ = StopReason::none;
    retry_at_.reset();
    if (online_) start_attempt(now);
    refresh();
}

void SocketCore::close(time_point now, bool discard_queue) {
    want_connected_ = false;
    error_ = false;
    stop_reason_ = StopReason::manual;
    retry_at_.reset();
    if (conn_) fail_link(now, close_code::normal, "client closed");
    if (discard_queue) {
        while (!queue_.empty()) {
            ++metrics_.dropped;
            events_.push_back(SocketDropped{std::move(queue_.front()), "closed"});
            queue_.pop_front();
        }
        queue_bytes_ = 0;
    }
    refresh();
}

void SocketCore::set_online(time_point now, bool online) {
    if (online == online_) return;
    online_ = online;
    if (!online) {
        retry_at_.reset();
        if (conn_) fail_link(now, close_code::going_away, "offline");
    } else if (want_connected_ && !error_ && !conn_) {
        if (config_.reset_backoff_on_online) backoff_.reset();
        start_attempt(now);
    }
    refresh();
}

std::string SocketCore::send(time_point, SocketMessage m) {
    if (m.data.size() > config_.message_bytes_max || m.data.size() > config_.queue_bytes_max) {
        ++metrics_.dropped;
        return "too_large";
    }
    if (conn_ && conn_->stage == Stage::established && queue_.empty()) {
        transmit_send(m);
        return {};
    }
    while (queue_.size() + 1 > config_.queue_count_max ||
           queue_bytes_ + m.data.size() > config_.queue_bytes_max) {
        if (config_.overflow == OverflowPolicy::reject_new || queue_.empty()) {
            ++metrics_.dropped;
            return "queue_full";
        }
        ++metrics_.dropped;
        queue_bytes_ -= queue_.front().data.size();
        events_.push_back(SocketDropped{std::move(queue_.front()), "dropped"});
        queue_.pop_front();
    }
    queue_bytes_ += m.data.size();
    queue_.push_back(std::move(m));
    refresh();
    return {};
}

void SocketCore::reply(time_point, SocketMessage m) {
    if (!conn_ || conn_->stage == Stage::opening) return;
    transmit_send(m);
}

// ---- lifecycle -----------------------------------------------------------------------

void SocketCore::start_attempt(time_point now) {
    TETHER_ASSERT(!conn_ && want_connected_ && online_ && !error_);
    abort_closing();
    retry_at_.reset();
    ++outage_attempts_;
    ++metrics_.attempts;
    Conn c;
    c.id = next_conn_++;
    c.stage = Stage::opening;
    c.deadline = now + config_.open_timeout;
    conn_ = c;
    transmits_.push_back(SocketTransmit{SocketTransmit::Kind::open, c.id, {}, 0, {}});
}

void SocketCore::abort_closing() {
    if (!closing_) return;
    transmits_.push_back(SocketTransmit{SocketTransmit::Kind::abort, closing_->id, {}, 0, {}});
    closing_.reset();
}

void SocketCore::transmit_send(const SocketMessage& m) {
    TETHER_ASSERT(conn_);
    TETHER_ASSERT(transmits_.size() < kQueueMax);
    ++metrics_.sent;
    transmits_.push_back(SocketTransmit{SocketTransmit::Kind::send, conn_->id, m, 0, {}});
}

void SocketCore::fail_link(time_point now, std::uint16_t code, std::string reason) {
    TETHER_ASSERT(conn_);
    const Conn lost = *conn_;
    conn_.reset();
    if (lost.stage == Stage::opening) {
        transmits_.push_back(SocketTransmit{SocketTransmit::Kind::abort, lost.id, {}, 0, {}});
    } else {
        abort_closing();
        // Built member by member: GCC 12 at -O3 reports the aggregate's
        // defaulted string as maybe-uninitialized (a false positive).
        SocketTransmit t;
        t.kind = SocketTransmit::Kind::close;
        t.conn = lost.id;
        t.code = code;
        t.reason = reason;
        transmits_.push_back(std::move(t));
        closing_ = Closing{lost.id, now + config_.close_timeout};
    }
    if (lost.stage == Stage::established) {
        ++metrics_.link_losses;
        backoff_.on_disconnected(now);
    }
    on_link_lost(now, code, reason, false);
}

bool SocketCore::is_fatal(std::uint16_t code, std::string_view reason) const {
    if (contains(config_.fatal_codes, code)) return true;
    return std::any_of(config_.fatal_reasons.begin(), config_.fatal_reasons.end(),
                       [&](const std::string& s) {
                           return !s.empty() && reason.find(s) != std::string_view::npos;
                       });
}

void SocketCore::on_link_lost(time_point now, std::uint16_t code, std::string_view reason,
                              bool from_peer) {
    last_close_code_ = code;
    last_close_reason_ = std::string{reason};
    if (!want_connected_ || !online_ || error_) return;
    if (from_peer && is_fatal(code, reason)) {
        want_connected_ = false;
        stop_reason_ = StopReason::fatal;
        return;
    }
    auto d = backoff_.next_delay(rng_);
    if (!d) {
        want_connected_ = false;
        stop_reason_ = backoff_.policy().strategy == BackoffStrategy::never
                           ? StopReason::manual
                           : StopReason::max_attempts;
        return;
    }
    retry_at_ = now + *d;
}

void SocketCore::establish(time_point now) {
    TETHER_ASSERT(conn_);
    for (const auto& s : config_.subscriptions)
        transmit_send(s);
    while (!queue_.empty()) {
        transmit_send(queue_.front());
        queue_bytes_ -= queue_.front().data.size();
        queue_.pop_front();
    }
    conn_->stage = Stage::established;
    if (config_.liveness != LivenessMode::none) conn_->next_ping = now + config_.ping_interval;
    connected_once_ = true;
    outage_attempts_ = 0;
    ++metrics_.connects;
    backoff_.on_connected(now);
}

// ---- driver inputs -------------------------------------------------------------------

void SocketCore::handle_open(time_point now, std::uint64_t conn) {
    if (!conn_ || conn_->id != conn) {
        if (!closing_ || closing_->id != conn)
            transmits_.push_back(SocketTransmit{SocketTransmit::Kind::abort, conn, {}, 0, {}});
        return;
    }
    if (conn_->stage != Stage::opening) return;
    if (config_.auth_message) transmit_send(*config_.auth_message);
    if (config_.await_auth_reply) {
        conn_->stage = Stage::authenticating;
        conn_->deadline = now + config_.auth_timeout;
    } else {
        establish(now);
    }
    refresh();
}

void SocketCore::handle_message(time_point, std::uint64_t conn, SocketMessage m) {
    if (!conn_ || conn_->id != conn || conn_->stage == Stage::opening) return;
    ++metrics_.received;
    events_.push_back(SocketReceived{std::move(m)});
}

void SocketCore::handle_pong(time_point now, std::uint64_t conn) {
    if (!conn_ || conn_->id != conn || !conn_->pong_deadline) return;
    const duration rtt = now - conn_->ping_sent_at;
    conn_->pong_deadline.reset();
    metrics_.last_rtt = rtt;
    events_.push_back(SocketLatency{rtt});
}

void SocketCore::handle_auth_reply(time_point now, std::uint64_t conn, bool ok,
                                   std::string_view why) {
    if (!awaiting_auth(conn)) return;
    if (ok) {
        establish(now);
    } else {
        // A rejected auth is fatal (seed 001): retrying the same credentials
        // would only hammer the server. retry_now()/connect() start again.
        ++metrics_.auth_failures;
        std::string reason = "auth rejected";
        if (!why.empty()) reason += ": " + std::string{why};
        fail_link(now, close_code::policy_violation, reason);
        error_ = true;
        want_connected_ = false;
        stop_reason_ = StopReason::auth_failed;
        retry_at_.reset();
    }
    refresh();
}

void SocketCore::handle_close(time_point now, std::uint64_t conn, std::uint16_t code,
                              std::string_view reason) {
    if (closing_ && closing_->id == conn) {
        closing_.reset();
    } else if (conn_ && conn_->id == conn) {
        const bool was_established = conn_->stage == Stage::established;
        conn_.reset();
        if (was_established) {
            ++metrics_.link_losses;
            backoff_.on_disconnected(now);
        }
        on_link_lost(now, code, reason, true);
    }
    refresh();
}

void SocketCore::handle_timeout(time_point now) {
    status_.handle_timeout(now);
    if (closing_ && closing_->deadline <= now) abort_closing();
    if (retry_at_ && *retry_at_ <= now) {
        retry_at_.reset();
        if (want_connected_ && online_ && !conn_ && !error_) start_attempt(now);
    }
    if (conn_ && conn_->stage != Stage::established && conn_->deadline <= now) {
        fail_link(now, close_code::unknown_error,
                  conn_->stage == Stage::opening ? "open timeout" : "auth timeout");
    }
    if (conn_ && conn_->pong_deadline && *conn_->pong_deadline <= now) {
        ++metrics_.liveness_timeouts;
        fail_link(now, close_code::unknown_error, "pong timeout");
    }
    if (conn_ && conn_->next_ping && *conn_->next_ping <= now) {
        if (!conn_->pong_deadline) {
            conn_->ping_sent_at = now;
            conn_->pong_deadline = now + config_.pong_timeout;
            if (config_.liveness == LivenessMode::ws_ping) {
                transmits_.push_back(SocketTransmit{SocketTransmit::Kind::ping,
                                                    conn_->id,
                                                    SocketMessage{config_.ping_payload, false},
                                                    0,
                                                    {}});
            } else {
                transmit_send(SocketMessage{config_.ping_payload, false});
            }
        }
        conn_->next_ping = now + config_.ping_interval;
    }
    refresh();
}

// ---- outputs -------------------------------------------------------------------------

std::optional<SocketTransmit> SocketCore::poll_transmit() {
    if (transmits_.empty()) return std::nullopt;
    SocketTransmit t = std::move(transmits_.front());
    transmits_.pop_front();
    return t;
}

std::optional<SocketEvent> SocketCore::poll_event() {
    if (events_.empty()) return std::nullopt;
    SocketEvent e = std::move(events_.front());
    events_.pop_front();
    return e;
}

std::optional<time_point> SocketCore::poll_timeout() const {
    std::optional<time_point> t = status_.poll_timeout();
    auto consider = [&](std::optional<time_point> x) {
        if (x && (!t || *x < *t)) t = x;
    };
    if (closing_) consider(closing_->deadline);
    consider(retry_at_);
    if (conn_) {
        if (conn_->stage != Stage::established) consider(conn_->deadline);
        consider(conn_->pong_deadline);
        consider(conn_->next_ping);
    }
    return t;
}

bool SocketCore::awaiting_auth(std::uint64_t conn) const noexcept {
    return conn_ && conn_->id == conn && conn_->stage == Stage::authenticating;
}

std::optional<std::uint64_t> SocketCore::connection() const noexcept {
    if (conn_) return conn_->id;
    return std::nullopt;
}

// ---- status --------------------------------------------------------------------------

SocketStatus SocketCore::derive_status() const {
    SocketStatus s;
    s.online = online_;
    s.queued = queue_.size();
    s.close_code = last_close_code_;
    s.close_reason = last_close_reason_;
    if (error_) {
        s.state = ConnState::error;
        s.reason = stop_reason_;
    } else if (!want_connected_) {
        s.state = ConnState::disconnected;
        s.reason = stop_reason_;
    } else if (!online_) {
        s.state = ConnState::disconnected;
        s.reason = StopReason::offline;
    } else if (conn_ && conn_->stage == Stage::established) {
        s.state = ConnState::connected;
        s.reason = StopReason::none;
    } else {
        s.reason = StopReason::none;
        s.state = (connected_once_ || outage_attempts_ > 1 || retry_at_) ? ConnState::reconnecting
                                                                         : ConnState::connecting;
        s.attempt = conn_ ? outage_attempts_ : outage_attempts_ + 1;
        s.next_retry_at = retry_at_;
    }
    return s;
}

void SocketCore::refresh() {
    SocketStatus s = derive_status();
    if (!(s == status_.get())) {
        events_.push_back(SocketStatusChanged{s});
        status_.set(std::move(s));
    }
}

}  // namespace tether
