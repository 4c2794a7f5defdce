"""The bad-input matrix (issue #5): every attack against a running
`tether serve` gets its documented reaction (close code, HTTP status or NACK;
docs/SECURITY.md), and a well-behaved client on the same server keeps
receiving with no loss and no added latency beyond a bound while it runs.

The bystander publishes to its own room and waits for each EVENT before the
next (a round trip through the engine and the store); every attack case runs
between two checks of its log: nothing missing, nothing twice, in order, and
no round trip slower than LATENCY_BOUND_S."""

import asyncio
import json
import os
import socket
import sys
import time
import unittest
import urllib.request

import websockets

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import ADMIN_KEY, Client, Server, jwt  # noqa: E402

LATENCY_BOUND_S = 0.5  # generous: a loaded 2-core CI machine, sanitizer builds
HANDSHAKE_S = 2        # --handshake-timeout of the server under test


class Bystander:
    """A well-behaved client doing publish -> EVENT round trips."""

    def __init__(self, server):
        self.server = server
        self.rtts = []
        self.received = []
        self.sent = 0
        self.stop = False
        self.error = None

    async def run(self):
        try:
            c = await Client.open(self.server)
            await c.identify("bystander")
            await c.send("JOIN", room="steady")
            await c.expect("JOINED")
            while not self.stop:
                self.sent += 1
                t0 = time.monotonic()
                await c.send("PUBLISH", room="steady", id=f"b{self.sent}", data={"n": self.sent})
                while True:
                    m = await c.recv(timeout=10)
                    if m["op"] == "EVENT":
                        self.received.append(m["d"]["data"]["n"])
                        break
                    if m["op"] == "HEARTBEAT":
                        continue
                self.rtts.append(time.monotonic() - t0)
                # 10 publishes/s: within the server's --publish-rate 20 (a round
                # trip takes about a millisecond on loopback).
                await asyncio.sleep(0.1)
            await c.close()
        except Exception as e:  # surfaced by check()
            self.error = e

    def mark(self):
        return len(self.rtts)

    def check(self, test, since, case):
        test.assertIsNone(self.error, f"{case}: the bystander failed: {self.error!r}")
        test.assertEqual(self.received, list(range(1, len(self.received) + 1)),
                         f"{case}: the bystander lost or reordered events")
        window = self.rtts[since:]
        test.assertGreater(len(window), 0, f"{case}: the bystander made no progress")
        test.assertLess(max(window), LATENCY_BOUND_S, f"{case}: round trip {max(window):.3f} s")


