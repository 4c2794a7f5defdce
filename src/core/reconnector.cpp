#include <tether/core/assert.hpp>
#include <tether/core/close_codes.hpp>
#include <tether/core/protocol.hpp>
#include <tether/core/reconnector.hpp>

#include <algorithm>
#include <cstdio>

namespace tether {
namespace {

constexpr std::size_t kTransmitsMax = 1u << 20;  // between two polls: a driver that never polls

}  // namespace

std::string_view to_string(ConnState s) noexcept {
    switch (s) {
        case ConnState::connecting:
            return "connecting";
        case ConnState::connected:
            return "connected";
        case ConnState::reconnecting:
            return "reconnecting";
        case ConnState::disconnected:
            return "disconnected";
        case ConnState::error:
            return "error";
    }
    return "?";
}

std::string_view to_string(StopReason r) noexcept {
    switch (r) {
        case StopReason::none:
            return "none";
        case StopReason::not_started:
            return "not started";
        case StopReason::manual:
            return "closed by the application";
        case StopReason::offline:
            return "offline";
        case StopReason::fatal:
            return "fatal close";
        case StopReason::max_attempts:
            return "max attempts reached";
        case StopReason::auth_failed:
            return "re-authentication failed";
        case StopReason::certificate:
            return "certificate rejected";
    }
    return "?";
}

std::string_view to_id(StopReason r) noexcept {
    switch (r) {
        case StopReason::none:
            return "none";
        case StopReason::not_started:
            return "not_started";
        case StopReason::manual:
            return "manual";
        case StopReason::offline:
            return "offline";
        case StopReason::fatal:
            return "fatal";
        case StopReason::max_attempts:
            return "max_attempts";
        case StopReason::auth_failed:
            return "auth_failed";
        case StopReason::certificate:
            return "certificate";
    }
    return "unknown";
}

result<void, Error> ReconnectConfig::validate() const {
    if (auto b = backoff.validate(); !b) return b;
    if (open_timeout.count() <= 0)
        return make_error(error::invalid_config, "open timeout must be > 0");
    if (close_timeout.count() <= 0)
        return make_error(error::invalid_config, "close timeout must be > 0");
    for (auto c : fatal_codes)
        if (c < 1000 || c > 4999)
            return make_error(error::invalid_config, "fatal codes must be close codes 1000-4999");
    return {};
}

std::string describe(const ConnectionStatus& s, time_point now, std::string_view phase) {
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
            } else if (!phase.empty()) {
                out += " (";
                out += phase;
                out += ")";
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
    return out;
}

Reconnector::Reconnector(const ReconnectConfig& config, ReconnectHooks& hooks)
    : config_(config), hooks_(hooks), rng_(config.seed), backoff_(config.backoff) {}

// ---- commands -----------------------------------------------------------------------

void Reconnector::connect(time_point now, bool reset_backoff) {
    if (attempt_) return;  // never two attempts at once
    if (!want_) {
        // A new episode: the application starts again after a stop.
        connected_once_ = false;
        attempts_since_connect_ = 0;
        outage_attempts_ = 0;
    }
    want_ = true;
    error_ = false;
    stop_ = StopReason::none;
    if (reset_backoff) backoff_.reset();
    timers_.clear(Timer::retry);
    if (online_) begin(now);
}

void Reconnector::retry_now(time_point now) {
    if (attempt_) return;
    want_ = true;
    error_ = false;
    stop_ = StopReason::none;
    timers_.clear(Timer::retry);
    if (online_) begin(now);
}

void Reconnector::close(time_point now, std::uint16_t code, std::string reason) {
    want_ = false;
    error_ = false;
    stop_ = StopReason::manual;
    timers_.clear(Timer::retry);
    if (attempt_) fail(now, code, std::move(reason), {});
}

void Reconnector::set_online(time_point now, bool online) {
    if (online == online_) return;
    online_ = online;
    if (!online) {
        timers_.clear(Timer::retry);
        if (attempt_) fail(now, close_code::going_away, "offline", {});
    } else if (want_ && !error_ && !attempt_) {
        if (config_.reset_backoff_on_online) backoff_.reset();
        begin(now);
    }
}

// ---- the attempt --------------------------------------------------------------------

void Reconnector::begin(time_point now) {
    TETHER_ASSERT(!attempt_ && want_ && online_ && !error_);
    abort_closing();
    timers_.clear(Timer::retry);
    ++attempts_since_connect_;
    ++outage_attempts_;
    attempt_ = Attempt{next_conn_++, Socket::none, false, error::open_timeout, {}};
    hooks_.begin_attempt(now, attempt_->id);
    TETHER_ASSERT(!closing_ || !attempt_ || closing_->id != attempt_->id);
}

void Reconnector::start_attempt(time_point now) {
    TETHER_ASSERT(!attempt_ && want_ && !error_);
    if (online_) begin(now);
}

void Reconnector::open_socket(time_point now) {
    TETHER_ASSERT(attempt_ && attempt_->socket == Socket::none);
    attempt_->socket = Socket::opening;
    push(Transmit{Transmit::Kind::open, attempt_->id, {}, false, 0, {}});
    set_deadline(now + config_.open_timeout, error::open_timeout, "open timeout");
}

bool Reconnector::handle_open(std::uint64_t conn) {
    if (!attempt_ || attempt_->id != conn) {
        // A socket we no longer want (closed, aborted, superseded): tear it down.
        if (!closing_ || closing_->id != conn)
            push(Transmit{Transmit::Kind::abort, conn, {}, false, 0, {}});
        return false;
    }
    if (attempt_->socket != Socket::opening) return false;
    attempt_->socket = Socket::open;
    return true;
}

bool Reconnector::accepts(std::uint64_t conn) const noexcept {
    return attempt_ && attempt_->id == conn && attempt_->socket == Socket::open;
}

void Reconnector::set_deadline(time_point at, error why, std::string text) {
    TETHER_ASSERT(attempt_);
    attempt_->deadline_error = why;
    attempt_->deadline_text = std::move(text);
    timers_.set(Timer::attempt, at);
}

void Reconnector::clear_deadline() noexcept {
    timers_.clear(Timer::attempt);
}

void Reconnector::established(time_point now) {
    TETHER_ASSERT(attempt_ && attempt_->socket == Socket::open && !attempt_->established);
    attempt_->established = true;
    clear_deadline();
    connected_once_ = true;
    outage_attempts_ = 0;
    backoff_.on_connected(now);
}

void Reconnector::fail(time_point now, std::uint16_t code, std::string reason,
                       std::error_code why) {
    TETHER_ASSERT(attempt_);
    const Attempt lost_attempt = std::move(*attempt_);
    attempt_.reset();
    clear_deadline();
    reason = proto::truncate_close_reason(reason);
    switch (lost_attempt.socket) {
        case Socket::none:
            break;  // no socket yet (waiting for credentials)
        case Socket::opening:
            push(Transmit{Transmit::Kind::abort, lost_attempt.id, {}, false, 0, {}});
            break;
        case Socket::open:
            abort_closing();
            push(Transmit{Transmit::Kind::close, lost_attempt.id, {}, false, code, reason});
            closing_ = Closing{lost_attempt.id};
            timers_.set(Timer::teardown, now + config_.close_timeout);
            break;
    }
    if (lost_attempt.established) backoff_.on_disconnected(now);
    LinkClose what{CloseFrame{code, std::move(reason)}, why, {}};
    record(what);
    hooks_.link_lost(now, what, false, lost_attempt.established);
}

void Reconnector::handle_close(time_point now, std::uint64_t conn, const LinkClose& why) {
    if (closing_ && closing_->id == conn) {
        closing_.reset();
        timers_.clear(Timer::teardown);
        return;
    }
    if (!attempt_ || attempt_->id != conn || attempt_->socket == Socket::none) return;
    const bool was_established = attempt_->established;
    attempt_.reset();
    clear_deadline();
    if (was_established) backoff_.on_disconnected(now);
    record(why);
    hooks_.link_lost(now, why, true, was_established);
}

bool Reconnector::handle_timer(time_point now, Timer t) {
    switch (t) {
        case Timer::teardown:
            abort_closing();
            return true;
        case Timer::retry:
            if (active() && !attempt_) begin(now);
            return true;
        case Timer::attempt:
            if (attempt_) {
                auto text = attempt_->deadline_text;
                fail(now, close_code::unknown_error, std::move(text),
                     make_error_code(attempt_->deadline_error));
            }
            return true;
        default:
            return false;
    }
}

void Reconnector::abort_closing() {
    if (!closing_) return;
    push(Transmit{Transmit::Kind::abort, closing_->id, {}, false, 0, {}});
    closing_.reset();
    timers_.clear(Timer::teardown);
}

void Reconnector::record(const LinkClose& why) {
    if (why.frame) {
        last_close_code_ = why.frame->code;
        last_close_reason_ = why.frame->reason;
    } else {
        last_close_code_ = close_code::abnormal;
        last_close_reason_ = !why.detail.empty() ? why.detail
                             : why.error         ? why.error.message()
                                                 : std::string{};
    }
    last_error_ = why.error;
}

// ---- after a loss -------------------------------------------------------------------

LossKind Reconnector::classify(const LinkClose& why, bool from_peer) const {
    if (from_peer && why.frame) {
        const auto& f = *why.frame;
        if (std::find(config_.fatal_codes.begin(), config_.fatal_codes.end(), f.code) !=
            config_.fatal_codes.end())
            return LossKind::fatal_close;
        const bool reason_fatal = std::any_of(
            config_.fatal_reasons.begin(), config_.fatal_reasons.end(), [&](const std::string& s) {
                return !s.empty() && f.reason.find(s) != std::string::npos;
            });
        if (reason_fatal) return LossKind::fatal_close;
    }
    if (why.error == error::certificate_rejected && !config_.retry_certificate_errors)
        return LossKind::certificate;
    return LossKind::transient;
}

bool Reconnector::schedule_retry(time_point now) {
    TETHER_ASSERT(!attempt_);
    if (pending_retry_after_) {
        backoff_.set_retry_after(*pending_retry_after_);
        pending_retry_after_.reset();
    }
    const auto d = backoff_.next_delay(rng_);
    if (!d) return false;
    timers_.set(Timer::retry, now + *d);
    return true;
}

void Reconnector::stop(StopReason r) noexcept {
    want_ = false;
    stop_ = r;
    timers_.clear(Timer::retry);
}

void Reconnector::enter_error(StopReason r) noexcept {
    error_ = true;
    want_ = false;
    stop_ = r;
    timers_.clear(Timer::retry);
}

// ---- state --------------------------------------------------------------------------

std::optional<std::uint64_t> Reconnector::current() const noexcept {
    if (attempt_) return attempt_->id;
    return std::nullopt;
}

bool Reconnector::socket_requested() const noexcept {
    return attempt_ && attempt_->socket != Socket::none;
}

ConnectionStatus Reconnector::status() const {
    ConnectionStatus s;
    s.online = online_;
    s.close_code = last_close_code_;
    s.close_reason = last_close_reason_;
    s.error = last_error_;
    if (error_) {
        s.state = ConnState::error;
        s.reason = stop_;
    } else if (!want_) {
        s.state = ConnState::disconnected;
        s.reason = stop_;
    } else if (!online_) {
        s.state = ConnState::disconnected;
        s.reason = StopReason::offline;
    } else if (attempt_ && attempt_->established) {
        s.state = ConnState::connected;
        s.reason = StopReason::none;
    } else {
        s.reason = StopReason::none;
        s.state = (connected_once_ || attempts_since_connect_ > 1 || timers_.armed(Timer::retry))
                      ? ConnState::reconnecting
                      : ConnState::connecting;
        // The attempt in progress, or the one about to be made.
        s.attempt = attempt_ ? outage_attempts_ : outage_attempts_ + 1;
        s.next_retry_at = timers_.get(Timer::retry);
    }
    return s;
}

// ---- transmits ----------------------------------------------------------------------

void Reconnector::send(std::string data, bool binary) {
    TETHER_ASSERT(attempt_ && attempt_->socket == Socket::open);
    push(Transmit{Transmit::Kind::send, attempt_->id, std::move(data), binary, 0, {}});
}

void Reconnector::push(Transmit t) {
    TETHER_ASSERT(transmits_.size() < kTransmitsMax);
    transmits_.push_back(std::move(t));
}

std::optional<Transmit> Reconnector::poll_transmit() {
    if (transmits_.empty()) return std::nullopt;
    Transmit t = std::move(transmits_.front());
    transmits_.pop_front();
    return t;
}

}  // namespace tether
