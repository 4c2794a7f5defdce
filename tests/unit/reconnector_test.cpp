// The lifecycle both cores share (the Reconnector), run on both: the same
// scenario must give the same verdict in ClientCore and SocketCore.

#include <tether/core/client_core.hpp>
#include <tether/core/close_codes.hpp>
#include <tether/core/socket_core.hpp>

#include "core_harness.hpp"

#include <gtest/gtest.h>

using namespace std::chrono_literals;
using namespace tether;

namespace {

template <class Core>
struct Traits;
template <>
struct Traits<ClientCore> {
    using Event = ClientEvent;
    using Config = ClientConfig;
    static constexpr std::uint16_t fatal_code = 4013;  // fatal, no re-identify
};
template <>
struct Traits<SocketCore> {
    using Event = SocketEvent;
    using Config = SocketConfig;
    static constexpr std::uint16_t fatal_code = 4004;
};

template <class Core>
class Lifecycle : public ::testing::Test {
  protected:
    using H = test::CoreHarness<Core, typename Traits<Core>::Event>;
    static typename Traits<Core>::Config config() {
        typename Traits<Core>::Config c;
        c.backoff.jitter_ratio = 0;
        return c;
    }
    /// Connects and returns the first attempt's id, its socket open.
    static std::uint64_t first_open(H& h) {
        h.core.connect(h.now);
        h.drain();
        const auto c = h.expect_open();
        h.open(c);
        return c;
    }
};

using Cores = ::testing::Types<ClientCore, SocketCore>;
TYPED_TEST_SUITE(Lifecycle, Cores);

TYPED_TEST(Lifecycle, AFatalCloseFrameWinsOverTheResetThatFollowsIt) {
    typename TestFixture::H h{TestFixture::config(), from_ms(1'000)};
    const auto c = TestFixture::first_open(h);
    LinkClose why = LinkClose::closed(Traits<TypeParam>::fatal_code, "go away");
    why.error = error::connection_lost;  // reset before the close handshake ended
    h.closed(c, why);
    EXPECT_EQ(h.status().state, ConnState::disconnected);
    EXPECT_EQ(h.status().reason, StopReason::fatal);
    EXPECT_EQ(h.status().close_code, Traits<TypeParam>::fatal_code);
    EXPECT_FALSE(h.status().next_retry_at.has_value());  // no retry scheduled
    h.advance(60s);
    EXPECT_EQ(h.core.metrics().attempts, 1u);
}

TYPED_TEST(Lifecycle, AResetWithoutAFrameIsTransient) {
    typename TestFixture::H h{TestFixture::config(), from_ms(1'000)};
    const auto c = TestFixture::first_open(h);
    h.closed(c, LinkClose::failed(error::connection_lost, "reset"));
    EXPECT_EQ(h.status().state, ConnState::reconnecting);
    EXPECT_EQ(h.status().close_code, close_code::abnormal);
    EXPECT_EQ(h.status().error, error::connection_lost);
    EXPECT_TRUE(h.status().next_retry_at.has_value());
}

TYPED_TEST(Lifecycle, ACertificateFailureStopsUnlessRetriesAreAsked) {
    {
        typename TestFixture::H h{TestFixture::config(), from_ms(1'000)};
        h.core.connect(h.now);
        h.drain();
        const auto c = h.expect_open();
        h.closed(c, LinkClose::failed(error::certificate_rejected, "unknown issuer"));
        EXPECT_EQ(h.status().state, ConnState::disconnected);
        EXPECT_EQ(h.status().reason, StopReason::certificate);
        EXPECT_EQ(h.status().error, error::certificate_rejected);
        h.advance(60s);
        EXPECT_EQ(h.core.metrics().attempts, 1u);
        // A manual retry tries again (the certificate may have been fixed).
        h.core.retry_now(h.now);
        h.drain();
        EXPECT_EQ(h.core.metrics().attempts, 2u);
    }
    auto cfg = TestFixture::config();
    cfg.retry_certificate_errors = true;
    typename TestFixture::H h{cfg, from_ms(1'000)};
    h.core.connect(h.now);
    h.drain();
    h.closed(h.expect_open(), LinkClose::failed(error::certificate_rejected, "unknown issuer"));
    EXPECT_EQ(h.status().state, ConnState::reconnecting);
    h.expect_open();  // the next attempt comes by itself
}

TYPED_TEST(Lifecycle, AStaleSocketIsAbortedAndItsCloseIgnored) {
    typename TestFixture::H h{TestFixture::config(), from_ms(1'000)};
    const auto c = TestFixture::first_open(h);
    h.core.close(h.now);
    h.drain();
    const auto before = h.status();
    h.core.handle_open(h.now, c + 7);  // a socket the core never asked for
    h.drain();
    ASSERT_FALSE(h.tx.empty());
    EXPECT_EQ(h.tx.back().kind, Transmit::Kind::abort);
    EXPECT_EQ(h.tx.back().conn, c + 7);
    h.closed(c + 7, LinkClose::closed(Traits<TypeParam>::fatal_code, "stale"));
    EXPECT_EQ(h.status(), before);
}

TYPED_TEST(Lifecycle, TheCloseHandshakeIsBoundedByTheTeardownTimeout) {
    auto cfg = TestFixture::config();
    cfg.close_timeout = 2s;
    typename TestFixture::H h{cfg, from_ms(1'000)};
    const auto c = TestFixture::first_open(h);
    h.core.close(h.now);
    h.drain();
    const auto close =
        h.take_until([](const Transmit& t) { return t.kind == Transmit::Kind::close; }, 0s);
    ASSERT_TRUE(close);
    EXPECT_EQ(close->conn, c);
    const auto t0 = h.now;
    const auto abort =
        h.take_until([](const Transmit& t) { return t.kind == Transmit::Kind::abort; }, 10s);
    ASSERT_TRUE(abort);  // the peer never answered: torn down
    EXPECT_EQ(abort->conn, c);
    EXPECT_EQ(h.now - t0, 2s);
}

}  // namespace
