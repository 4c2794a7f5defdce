#include "sim/sim_server.hpp"

#include <tether/core/assert.hpp>
#include <tether/core/close_codes.hpp>
#include <tether/version.hpp>

#include <utility>
#include <variant>

namespace tether::sim {

void SimServer::send(std::uint64_t conn, const proto::Message& m) {
    out_.push_back(ServerOutput{ServerOutput::Kind::send,
                                conn,
                                std::make_shared<const std::string>(proto::encode(m)),
                                0,
                                {}});
}

void SimServer::close(std::uint64_t conn, std::uint16_t code, std::string reason) {
    out_.push_back(ServerOutput{ServerOutput::Kind::close, conn, {}, code, std::move(reason)});
    on_disconnect(now_, conn);
}

void SimServer::close_conn(std::uint64_t conn, std::uint16_t code, std::string reason) {
    if (conns_.count(conn)) close(conn, code, std::move(reason));
}

std::vector<ServerOutput> SimServer::take_outputs() {
    return std::exchange(out_, {});
}

std::vector<std::uint64_t> SimServer::connections() const {
    std::vector<std::uint64_t> v;
    for (const auto& [id, c] : conns_)
        v.push_back(id);
    return v;
}

void SimServer::on_open(time_point, std::uint64_t conn) {
    conns_[conn] = Conn{};
    send(conn, proto::Hello{config_.heartbeat.count(), config_.session_ttl.count(), "tether-sim",
                            std::string{version_string}, "sim-1"});
}

void SimServer::on_disconnect(time_point now, std::uint64_t conn) {
    auto it = conns_.find(conn);
    if (it == conns_.end()) return;
    if (it->second.session) {
        auto s = sessions_.find(*it->second.session);
        if (s != sessions_.end() && s->second.conn == conn) {
            s->second.conn.reset();
            s->second.detached_at = now;
        }
    }
    conns_.erase(it);
}

std::vector<std::uint64_t> SimServer::drop_all() {
    std::vector<std::uint64_t> ids = connections();
    for (auto id : ids)
        on_disconnect(now_, id);
    return ids;
}

void SimServer::drain(std::int64_t retry_after_ms) {
    for (auto id : connections()) {
        send(id, proto::Reconnect{"draining", retry_after_ms});
        close(id, close_code::going_away, "draining");
    }
}

SimServer::Stream& SimServer::stream(std::string_view room) {
    auto it = streams_.find(room);
    if (it == streams_.end()) it = streams_.emplace(std::string{room}, Stream{}).first;
    return it->second;
}

proto::StreamPosition SimServer::append(std::string_view room, std::string data,
                                        std::string publish_id) {
    Stream& s = stream(room);
    ++s.head;
    Entry e{s.head, std::move(data), std::move(publish_id)};
    archive_[{std::string{room}, s.epoch}].push_back(e);
    s.history.push_back(e);
    while (s.history.size() > config_.history_max)
        s.history.pop_front();
    const proto::StreamPosition pos{s.epoch, s.head};
    for (const auto& [id, c] : conns_) {
        if (!c.rooms.count(room)) continue;
        send(id, proto::Event{std::string{room}, pos, s.history.back().data});
        if (sloppy_overlap > 0 && ++live_sent_ % 7 == 0)
            send(id, proto::Event{std::string{room}, pos, s.history.back().data});
    }
    return pos;
}

proto::StreamPosition SimServer::publish_backend(std::string_view room, std::string data) {
    return append(room, std::move(data), {});
}

void SimServer::lose_history(std::string_view room) {
    Stream& s = stream(room);
    ++s.epoch;
    s.head = 0;
    s.history.clear();
    // The dedupe window went with the store.
    for (auto it = dedupe_.begin(); it != dedupe_.end();)
        it = it->second.room == room ? dedupe_.erase(it) : std::next(it);
}

void SimServer::join(std::uint64_t conn, const std::string& room,
                     std::optional<proto::StreamPosition> since) {
    if (forbidden_rooms.count(room)) {
        send(conn, proto::JoinError{room, std::string{proto::codes::not_permitted},
                                    "room is closed to you", true});
        return;
    }
    if (join_error_budget > 0) {
        --join_error_budget;
        send(conn,
             proto::JoinError{room, std::string{proto::codes::rate_limited}, "slow down", false});
        return;
    }
    Stream& s = stream(room);
    conns_[conn].rooms.insert(room);
    auto& sess = sessions_.at(*conns_[conn].session);
    sess.rooms.insert(room);
    const std::uint64_t first = s.history.empty() ? s.head + 1 : s.history.front().offset;
    const bool recoverable = !since || (since->epoch == s.epoch && since->offset + 1 >= first &&
                                        since->offset <= s.head);
    send(conn, proto::Joined{room, {s.epoch, s.head}, recoverable});
    if (since && recoverable) {
        const std::uint64_t from =
            since->offset > sloppy_overlap ? since->offset - sloppy_overlap : 0;
        for (const auto& e : s.history)
            if (e.offset > from) send(conn, proto::Event{room, {s.epoch, e.offset}, e.data});
    }
}

void SimServer::attach(time_point, std::uint64_t conn, const std::string& session_id) {
    auto& sess = sessions_.at(session_id);
    if (sess.conn && *sess.conn != conn && conns_.count(*sess.conn)) {
        // The session moved to a new connection: the old one is stale.
        close(*sess.conn, close_code::unknown_error, "session resumed elsewhere");
    }
    sess.conn = conn;
    conns_[conn].session = session_id;
}

void SimServer::on_frame(time_point now, std::uint64_t conn, std::string_view text) {
    auto cit = conns_.find(conn);
    if (cit == conns_.end()) return;
    auto res = proto::decode(text);
    if (!res) return close(conn, res.error().close_code(), res.error().message());
    proto::Message& msg = *res;
    const bool identified = cit->second.session.has_value();
    if (!identified && !std::holds_alternative<proto::Identify>(msg) &&
        !std::holds_alternative<proto::Resume>(msg) &&
        !std::holds_alternative<proto::Heartbeat>(msg))
        return close(conn, close_code::not_authenticated, "not authenticated");

    if (auto* m = std::get_if<proto::Identify>(&msg)) {
        if (identified)
            return close(conn, close_code::already_authenticated, "already authenticated");
        if (reject_identify || m->token.rfind("tok-", 0) != 0)
            return close(conn, close_code::authentication_failed, "authentication failed");
        Session s;
        s.id = "s" + std::to_string(next_session_++);
        s.resume_token = "rt-" + s.id + "-" + std::to_string(conn * 7919);
        const auto dash = m->token.find('-', 4);
        s.user = "user-" + m->token.substr(4, dash - 4);
        sessions_[s.id] = s;
        attach(now, conn, s.id);
        send(conn, proto::Ready{s.id, s.resume_token, s.user});
    } else if (auto* r = std::get_if<proto::Resume>(&msg)) {
        if (identified)
            return close(conn, close_code::already_authenticated, "already authenticated");
        auto it = sessions_.find(r->session_id);
        const bool expired = it != sessions_.end() && !it->second.conn &&
                             now - it->second.detached_at > config_.session_ttl;
        if (it == sessions_.end() || expired || it->second.resume_token != r->resume_token) {
            if (expired) sessions_.erase(it);
            send(conn, proto::InvalidSession{false});
            return;
        }
        attach(now, conn, r->session_id);
        it->second.rooms.clear();
        send(conn, proto::Resumed{r->session_id, {}});  // no rotation: the older-server path
        for (const auto& rp : r->rooms)
            join(conn, rp.room, rp.position);
    } else if (auto* h = std::get_if<proto::Heartbeat>(&msg)) {
        send(conn, proto::HeartbeatAck{h->ts});
    } else if (auto* j = std::get_if<proto::Join>(&msg)) {
        join(conn, j->room, j->since);
    } else if (auto* l = std::get_if<proto::Leave>(&msg)) {
        cit->second.rooms.erase(l->room);
        sessions_.at(*cit->second.session).rooms.erase(l->room);
    } else if (auto* p = std::get_if<proto::Publish>(&msg)) {
        const auto& user = sessions_.at(*cit->second.session).user;
        auto key = std::make_pair(user, p->id);
        if (auto d = dedupe_.find(key); d != dedupe_.end()) return send(conn, d->second);
        if (rate_limit) {
            return send(conn, proto::Nack{p->id, std::string{proto::codes::rate_limited},
                                          "too fast", rate_limit_retry_ms});
        }
        const auto pos = append(p->room, p->data, p->id);
        proto::Ack ack{p->id, p->room, pos.epoch, pos.offset};
        dedupe_[key] = ack;
        send(conn, ack);
    } else {
        close(conn, close_code::decode_error, "unexpected op");
    }
}

}  // namespace tether::sim
