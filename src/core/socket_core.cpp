#include <tether/core/assert.hpp>
#include <tether/core/close_codes.hpp>
#include <tether/core/socket_core.hpp>

#include <cstdio>
#include <stdexcept>

namespace tether {
namespace {

constexpr std::size_t kEventsMax = 1u << 20;  // events between two polls

SocketConfig validated(SocketConfig c) {
    if (auto r = c.validate(); !r)
        throw std::invalid_argument("tether: invalid socket config: " + r.error().message);
    return c;
}

}  // namespace

SocketConfig::SocketConfig() {
    fatal_codes = {close_code::policy_violation, close_code::not_authenticated,
                   close_code::authentication_failed};
}

result<void, Error> SocketConfig::validate() const {
    auto bad = [](const char* what) { return make_error(error::invalid_config, what); };
    if (auto r = ReconnectConfig::validate(); !r) return r;
    if (auth_timeout.count() <= 0) return bad("auth timeout must be > 0");
    if (liveness != LivenessMode::none) {
        if (ping_interval.count() < 10) return bad("ping interval must be >= 10 ms");
        if (pong_timeout.count() <= 0) return bad("pong timeout must be > 0");
        if (liveness == LivenessMode::ws_ping && ping_payload.size() > 125)
            return bad("a ws ping payload is at most 125 bytes (RFC 6455)");
    }
    if (queue_count_max == 0) return bad("queue count max must be >= 1");
    if (queue_bytes_max == 0) return bad("queue bytes max must be >= 1");
    if (message_bytes_max == 0) return bad("message bytes max must be >= 1");
    return {};
}

std::string describe(const SocketStatus& s, time_point now) {
    std::string out = describe(static_cast<const ConnectionStatus&>(s), now);
    if (s.queued > 0 && s.state != ConnState::connected) {
        char buf[48];
        std::snprintf(buf, sizeof buf, ", %zu queued", s.queued);
        out += buf;
    }
    return out;
}

SocketCore::SocketCore(SocketConfig config)
    : config_(validated(std::move(config))), rc_(config_, *this) {
    rc_.timers().set(Timer::status, status_.poll_timeout());
}

// ---- commands ----------------------------------------------------------------------

void SocketCore::connect(time_point now, bool reset_backoff) {
    TETHER_CHECKED(*this);
    rc_.connect(now, reset_backoff);
    refresh();
}

void SocketCore::retry_now(time_point now) {
    TETHER_CHECKED(*this);
    rc_.retry_now(now);
    refresh();
}

void SocketCore::close(time_point now, bool discard_queue) {
    TETHER_CHECKED(*this);
    rc_.close(now, close_code::normal, "client closed");
    if (discard_queue) {
        while (!queue_.empty()) {
            ++metrics_.dropped;
            events_.emplace_back(SocketDropped{std::move(queue_.front()), error::client_closed});
            queue_.pop_front();
        }
        queue_bytes_ = 0;
    }
    refresh();
}

void SocketCore::set_online(time_point now, bool online) {
    TETHER_CHECKED(*this);
    rc_.set_online(now, online);
    refresh();
}

result<void> SocketCore::send(time_point, SocketMessage m) {
    TETHER_CHECKED(*this);
    if (m.data.size() > config_.message_bytes_max || m.data.size() > config_.queue_bytes_max) {
        ++metrics_.dropped;
        return error::too_large;
    }
    if (conn_ && conn_->stage == Stage::established && queue_.empty()) {
        transmit_send(m);
        return {};
    }
    while (queue_.size() + 1 > config_.queue_count_max ||
           queue_bytes_ + m.data.size() > config_.queue_bytes_max) {
        if (config_.overflow == OverflowPolicy::reject_new || queue_.empty()) {
            ++metrics_.dropped;
            return error::queue_full;
        }
        ++metrics_.dropped;
        queue_bytes_ -= queue_.front().data.size();
        events_.emplace_back(SocketDropped{std::move(queue_.front()), error::dropped});
        queue_.pop_front();
    }
    queue_bytes_ += m.data.size();
    queue_.push_back(std::move(m));
    refresh();
    return {};
}

void SocketCore::reply(time_point, const SocketMessage& m) {
    TETHER_CHECKED(*this);
    if (!conn_ || conn_->stage == Stage::opening) return;
    transmit_send(m);
}

// ---- lifecycle -----------------------------------------------------------------------

void SocketCore::begin_attempt(time_point now, std::uint64_t conn) {
    TETHER_ASSERT(!conn_);
    ++metrics_.attempts;
    conn_ = Conn{conn, Stage::opening, {}};
    rc_.open_socket(now);
}

void SocketCore::transmit_send(const SocketMessage& m) {
    TETHER_ASSERT(conn_);
    ++metrics_.sent;
    rc_.send(m.data, m.binary);
}

void SocketCore::link_lost(time_point now, const LinkClose& why, bool from_peer,
                           bool was_established) {
    conn_.reset();
    rc_.timers().clear(Timer::liveness);
    rc_.timers().clear(Timer::heartbeat);
    if (was_established) ++metrics_.link_losses;
    if (!rc_.active()) return;
    switch (rc_.classify(why, from_peer)) {
        case LossKind::fatal_close:
            return rc_.stop(StopReason::fatal);
        case LossKind::certificate:
            return rc_.stop(StopReason::certificate);
        case LossKind::transient:
            break;
    }
    if (!rc_.schedule_retry(now))
        rc_.stop(rc_.backoff().policy().strategy == BackoffStrategy::never
                     ? StopReason::manual
                     : StopReason::max_attempts);
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
    if (config_.liveness != LivenessMode::none)
        rc_.timers().set(Timer::heartbeat, now + config_.ping_interval);
    ++metrics_.connects;
    rc_.established(now);
}

// ---- driver inputs -------------------------------------------------------------------

void SocketCore::handle_open(time_point now, std::uint64_t conn) {
    TETHER_CHECKED(*this);
    if (!rc_.handle_open(conn)) return;
    TETHER_ASSERT(conn_ && conn_->id == conn);
    if (config_.auth_message) transmit_send(*config_.auth_message);
    if (config_.await_auth_reply) {
        conn_->stage = Stage::authenticating;
        rc_.set_deadline(now + config_.auth_timeout, error::auth_timeout, "auth timeout");
    } else {
        establish(now);
    }
    refresh();
}

void SocketCore::handle_message(time_point, std::uint64_t conn, SocketMessage m) {
    TETHER_CHECKED(*this);
    if (!rc_.accepts(conn)) return;
    ++metrics_.received;
    events_.emplace_back(SocketReceived{std::move(m)});
}

void SocketCore::handle_pong(time_point now, std::uint64_t conn) {
    TETHER_CHECKED(*this);
    if (!rc_.accepts(conn) || !rc_.timers().armed(Timer::liveness)) return;
    const duration rtt = now - conn_->ping_sent_at;
    rc_.timers().clear(Timer::liveness);
    metrics_.last_rtt = rtt;
    events_.emplace_back(SocketLatency{rtt});
}

void SocketCore::handle_auth_reply(time_point now, std::uint64_t conn, bool ok,
                                   std::string_view why) {
    TETHER_CHECKED(*this);
    if (!awaiting_auth(conn)) return;
    if (ok) {
        establish(now);
    } else {
        // A rejected auth stops: retrying the same credentials would only
        // hammer the server. retry_now()/connect() start again.
        ++metrics_.auth_failures;
        std::string reason = "auth rejected";
        if (!why.empty()) reason += ": " + std::string{why};
        rc_.enter_error(StopReason::auth_failed);
        rc_.fail(now, close_code::policy_violation, reason, error::auth_rejected);
    }
    refresh();
}

void SocketCore::handle_close(time_point now, std::uint64_t conn, const LinkClose& why) {
    TETHER_CHECKED(*this);
    rc_.handle_close(now, conn, why);
    refresh();
}

void SocketCore::handle_timeout(time_point now) {
    TETHER_CHECKED(*this);
    rc_.timers().for_each_expired(now, [&](Timer t) { on_timer(now, t); });
    refresh();
}

void SocketCore::on_timer(time_point now, Timer t) {
    if (rc_.handle_timer(now, t)) return;
    switch (t) {
        case Timer::status:
            status_.handle_timeout(now);
            break;
        case Timer::liveness:
            if (!conn_) break;
            ++metrics_.liveness_timeouts;
            rc_.fail(now, close_code::unknown_error, "pong timeout", error::liveness_timeout);
            break;
        case Timer::heartbeat:
            if (!conn_ || conn_->stage != Stage::established) break;
            if (!rc_.timers().armed(Timer::liveness)) {
                conn_->ping_sent_at = now;
                rc_.timers().set(Timer::liveness, now + config_.pong_timeout);
                if (config_.liveness == LivenessMode::ws_ping)
                    rc_.push(Transmit{
                        Transmit::Kind::ping, conn_->id, config_.ping_payload, false, 0, {}});
                else
                    transmit_send(SocketMessage{config_.ping_payload, false});
            }
            rc_.timers().set(Timer::heartbeat, now + config_.ping_interval);
            break;
        default:
            break;  // join and outbox: not used by the generic socket
    }
}

// ---- outputs -------------------------------------------------------------------------

std::optional<Transmit> SocketCore::poll_transmit() {
    return rc_.poll_transmit();
}

std::optional<SocketEvent> SocketCore::poll_event() {
    if (events_.empty()) return std::nullopt;
    SocketEvent e = std::move(events_.front());
    events_.pop_front();
    return e;
}

std::optional<time_point> SocketCore::poll_timeout() const {
    return rc_.poll_timeout();
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
    static_cast<ConnectionStatus&>(s) = rc_.status();
    s.queued = queue_.size();
    return s;
}

void SocketCore::refresh() {
    SocketStatus s = derive_status();
    if (!(s == status_.get())) {
        TETHER_ASSERT(events_.size() < kEventsMax);
        events_.emplace_back(SocketStatusChanged{s});
        status_.set(std::move(s));
    }
    rc_.timers().set(Timer::status, status_.poll_timeout());
}

void SocketCore::check_invariants() const {
    TETHER_ASSERT(conn_.has_value() == rc_.current().has_value());
    if (conn_) TETHER_ASSERT(conn_->id == *rc_.current());
    TETHER_ASSERT((conn_ && conn_->stage == Stage::established) == rc_.is_established());
    if (!conn_ || conn_->stage != Stage::established) {
        TETHER_ASSERT(!rc_.timers().armed(Timer::heartbeat));
        TETHER_ASSERT(!rc_.timers().armed(Timer::liveness));
    }
    // The queue is bounded and its byte count exact; it drains when connected.
    TETHER_ASSERT(queue_.size() <= config_.queue_count_max);
    std::size_t bytes = 0;
    for (const auto& m : queue_)
        bytes += m.data.size();
    TETHER_ASSERT(bytes == queue_bytes_ && bytes <= config_.queue_bytes_max);
    if (rc_.is_established()) TETHER_ASSERT(queue_.empty());
    TETHER_ASSERT(events_.size() < kEventsMax);
    TETHER_ASSERT(!rc_.timers().armed(Timer::join) && !rc_.timers().armed(Timer::outbox));
}

}  // namespace tether
