#pragma once
// The one harness of the core tests: drives a sans-I/O client core
// (ClientCore or SocketCore) in virtual time, collects what it transmits and
// emits, and plays the link's side of a close. The per-core test files add
// their protocol on top.

#include <tether/core/error.hpp>
#include <tether/core/reconnector.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <string_view>
#include <variant>
#include <vector>

namespace tether::test {

template <class Core, class Event>
struct CoreHarness {
    template <class Config>
    explicit CoreHarness(Config c, time_point start) : core(std::move(c)), now(start) {}

    Core core;
    time_point now;
    std::vector<Transmit> tx;
    std::vector<Event> events;

    void drain() {
        while (auto t = core.poll_transmit())
            tx.push_back(std::move(*t));
        while (auto e = core.poll_event())
            events.push_back(std::move(*e));
    }
    /// Fires every timer up to now + d, in order, at its own time.
    void advance(duration d) {
        const auto end = now + d;
        while (fire_next(end)) {
        }
        now = end;
    }
    /// Fires the next timer due by `end`; false when there is none.
    bool fire_next(time_point end) {
        auto t = core.poll_timeout();
        if (!t || *t > end) return false;
        now = std::max(now, *t);
        core.handle_timeout(now);
        drain();
        return true;
    }
    /// Runs timers until a transmit satisfies `pred` (or `limit` passes);
    /// removes and returns it, with everything before it.
    template <class Pred>
    std::optional<Transmit> take_until(Pred pred, duration limit) {
        const auto end = now + limit;
        for (;;) {
            auto it = std::find_if(tx.begin(), tx.end(), pred);
            if (it != tx.end()) {
                Transmit t = std::move(*it);
                tx.erase(tx.begin(), it + 1);
                return t;
            }
            if (!fire_next(end)) return std::nullopt;
        }
    }
    /// The next transmit, running timers until one appears.
    Transmit next_tx(duration limit = std::chrono::seconds(60)) {
        auto t = take_until([](const Transmit&) { return true; }, limit);
        EXPECT_TRUE(t.has_value()) << "no transmit";
        return t.value_or(Transmit{});
    }
    /// The next open (what comes before it is dropped); returns its connection.
    std::uint64_t expect_open(duration limit = std::chrono::seconds(120)) {
        auto t =
            take_until([](const Transmit& x) { return x.kind == Transmit::Kind::open; }, limit);
        EXPECT_TRUE(t.has_value()) << "no open";
        return t ? t->conn : 0;
    }
    void open(std::uint64_t conn) {
        core.handle_open(now, conn);
        drain();
    }
    /// The link of `conn` ended: 1006 stands for a failure without a close
    /// frame (connection_lost), any other code for a received close frame.
    void closed(std::uint64_t conn, std::uint16_t code, std::string_view reason = {}) {
        core.handle_close(now, conn,
                          code == 1006
                              ? LinkClose::failed(error::connection_lost, std::string{reason})
                              : LinkClose::closed(code, std::string{reason}));
        drain();
    }
    void closed(std::uint64_t conn, const LinkClose& why) {
        core.handle_close(now, conn, why);
        drain();
    }
    const auto& status() const { return core.status().get(); }
    template <class E>
    std::vector<E> events_of() const {
        std::vector<E> out;
        for (const auto& e : events)
            if (auto* x = std::get_if<E>(&e)) out.push_back(*x);
        return out;
    }
};

}  // namespace tether::test
