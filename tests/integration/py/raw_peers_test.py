"""`tether connect --raw` (tether::ReconnectingWebSocket) against third-party
WebSocket servers we did not write: Node `ws` (node/ws_server.js) and Python
`websockets` (ws_peer.py). Both peers want an auth message first; the tests
check what the peer received, in order, on every connection."""

import json
import os
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import Connect  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
AUTH = '{"op":"auth","key":"secret"}'


class Peer:
    """A peer server process: stdin commands, stdout JSON events."""

    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.events = []
        self.cv = threading.Condition()
        first = json.loads(self.proc.stdout.readline())
        assert first["event"] == "listening", first
        self.url = f"ws://127.0.0.1:{first['port']}/"
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            with self.cv:
                self.events.append(json.loads(line))
                self.cv.notify_all()

    def command(self, line):
        n = len(self.done())
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        self.wait_for(lambda: len(self.done()) > n, what=f"command {line}")

    def done(self):
        return [e for e in self.events if e["event"] == "done"]

    def wait_for(self, cond, timeout=15, what="condition"):
        deadline = time.monotonic() + timeout
        with self.cv:
            while not cond():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"peer: no {what} within {timeout} s; events: {self.events[-8:]}")
                self.cv.wait(min(left, 0.5))

    def messages(self, conn):
        with self.cv:
            return [e["data"] for e in self.events if e["event"] == "message" and e["conn"] == conn]

    def connections(self):
        with self.cv:
            return [e for e in self.events if e["event"] == "connection"]

    def conn(self, i):
        """The id of connection i, once the peer's log (read by another thread) shows it."""
        self.wait_for(lambda: len(self.connections()) > i, what=f"connection {i}")
        return self.connections()[i]["conn"]

    def stop(self):
        self.proc.kill()
        self.proc.wait(timeout=10)
        for f in (self.proc.stdin, self.proc.stdout):
            f.close()