def raw_exchange(port, payload, read_timeout=5.0):
    """Sends bytes on a fresh TCP connection; returns (bytes received, closed by the server)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=read_timeout)
    try:
        if payload:
            s.sendall(payload)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data, True
            data += chunk
    except (socket.timeout, TimeoutError):
        return data, False
    except ConnectionResetError:
        return data, True
    finally:
        s.close()


class BadInputMatrix(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        self.server = Server("--handshake-timeout", f"{HANDSHAKE_S}s", "--max-connections", "40",
                             "--publish-rate", "20", "--publish-burst", "20", memory=True)
        self.server.start()
        self.by = Bystander(self.server)
        self.by_task = asyncio.create_task(self.by.run())
        while self.by.mark() < 5 and self.by.error is None:
            await asyncio.sleep(0.05)
        self.observed = []

    async def asyncTearDown(self):
        self.by.stop = True
        await asyncio.wait_for(self.by_task, 15)
        self.server.cleanup()
        # The observed reactions, for the closing note (python3 badinput_test.py -v).
        for case, reaction in self.observed:
            print(f"  {case:<55} -> {reaction}")

    async def case(self, name, attack):
        """Runs one attack between two bystander checks; returns its reaction."""
        since = self.by.mark()
        reaction = await attack()
        # Let the bystander make progress after the attack too.
        target = self.by.mark() + 3
        deadline = time.monotonic() + 10
        while self.by.mark() < target and time.monotonic() < deadline and self.by.error is None:
            await asyncio.sleep(0.02)
        self.by.check(self, since, name)
        self.observed.append((name, reaction))
        return reaction

    async def ws_close_code(self, frames, subprotocols=("tether.v1",), identify=None, **kw):
        c = await Client.open(self.server, subprotocols=subprotocols, **kw)
        try:
            if identify:
                await c.identify(identify)  # reads HELLO too
            elif subprotocols:
                await c.expect("HELLO")
        except websockets.exceptions.ConnectionClosed as e:  # refused before HELLO
            return f"close {e.rcvd.code} {e.rcvd.reason}".strip()
        for f in frames:
            await c.ws.send(f)
        code, reason = await c.closed_with()
        return f"close {code} {reason}".strip()

    # ---- HTTP and WebSocket layer ------------------------------------------------------------

    async def test_http_and_websocket_layer(self):
        port = self.server.port

        async def garbage():
            data, closed = await asyncio.to_thread(raw_exchange, port, b"\x16\x03\x01garbage\r\n\r\n" * 4)
            self.assertTrue(closed)
            self.assertTrue(data == b"" or data.startswith(b"HTTP/1.1 400"), data[:40])
            return "connection closed" + (" after 400" if data else "")
        await self.case("garbage bytes instead of an HTTP upgrade", garbage)

        async def no_upgrade():
            data, _ = await asyncio.to_thread(raw_exchange, port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            self.assertTrue(data.startswith(b"HTTP/1.1 404"), data[:40])
            return "HTTP 404"
        await self.case("HTTP without upgrade", no_upgrade)

        async def no_subprotocol():
            r = await self.ws_close_code([], subprotocols=None)
            self.assertTrue(r.startswith("close 4012"), r)
            return r
        await self.case("missing subprotocol", no_subprotocol)

        async def wrong_subprotocol():
            try:
                r = await self.ws_close_code([], subprotocols=("chat.v9",))
            except websockets.exceptions.InvalidHandshake as e:
                r = f"handshake refused: {e}"
            self.assertTrue(r.startswith("close 4012"), r)
            return r
        await self.case("wrong subprotocol", wrong_subprotocol)

        async def oversized():
            c = await Client.open(self.server, max_size=None)
            await c.expect("HELLO")
            try:
                await c.ws.send("x" * (2 << 20))
                code = (await c.closed_with())[0]
            except websockets.exceptions.ConnectionClosed as e:
                code = e.rcvd.code if e.rcvd else None
            self.assertEqual(code, 1009)
            return "close 1009"
        await self.case("oversized frame (2 MiB)", oversized)

        async def bad_utf8():
            c = await Client.open(self.server)
            await c.expect("HELLO")
            # websockets refuses to send invalid UTF-8 as text; write the frame by hand.
            frame = bytes([0x81, 0x80 | 4]) + b"\x00\x00\x00\x00" + b"\xff\xfe\xfd\xfc"
            c.ws.transport.write(frame)
            code = (await c.closed_with())[0]
            self.assertEqual(code, 1007)
            return "close 1007"
        await self.case("invalid UTF-8 in a text frame", bad_utf8)

        async def binary():
            r = await self.ws_close_code([b"\x00\x01\x02"])
            self.assertTrue(r.startswith("close 4002"), r)
            return r
        await self.case("binary frame where text is expected", binary)

        async def fragments():
            c = await Client.open(self.server, max_size=None)
            await c.expect("HELLO")

            async def many():
                for _ in range(3000):
                    yield "x" * 1024  # 3 MiB in 1 KiB fragments of one message
            try:
                await c.ws.send(many())
                code = (await c.closed_with())[0]
            except websockets.exceptions.ConnectionClosed:
                await c.ws.wait_closed()
                code = c.ws.close_code  # the server's close frame, read after our send failed
            self.assertIn(code, (1009, 1006))
            return f"close {code}" + (" (the server closed while we were still writing)" if code == 1006 else "")
        await self.case("fragmented flood (3 MiB in 3,000 fragments)", fragments)

    # ---- protocol layer ----------------------------------------------------------------------

    async def test_protocol_layer(self):
        cases = [
            ("invalid JSON", ["{nope"], None, 4002),
            ("deep nesting (10,000 levels)", ["[" * 10000 + "]" * 10000], None, 4002),
            ("huge string (900 KiB token)", [json.dumps({"op": "IDENTIFY", "d": {"token": "t" * 900_000}})], None, 4002),
            ("unknown op", [json.dumps({"op": "SUBSCRIBE", "d": {}})], None, 4001),
            ("JOIN before IDENTIFY", [json.dumps({"op": "JOIN", "d": {"room": "x"}})], None, 4003),
            ("PUBLISH before IDENTIFY", [json.dumps({"op": "PUBLISH", "d": {"room": "x", "id": "1", "data": 1}})], None, 4003),
            ("second IDENTIFY", [json.dumps({"op": "IDENTIFY", "d": {"token": jwt("x")}})], "attacker", 4005),
            ("server-only op from a client", [json.dumps({"op": "EVENT", "d": {"room": "x", "epoch": 1, "offset": 1, "data": 1}})], None, 4001),
        ]
        for name, frames, identify, code in cases:
            async def attack(frames=frames, identify=identify, code=code):
                r = await self.ws_close_code(frames, identify=identify, max_size=None)
                self.assertTrue(r.startswith(f"close {code}"), r)
                return r
            await self.case(name, attack)

    # ---- sessions and tokens -----------------------------------------------------------------

    async def test_sessions_and_tokens(self):
        # A victim with a live session.
        victim = await Client.open(self.server)
        _, ready = await victim.identify("victim")

        async def resume(session_id, token):
            c = await Client.open(self.server)
            await c.expect("HELLO")
            await c.send("RESUME", session_id=session_id, resume_token=token, rooms=[])
            m = await c.recv()
            await c.abort()
            return m

        for name, sid, tok in [
            ("RESUME with a forged session id", "f" * 32, "0" * 64),
            ("RESUME of another user's session, wrong token", ready["session_id"], "0" * 64),
            ("RESUME with a truncated resume token", ready["session_id"], ready["resume_token"][:-1]),
        ]:
            async def attack(sid=sid, tok=tok):
                m = await resume(sid, tok)
                self.assertEqual(m["op"], "INVALID_SESSION")
                self.assertFalse(m["d"]["resumable"])
                return "INVALID_SESSION (not resumable), same answer as for an unknown session"
            await self.case(name, attack)
        # A resume token works once: a legitimate RESUME gets a fresh one, and
        # the old one replayed later (a copied log, a stolen backup) is refused.
        owner = await Client.open(self.server)
        _, first = await owner.identify("owner")
        await owner.abort()
        again = await Client.open(self.server)
        await again.expect("HELLO")
        await again.send("RESUME", session_id=first["session_id"], resume_token=first["resume_token"], rooms=[])
        resumed = await again.expect("RESUMED")
        self.assertTrue(resumed["resume_token"] and resumed["resume_token"] != first["resume_token"])

        async def replayed():
            m = await resume(first["session_id"], first["resume_token"])
            self.assertEqual(m["op"], "INVALID_SESSION")
            return "INVALID_SESSION: each RESUMED carries a new token, the used one is dead"
        await self.case("RESUME with a replayed (already used) resume token", replayed)
        await again.close()

        # The victim was never disturbed.
        await victim.send("HEARTBEAT", ts=5)
        while True:  # expect() skips acks of the bystander's kind; read it directly
            m = await victim.recv()
            if m["op"] == "HEARTBEAT_ACK":
                break
        self.assertEqual(m["d"]["ts"], 5)

        good, evil = jwt("alice").split("."), jwt("mallory").split(".")
        for name, token in [
            ("expired token", jwt("u", exp_offset_s=-120)),
            ("token signed with another secret", jwt("u", secret="another-secret")),
            ("alg: none", jwt("u", alg="none", sign=False)),
            ("tampered payload", f"{good[0]}.{evil[1]}.{good[2]}"),
            ("garbage token", "not-a-jwt"),
        ]:
            async def attack(token=token):
                r = await self.ws_close_code([json.dumps({"op": "IDENTIFY", "d": {"token": token}})])
                self.assertTrue(r.startswith("close 4004"), r)
                return r
            await self.case(name, attack)
        await victim.close()

    # ---- resource abuse ----------------------------------------------------------------------

    async def test_resource_abuse(self):
        async def huge_room():
            c = await Client.open(self.server, max_size=None)
            await c.identify("roomy")
            await c.send("JOIN", room="r" * 150)
            m = await c.expect("JOIN_ERROR")
            self.assertEqual(m["code"], "bad_room")
            await c.close()
            return "JOIN_ERROR bad_room"
        await self.case("huge room name (150 bytes)", huge_room)

        async def thousands_of_joins():
            c = await Client.open(self.server)
            await c.identify("joiner")
            for i in range(2000):
                await c.send("JOIN", room=f"j{i}")
            codes = {}
            for _ in range(2000):
                m = await c.recv()
                key = m["op"] if m["op"] == "JOINED" else m["d"]["code"]
                codes[key] = codes.get(key, 0) + 1
            self.assertLessEqual(codes.get("JOINED", 0), 100)
            self.assertEqual(sum(codes.values()), 2000)
            self.assertLessEqual(set(codes) - {"JOINED"}, {"too_many_rooms", "rate_limited"})
            await c.close()
            return ", ".join(f"{n} {k}" for k, n in sorted(codes.items()))
        await self.case("2,000 joins on one connection", thousands_of_joins)

        async def publish_flood():
            c = await Client.open(self.server)
            await c.identify("flooder")
            for i in range(400):
                await c.send("PUBLISH", room="flood", id=f"f{i}", data=i)
            nacks = acks = 0
            code = None
            try:
                while True:
                    m = await c.recv(timeout=5)
                    if m["op"] == "NACK":
                        self.assertEqual(m["d"]["code"], "rate_limited")
                        self.assertGreater(m["d"]["retry_after_ms"], 0)
                        nacks += 1
                    elif m["op"] == "ACK":
                        acks += 1
            except websockets.exceptions.ConnectionClosed as e:
                code = e.rcvd.code if e.rcvd else None
            self.assertEqual(code, 4008)
            self.assertGreaterEqual(acks, 20)  # the burst (plus what refilled meanwhile)
            self.assertLess(acks, 40)
            return f"{acks} ACK (burst), {nacks} NACK rate_limited, then close 4008"
        await self.case("publish flood (400 pipelined)", publish_flood)

        async def huge_replay():
            # A big room, then a JOIN from offset 0: the replay comes in pages.
            for i in range(35):  # within the admin API's burst
                status, body, _ = self.server.http("POST", "/api/rooms/big/publish", json.dumps({"i": i, "pad": "p" * 8000}))
                self.assertEqual(status, 200, body)
            c = await Client.open(self.server, max_size=None)
            await c.identify("replayer")
            await c.send("JOIN", room="big", since={"epoch": json.loads(self.server.http("GET", "/api/rooms/big/history?limit=1")[1])["epoch"], "offset": 0})
            got = 0
            while got < 35:
                m = await c.recv()
                if m["op"] == "EVENT":
                    got += 1
            await c.close()
            return "35 events (280 KiB) replayed in pages of at most 256 KiB"
        await self.case("replay request for a huge range", huge_replay)

    # ---- slow and half-open connections --------------------------------------------------------

    async def test_slow_and_half_open_connections(self):
        port = self.server.port

        async def slowloris():
            def run():
                s = socket.create_connection(("127.0.0.1", port), timeout=HANDSHAKE_S + 5)
                t0 = time.monotonic()
                try:
                    for b in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
                        s.sendall(bytes([b]))
                        time.sleep(1.0)  # the attack itself: one byte per second
                        if time.monotonic() - t0 > HANDSHAKE_S + 3:
                            return None
                except (BrokenPipeError, ConnectionResetError):
                    return time.monotonic() - t0
                finally:
                    s.close()
                return None
            took = await asyncio.to_thread(run)
            self.assertIsNotNone(took, "slowloris connection was never closed")
            self.assertLess(took, HANDSHAKE_S + 2.5)
            return f"closed after {took:.1f} s (handshake timeout {HANDSHAKE_S} s)"
        await self.case("slowloris (one byte per second)", slowloris)

        async def silent_tcp():
            t0 = time.monotonic()
            data, closed = await asyncio.to_thread(raw_exchange, port, b"", HANDSHAKE_S + 5)
            self.assertTrue(closed)
            return f"closed after {time.monotonic() - t0:.1f} s"
        await self.case("TCP connection that never sends a request", silent_tcp)

        async def never_identify():
            t0 = time.monotonic()
            r = await self.ws_close_code([])
            self.assertTrue(r.startswith("close 4000 handshake timeout"), r)
            return f"{r} after {time.monotonic() - t0:.1f} s"
        await self.case("WebSocket that never identifies", never_identify)

        async def beyond_limit():
            extra = []
            try:
                for _ in range(45):
                    c = await Client.open(self.server)
                    extra.append(c)
                self.fail("more connections than --max-connections were accepted")
            except websockets.exceptions.InvalidStatusCode as e:
                self.assertEqual(e.status_code, 503)
            finally:
                for c in extra:
                    await c.abort()
            return "HTTP 503 beyond --max-connections"
        await self.case("connections beyond the limit", beyond_limit)

    # ---- admin API -----------------------------------------------------------------------------

    async def test_admin_api(self):
        async def call(path, key=ADMIN_KEY, method="GET"):
            return await asyncio.to_thread(self.server.http, method, path, None, key)

        for name, path, key, want in [
            ("admin API without a key", "/api/sessions", None, 401),
            ("admin API with a wrong key", "/api/sessions", "x" * 32, 401),
            ("path traversal in a room name", "/api/rooms/..%2F..%2Fetc%2Fpasswd/history", ADMIN_KEY, 200),
            ("control characters in a room name", "/api/rooms/a%00b/history", ADMIN_KEY, 400),
            ("oversized room parameter", "/api/rooms/" + "r" * 5000 + "/history", ADMIN_KEY, 400),
            ("oversized number parameter", "/api/rooms/a/history?limit=" + "9" * 40, ADMIN_KEY, 400),
            ("negative number parameter", "/api/rooms/a/history?since=-1", ADMIN_KEY, 400),
            ("too many path segments", "/api/" + "a/" * 20, ADMIN_KEY, 404),
        ]:
            async def attack(path=path, key=key, want=want):
                status, body, _ = await call(path, key)
                self.assertEqual(status, want, body)
                if want == 200:
                    self.assertEqual(json.loads(body)["events"], [])  # just a room that does not exist
                return f"HTTP {status}"
            await self.case(name, attack)


if __name__ == "__main__":
    unittest.main(verbosity=2)
