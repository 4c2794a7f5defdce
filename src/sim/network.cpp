#include "sim/network.hpp"

#include <tether/core/close_codes.hpp>

#include <cstdlib>
#include <set>

namespace tether::sim {
namespace {

/// What the client's link reports: 1006 is a failure without a close frame.
LinkClose link_close(std::uint16_t code, std::string reason) {
    if (code == close_code::abnormal) return LinkClose::failed(error::connection_lost, reason);
    return LinkClose::closed(code, std::move(reason));
}

}  // namespace

duration Network::latency() {
    const auto base = base_latency_.count();
    auto d = base + static_cast<std::int64_t>(
                        sched_.rng().uniform(static_cast<std::uint64_t>(base / 2 + 1)));
    if (sched_.now() < slow_until) d *= 40;
    return duration{d};
}

std::optional<std::uint64_t> Network::global_of(std::size_t client, std::uint64_t local) const {
    auto it = ids_.find({client, local});
    if (it == ids_.end()) return std::nullopt;
    return it->second;
}

const Link* Network::link(std::uint64_t global) const {
    auto it = links_.find(global);
    return it == links_.end() ? nullptr : &it->second;
}

std::vector<std::uint64_t> Network::alive_links(std::size_t client) const {
    std::vector<std::uint64_t> out;
    for (const auto& [id, l] : links_)
        if (l.client == client && l.client_alive && l.state != Link::State::closed)
            out.push_back(id);
    return out;
}

void Network::open(std::size_t client, std::uint64_t local) {
    const auto id = next_global_++;
    ids_[{client, local}] = id;
    Link& l = links_[id];
    l.client = client;
    l.local = local;
    sched_.trace("client %zu: open conn#%llu", client, static_cast<unsigned long long>(id));
    if (!server_up || sched_.now() < refuse_until) {
        l.state = Link::State::closed;
        if (hang_connects) return;  // the SYN goes nowhere; the open timeout must fire
        sched_.at(sched_.now() + latency(), [this, id] {
            Link& lk = links_[id];
            if (!lk.client_alive) return;
            lk.client_alive = false;
            sched_.trace("net: conn#%llu refused", static_cast<unsigned long long>(id));
            clients_[lk.client]->link_closed(
                lk.local, LinkClose::failed(error::connect_failed, "connection refused"));
        });
        return;
    }
    const auto one_way = latency();
    l.s2c_last = sched_.now() + 2 * one_way;
    sched_.at(sched_.now() + one_way, [this, id] {
        Link& lk = links_[id];
        if (lk.state != Link::State::connecting || !server_up) return;
        lk.state = Link::State::open;
        server_.on_open(sched_.now(), id);
        drain_server();
    });
    sched_.at(sched_.now() + 2 * one_way, [this, id] {
        Link& lk = links_[id];
        if (lk.state == Link::State::closed || !lk.client_alive) return;
        clients_[lk.client]->link_opened(lk.local);
    });
}

void Network::transmit(std::size_t client, Transmit& t) {
    if (t.kind == Transmit::Kind::open) return open(client, t.conn);
    const auto g = global_of(client, t.conn);
    if (!g) return;  // a socket the network never saw
    const auto id = *g;
    Link& l = links_[id];
    switch (t.kind) {
        case Transmit::Kind::open:  // handled above
        case Transmit::Kind::ping:  // the tether core never pings at the WebSocket level
            return;
        case Transmit::Kind::send: {
            if (l.state != Link::State::open) return;  // lost on the wire
            l.c2s_last = std::max(l.c2s_last, sched_.now() + latency());
            sched_.at(l.c2s_last, [this, id, text = std::move(t.data)] {
                if (links_[id].state != Link::State::open) return;
                if (std::getenv("SIMDBG")) sched_.trace("c2s %s", text.c_str());
                server_.on_frame(sched_.now(), id, text);
                drain_server();
            });
            return;
        }
        case Transmit::Kind::close:
        case Transmit::Kind::abort: {
            const bool is_close = t.kind == Transmit::Kind::close;
            sched_.trace("client %zu: %s conn#%llu %u %s", client, is_close ? "close" : "abort",
                         static_cast<unsigned long long>(id), t.code, t.reason.c_str());
            const auto prev = l.state;
            l.state = Link::State::closed;
            if (!is_close) l.client_alive = false;
            if (prev == Link::State::open) {
                sched_.at(sched_.now() + latency(), [this, id] {
                    server_.on_disconnect(sched_.now(), id);
                    drain_server();
                });
                if (is_close) {
                    sched_.at(std::max(l.s2c_last, sched_.now() + 2 * latency()),
                              [this, id, code = t.code] {
                                  Link& lk = links_[id];
                                  if (!lk.client_alive) return;
                                  lk.client_alive = false;
                                  clients_[lk.client]->link_closed(
                                      lk.local, LinkClose::closed(code, "close echoed"));
                              });
                }
            } else if (is_close && prev != Link::State::half_open) {
                l.client_alive = false;
            }
            // Half-open: the close frame is lost; the client must tear down by itself.
            return;
        }
    }
}

void Network::drain_server() {
    std::set<std::uint64_t> wrote;
    for (auto& o : server_.take_outputs()) {
        auto it = links_.find(o.conn);
        if (it == links_.end() || it->second.state != Link::State::open) continue;
        Link& l = it->second;
        l.s2c_last = std::max(l.s2c_last, sched_.now() + latency());
        const auto id = o.conn;
        if (o.kind == ServerOutput::Kind::send) {
            wrote.insert(id);
            sched_.at(l.s2c_last, [this, id, text = o.text()] {
                // Data sent before an orderly close still arrives (it precedes the FIN).
                const Link& lk = links_[id];
                if (lk.cut || lk.state == Link::State::half_open || !lk.client_alive) return;
                if (std::getenv("SIMDBG")) sched_.trace("s2c %s", text.c_str());
                clients_[lk.client]->link_message(lk.local, text);
            });
        } else {
            l.state = Link::State::closed;
            sched_.trace("server: close conn#%llu %u %s", static_cast<unsigned long long>(id),
                         o.code, o.reason.c_str());
            sched_.at(l.s2c_last, [this, id, code = o.code, reason = o.reason] {
                Link& lk = links_[id];
                if (!lk.client_alive) return;
                lk.client_alive = false;
                clients_[lk.client]->link_closed(lk.local, link_close(code, reason));
            });
        }
    }
    // The socket drains after a round of latency: the server may write the
    // next replay page then (flow control).
    for (auto id : wrote) {
        sched_.at(sched_.now() + latency(), [this, id] {
            if (links_[id].state != Link::State::open || !server_up) return;
            server_.on_writable(sched_.now(), id);
            drain_server();
        });
    }
}

void Network::close_client_side(std::uint64_t id, std::uint16_t code, const char* reason) {
    Link& l = links_[id];
    if (l.state != Link::State::open) return;
    l.state = Link::State::closed;
    l.cut = true;
    server_.on_disconnect(sched_.now(), id);
    sched_.at(sched_.now() + latency(), [this, id, code, r = std::string{reason}] {
        Link& lk = links_[id];
        if (!lk.client_alive) return;
        lk.client_alive = false;
        clients_[lk.client]->link_closed(lk.local, link_close(code, r));
    });
}

void Network::half_open(std::uint64_t id) {
    Link& l = links_[id];
    if (l.state != Link::State::open) return;
    l.state = Link::State::half_open;
    l.cut = true;
}

}  // namespace tether::sim