class RawPeerTests:
    """Mixed into one TestCase per peer."""

    def setUp(self):
        self.peer = self.make_peer()
        self.cleanups = [self.peer.stop]

    def tearDown(self):
        for f in reversed(self.cleanups):
            f()

    def connect(self, *args):
        c = Connect(self.peer.url, "--backoff-initial", "100ms", "--backoff-max", "500ms", "-n", *args, raw=True)
        self.cleanups.append(c.stop)
        return c

    def test_auth_first_then_subscriptions_then_queue_on_every_connect(self):
        c = self.connect("--auth-message", AUTH, "--auth-expect", '"ok": true' if self.spaced else '"ok":true',
                         "--subscribe", "sub trades", "--subscribe", "sub orders", "--header", "X-Client: tether-test")
        c.wait_status("connected")
        c.send("echo first")
        c.wait_for(lambda e: e["type"] == "message" and e["data"] == "first", what="echo")
        self.peer.wait_for(lambda: len(self.peer.connections()) >= 1, what="the connection")
        conn1 = self.peer.connections()[0]
        self.assertEqual(conn1["headers"].get("x-client") or conn1["headers"].get("X-Client"), "tether-test")
        # The peer logs a message before answering it, but its log is read by another thread.
        self.peer.wait_for(lambda: len(self.peer.messages(conn1["conn"])) >= 4, what="4 messages")
        self.assertEqual(self.peer.messages(conn1["conn"]), [AUTH, "sub trades", "sub orders", "echo first"])

        # The link drops; messages sent meanwhile are queued and go out after auth and subscriptions.
        since = c.mark()
        self.peer.command("drop")
        c.wait_for(lambda e: e["type"] == "status" and e["state"] == "reconnecting", since=since)
        c.send("echo queued")
        c.wait_for(lambda e: e["type"] == "message" and e["data"] == "queued", since=since, what="queued echo")
        self.peer.wait_for(lambda: len(self.peer.connections()) >= 2, what="the second connection")
        conn2 = self.peer.connections()[1]["conn"]
        self.peer.wait_for(lambda: len(self.peer.messages(conn2)) >= 4, what="4 messages")
        self.assertEqual(self.peer.messages(conn2), [AUTH, "sub trades", "sub orders", "echo queued"])
        # The auth reply was consumed by the validator, not printed.
        self.assertFalse(any(e["type"] == "message" and '"auth"' in e["data"] for e in c.events))

    def test_rejected_auth_stops_with_exit_5(self):
        c = self.connect("--auth-message", '{"op":"auth","key":"wrong"}', "--auth-expect", "true")
        self.assertEqual(c.exit_code(), 5)
        self.peer.conn(0)
        self.assertEqual(len(self.peer.connections()), 1, "no retry after a rejected auth")

    def test_fatal_close_code_stops_with_exit_3(self):
        c = self.connect("--auth-message", AUTH, "--fatal-codes", "4404")
        c.wait_status("connected")
        self.peer.command("close 4404 go away")
        self.assertEqual(c.exit_code(), 3)
        last = c.of("status")[-1]
        self.assertEqual((last["reason"], last["close_code"], last["close_reason"]), ("fatal", 4404, "go away"))

    def test_non_fatal_close_reconnects(self):
        c = self.connect("--auth-message", AUTH)
        c.wait_status("connected")
        since = c.mark()
        self.peer.command("close 1012 restarting")
        c.wait_status("reconnecting", since=since)
        c.wait_status("connected", since=since)
        self.peer.wait_for(lambda: len(self.peer.connections()) == 2, what="second connection")

    def test_application_pings_are_answered_passively_and_not_printed(self):
        c = self.connect("--auth-message", AUTH, "--answer", "hb=hb-ack")
        c.wait_status("connected")
        self.peer.command("send hb")
        conn = self.peer.conn(0)
        self.peer.wait_for(lambda: "hb-ack" in self.peer.messages(conn), what="hb-ack")
        self.peer.command("send data")
        c.wait_for(lambda e: e["type"] == "message" and e["data"] == "data")
        self.assertFalse(any(e["type"] == "message" and e["data"] == "hb" for e in c.events))

    def test_app_message_liveness_with_a_pong_matcher(self):
        c = self.connect("--auth-message", AUTH, "--ping-mode", "app", "--ping-payload", "ping", "--pong-match",
                         "pong", "--ping-interval", "300ms", "--pong-timeout", "1s")
        c.wait_for(lambda e: e["type"] == "latency", what="a pong matched")
        conn = self.peer.conn(0)
        self.peer.wait_for(lambda: "ping" in self.peer.messages(conn), what="the app ping")
        self.assertFalse(any(e["type"] == "message" and e["data"] == "pong" for e in c.events))


class NodeWsPeer(RawPeerTests, unittest.TestCase):
    spaced = False

    def make_peer(self):
        return Peer(["node", os.path.join(HERE, "..", "node", "ws_server.js")])

    def test_unanswered_ws_pings_are_detected_and_the_link_replaced(self):
        # Only Node ws lets a server stop answering RFC 6455 pings.
        c = self.connect("--auth-message", AUTH, "--ping-interval", "500ms", "--pong-timeout", "500ms")
        c.wait_for(lambda e: e["type"] == "latency", what="a ws pong")
        since = c.mark()
        t0 = time.monotonic()
        self.peer.command("silence")
        lost = c.wait_for(lambda e: e["type"] == "status" and e["state"] == "reconnecting", since=since)
        self.assertLess(lost["t"] - t0, 1.0 + 1.5)
        self.assertEqual(lost["close_reason"], "pong timeout")
        self.peer.command("answer")
        c.wait_status("connected", since=since)


class PythonWebsocketsPeer(RawPeerTests, unittest.TestCase):
    spaced = True  # json.dumps writes '"ok": true'

    def make_peer(self):
        return Peer([sys.executable, os.path.join(HERE, "ws_peer.py")])


if __name__ == "__main__":
    unittest.main(verbosity=2)
