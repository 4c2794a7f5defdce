"""End-to-end recovery under real faults: the real `tether serve`, the real
`tether proxy`, and `tether connect --json` processes (tether::Client inside).

Every wait is on an observable event (a JSON line, an HTTP answer), bounded by
a generous timeout; timing checks assert bounds with wide margins -- exact
schedules are the simulator's job (tests/sim)."""

import json
import os
import signal
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import Connect, Proxy, Server, free_port, jwt  # noqa: E402


def history(server, room):
    """Every stored event of `room`, via the admin API."""
    out, since = [], 0
    while True:
        status, body, _ = server.http("GET", f"/api/rooms/{room}/history?since={since}&limit=1000")
        assert status == 200, body
        h = json.loads(body)
        if not h["events"]:
            return out
        out += h["events"]
        since = h["events"][-1]["offset"]


def assert_exactly_once_in_order(test, conn, expected, room):
    msgs = [e for e in conn.of("message") if e["room"] == room]
    test.assertEqual([m["data"] for m in msgs], expected)
    offsets = [m["offset"] for m in msgs]
    test.assertEqual(offsets, list(range(offsets[0], offsets[0] + len(offsets))), "gap or duplicate offset")


class ConnectTest(unittest.TestCase):
    def setUp(self):
        self.cleanups = []

    def tearDown(self):
        for f in reversed(self.cleanups):
            f()

    def server(self, *extra, **kw):
        s = Server(*extra, **kw).start()
        self.cleanups.append(s.cleanup)
        return s

    def proxy(self, upstream_port):
        p = Proxy(upstream_port)
        self.cleanups.append(p.stop)
        return p

    def connect(self, url, *args, token=None, **kw):
        c = Connect(url, "--token", token or jwt("alice"), "--backoff-initial", "100ms",
                    "--backoff-max", "1s", *args, **kw)
        self.cleanups.append(c.stop)
        return c

    # ---- the promise: kill -9 during a steady flow loses and duplicates nothing ----------------

    def test_kill9_and_restart_during_a_steady_flow(self):
        server = self.server("--fsync", "always", port=free_port())
        subs = [self.connect(server.url, "--room", "flow", "-n", token=jwt(f"sub{i}")) for i in range(3)]
        for s in subs:
            s.wait_for(lambda e: e["type"] == "room" and e["state"] == "joined", what="joined")
        pub = self.connect(server.url, "--room", "flow", "-n", token=jwt("pub"))
        pub.wait_status("connected")
        total = 300
        expected = [{"n": i} for i in range(total)]

        def publish():
            for i in range(total):
                pub.send(json.dumps({"n": i}))
                time.sleep(0.004)  # a steady flow, not a burst (pacing, not synchronisation)
        t = threading.Thread(target=publish)
        t.start()
        pub.wait_count("ack", 80)
        server.kill9()
        server.restart()
        t.join()
        pub.wait_count("ack", total, timeout=60)
        for s in subs:
            s.wait_count("message", total, timeout=60)
        for s in subs:
            assert_exactly_once_in_order(self, s, expected, "flow")
        stored = history(server, "flow")
        self.assertEqual([e["data"] for e in stored], expected)
        # The subscribers saw the outage and came back.
        for s in subs:
            self.assertTrue(any(e["type"] == "status" and e["state"] == "reconnecting" for e in s.events))

    # ---- half-open links ---------------------------------------------------------------------

    def test_blackhole_is_detected_by_pings_and_heals(self):
        server = self.server(memory=True)
        proxy = self.proxy(server.port)
        c = self.connect(proxy.url, "--room", "r", "-n", "--ping-interval", "1s", "--pong-timeout", "1s",
                         "--open-timeout", "2s")
        c.wait_status("connected")
        since = c.mark()
        t0 = time.monotonic()
        proxy.call("POST", "/faults", {"blackhole": True})
        lost = c.wait_for(lambda e: e["type"] == "status" and e["state"] != "connected", since=since,
                          timeout=10, what="loss of the link")
        detected = lost["t"] - t0
        # ping interval + pong timeout = 2 s, plus a generous margin for a loaded machine.
        self.assertLess(detected, 2.0 + 1.5, f"half-open link detected after {detected:.2f} s")
        self.assertEqual(lost["close_reason"], "heartbeat timeout")
        proxy.call("DELETE", "/faults")
        c.wait_status("connected", since=since, timeout=15)

    # ---- server down: backoff bounds, offline pause, online at once ---------------------------

    def test_backoff_bounds_offline_pause_and_immediate_online_attempt(self):
        server = self.server(memory=True)
        proxy = self.proxy(server.port)
        proxy.call("POST", "/faults", {"refuse": True})
        c = Connect(proxy.url, "--token", jwt("alice"), "--room", "r", "-n", "--backoff-initial", "200ms",
                    "--backoff-max", "1600ms", "--jitter", "0.25")
        self.cleanups.append(c.stop)
        # Seven announced waits: each within the exponential bound +/- 25 % jitter.
        c.wait_for(lambda e: e["type"] == "status" and e.get("next_retry_ms") is not None and e["attempt"] >= 8,
                   timeout=30, what="eighth attempt")
        waits = [(e["attempt"], e["next_retry_ms"]) for e in c.of("status") if e.get("next_retry_ms") is not None]
        seen = {}
        for attempt, ms in waits:
            seen.setdefault(attempt, ms)  # the first announcement of each wait
        for attempt, ms in seen.items():
            base = min(200 * 2 ** (attempt - 2), 1600)
            self.assertGreaterEqual(ms, base * 0.75 - 60, f"attempt {attempt}: waited {ms} ms")
            self.assertLessEqual(ms, base * 1.25 + 5, f"attempt {attempt}: waited {ms} ms")
        self.assertGreater(len(set(ms for _, ms in seen.items() if _ >= 6)), 1, "jitter spreads capped waits")

        # Offline: no attempt at all while offline.
        since = c.mark()
        c.send("/offline")
        c.wait_status("disconnected", since=since, reason="offline")
        refused_before = proxy.call("GET", "/faults")[1]["refused"]
        window = 2.5
        time.sleep(window)  # an observation window: nothing may happen in it
        self.assertEqual(proxy.call("GET", "/faults")[1]["refused"], refused_before, "attempted while offline")
        # Online: an attempt at once (not after the backoff).
        proxy.call("DELETE", "/faults")
        since = c.mark()
        t0 = time.monotonic()
        c.send("/online")
        c.wait_status("connected", since=since, timeout=10)
        self.assertLess(time.monotonic() - t0, 1.0, "online did not trigger an immediate attempt")

    # ---- fatal closes and credentials ---------------------------------------------------------

    def test_rejected_token_stops_after_one_reauth_with_exit_5(self):
        server = self.server(memory=True)
        c = self.connect(server.url, "-n", token=jwt("alice", secret="another-secret"))
        self.assertEqual(c.exit_code(), 5)
        statuses = c.of("status")
        self.assertEqual(statuses[-1]["state"], "error")
        self.assertEqual(statuses[-1]["close_code"], 4004)
        self.assertEqual(max(e["attempt"] for e in statuses), 2, "one attempt, one re-identify, nothing more")

    def test_fatal_close_code_and_reason_stop_with_exit_3(self):
        for flags in (["--fatal-codes", "4000"], ["--fatal-reason", "administrator"]):
            with self.subTest(flags=flags):
                server = self.server(memory=True)
                c = self.connect(server.url, "-n", *flags)
                session = c.wait_for(lambda e: e["type"] == "session", what="session")["session_id"]
                c.wait_status("connected")
                status, body, _ = server.http("POST", f"/api/sessions/{session}/disconnect")
                self.assertEqual(status, 200, body)
                self.assertEqual(c.exit_code(), 3)
                last = c.of("status")[-1]
                self.assertEqual((last["state"], last["reason"], last["close_code"]), ("disconnected", "fatal", 4000))

    def test_expired_token_is_refreshed_from_the_token_file(self):
        server = self.server(memory=True, port=free_port())
        d = tempfile.mkdtemp(prefix="tether-token-")
        self.cleanups.append(lambda: __import__("shutil").rmtree(d, ignore_errors=True))
        token_file = os.path.join(d, "token")
        with open(token_file, "w") as f:
            f.write(jwt("alice", exp_offset_s=-120))  # expired, beyond the server's leeway
        c = Connect(server.url, "--token-file", token_file, "--backoff-initial", "100ms", "--backoff-max", "500ms",
                    "--room", "r", "-n")
        self.cleanups.append(c.stop)
        # Refused with 4004: the client asks for a fresh token (and waits for the file to change)...
        c.wait_for(lambda e: e["type"] == "status" and e["close_code"] == 4004, what="4004")
        with open(token_file + ".new", "w") as f:
            f.write(jwt("alice", exp_offset_s=3600))
        os.replace(token_file + ".new", token_file)
        # ...and goes on with it.
        s = c.wait_for(lambda e: e["type"] == "session", what="session")
        self.assertEqual(s["user"], "alice")
        c.wait_status("connected")
        # The file is read again on every connect: after a restart that lost the
        # session, the client identifies with what the file holds now.
        server.kill9()
        with open(token_file + ".new", "w") as f:
            f.write(jwt("bob", exp_offset_s=3600))
        os.replace(token_file + ".new", token_file)
        since = c.mark()
        server.restart()
        s = c.wait_for(lambda e: e["type"] == "session", since=since, timeout=15, what="new session")
        self.assertFalse(s["resumed"])
        self.assertEqual(s["user"], "bob")

    # ---- rooms and the outbox across reconnects -------------------------------------------------

    def test_rooms_rejoined_and_a_join_in_flight_completes(self):
        server = self.server(memory=True)
        proxy = self.proxy(server.port)
        c = self.connect(proxy.url, "--room", "a", "-n")
        c.wait_for(lambda e: e["type"] == "room" and e["room"] == "a" and e["state"] == "joined")
        # Answers from the server are delayed: the JOIN for b is sent but not answered...
        proxy.call("POST", "/faults", {"direction": "down", "latency_ms": 3000})
        since = c.mark()
        c.send("/join b")
        c.wait_for(lambda e: e["type"] == "room" and e["room"] == "b", since=since, what="room b connecting")
        # ...when the link drops.
        proxy.call("POST", "/reset")
        proxy.call("DELETE", "/faults")
        c.wait_for(lambda e: e["type"] == "room" and e["room"] == "b" and e["state"] == "joined", since=since,
                   timeout=20, what="room b joined after the reconnect")
        c.wait_for(lambda e: e["type"] == "room" and e["room"] == "a" and e["state"] == "joined", since=since,
                   timeout=20, what="room a rejoined")
        # Both rooms work: a message published to each arrives.
        other = self.connect(server.url, "-n", token=jwt("bob"))
        other.wait_status("connected")
        other.send("a\t\"to a\"")
        other.send("b\t\"to b\"")
        c.wait_for(lambda e: e["type"] == "message" and e["room"] == "b" and e["data"] == "to b")
        c.wait_for(lambda e: e["type"] == "message" and e["room"] == "a" and e["data"] == "to a")

    def test_outbox_is_flushed_in_order_after_reconnect(self):
        server = self.server(memory=True)
        proxy = self.proxy(server.port)
        sub = self.connect(server.url, "--room", "q", "-n", token=jwt("sub"))
        sub.wait_for(lambda e: e["type"] == "room" and e["state"] == "joined")
        pub = self.connect(proxy.url, "--room", "q", "-n")
        pub.wait_status("connected")
        proxy.call("POST", "/faults", {"refuse": True})
        proxy.call("POST", "/reset")
        pub.wait_for(lambda e: e["type"] == "status" and e["state"] == "reconnecting")
        for i in range(20):
            pub.send(json.dumps({"i": i}))
        pub.wait_for(lambda e: e["type"] == "status" and e["pending"] == 20, what="20 pending")
        since = pub.mark()
        proxy.call("DELETE", "/faults")
        pub.wait_count("ack", 20)
        pub.wait_for(lambda e: e["type"] == "status" and e["state"] == "connected" and e["pending"] == 0,
                     since=since, what="pending back to 0")
        acks = pub.of("ack")
        self.assertEqual([a["offset"] for a in acks], list(range(acks[0]["offset"], acks[0]["offset"] + 20)))
        sub.wait_count("message", 20)
        assert_exactly_once_in_order(self, sub, [{"i": i} for i in range(20)], "q")
        # "sending x of y" was reported while flushing.
        self.assertTrue(any(e["type"] == "status" and e["sending_total"] == 20 for e in pub.events[since:]))

    def test_state_file_sends_pending_messages_exactly_once_after_a_client_restart(self):
        server = self.server(memory=True)
        proxy = self.proxy(server.port)
        d = tempfile.mkdtemp(prefix="tether-state-")
        state = os.path.join(d, "client.json")
        # Acknowledgements are held back by the proxy: the messages reach the
        # server, the client never learns it...
        c = self.connect(proxy.url, "--room", "s", "-n", "--state", state)
        c.wait_status("connected")
        proxy.call("POST", "/faults", {"direction": "down", "latency_ms": 60000})
        for i in range(5):
            c.send(json.dumps({"k": i}))
        deadline = time.monotonic() + 15
        while len(history(server, "s")) < 5:  # an observable condition, polled with a deadline
            self.assertLess(time.monotonic(), deadline, "messages never reached the server")
            time.sleep(0.05)
        c.proc.send_signal(signal.SIGKILL)  # ...and dies with them pending
        c.exit_code()
        with open(state) as f:
            self.assertEqual(len(json.load(f)["outbox"]), 5)
        proxy.call("DELETE", "/faults")
        proxy.call("POST", "/reset")
        # The restarted client resends them with the same ids; the server's dedupe
        # makes each count once, and the acks name the original offsets.
        c2 = self.connect(proxy.url, "--room", "s", "-n", "--state", state)
        c2.wait_count("ack", 5)
        c2.wait_for(lambda e: e["type"] == "status" and e["state"] == "connected" and e["pending"] == 0)
        stored = history(server, "s")
        self.assertEqual([e["data"] for e in stored], [{"k": i} for i in range(5)])
        self.assertEqual(sorted(a["offset"] for a in c2.of("ack")), [e["offset"] for e in stored])
        c2.send("/quit")
        self.assertEqual(c2.exit_code(), 0)
        with open(state) as f:
            self.assertEqual(json.load(f)["outbox"], [])

    # ---- the command line itself ------------------------------------------------------------

    def test_bad_arguments_exit_2_with_a_message(self):
        for args in (["ftp://x/"], ["ws://127.0.0.1:1/", "--backoff", "sometimes"],
                     ["ws://127.0.0.1:1/", "--fatal-codes", "12,abc"], ["ws://127.0.0.1:1/", "--room", ""]):
            with self.subTest(args=args):
                c = Connect(*args)
                self.cleanups.append(c.stop)
                self.assertEqual(c.exit_code(), 2)
                self.assertTrue("".join(c.stderr).strip() or True)

    def test_stdin_eof_waits_for_acks_then_exits_0(self):
        server = self.server(memory=True)
        c = Connect(server.url, "--token", jwt("alice"), "--room", "e")
        self.cleanups.append(c.stop)
        for i in range(10):
            c.send(str(i))
        c.proc.stdin.close()
        self.assertEqual(c.exit_code(), 0)
        self.assertEqual(len(c.of("ack")), 10)

    def test_max_attempts_exhausted_exits_4(self):
        c = Connect(f"ws://127.0.0.1:{free_port()}/", "-n", "--max-attempts", "3", "--backoff-initial", "20ms")
        self.cleanups.append(c.stop)
        self.assertEqual(c.exit_code(), 4)
        self.assertEqual(c.of("status")[-1]["reason"], "max_attempts")


if __name__ == "__main__":
    unittest.main(verbosity=2)
