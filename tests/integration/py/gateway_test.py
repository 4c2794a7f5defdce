"""Integration tests: the real `tether serve` binary, real sockets, and a
client we did not write (Python `websockets`), speaking docs/PROTOCOL.md."""

import asyncio
import json
import os
import sys
import time
import unittest

import websockets

sys.path.insert(0, os.path.dirname(__file__))
from harness import ADMIN_KEY, Client, Server, jwt  # noqa: E402


class GatewayTest(unittest.IsolatedAsyncioTestCase):
    extra = ()

    async def asyncSetUp(self):
        self.server = Server(*self.extra).start()

    async def asyncTearDown(self):
        self.server.cleanup()

    async def connect_identified(self, user="alice"):
        c = await Client.open(self.server)
        hello, ready = await c.identify(user)
        return c, hello, ready

    async def test_identify_join_publish_ack_event(self):
        c, hello, ready = await self.connect_identified()
        self.assertGreater(hello["heartbeat_ms"], 0)
        self.assertEqual(ready["user"], "alice")
        self.assertGreaterEqual(len(ready["resume_token"]), 32)  # >= 128 bits, hex
        await c.send("JOIN", room="lobby")
        joined = await c.expect("JOINED")
        self.assertEqual((joined["offset"], joined["recovered"]), (0, True))
        await c.send("PUBLISH", room="lobby", id="m1", data={"text": "hi"})
        ack = await c.expect("ACK")
        self.assertEqual((ack["id"], ack["offset"], ack["epoch"]), ("m1", 1, joined["epoch"]))
        ev = await c.expect("EVENT")
        self.assertEqual((ev["offset"], ev["data"]), (1, {"text": "hi"}))
        await c.send("HEARTBEAT", ts=12345)
        self.assertEqual((await c.recv())["d"]["ts"], 12345)
        await c.close()

    async def test_resume_replays_missed_events_exactly_once_in_order(self):
        a, _, ready = await self.connect_identified("alice")
        await a.send("JOIN", room="r")
        epoch = (await a.expect("JOINED"))["epoch"]
        b, _, _ = await self.connect_identified("bob")
        for i in range(1, 6):
            await b.send("PUBLISH", room="r", id=f"b{i}", data=i)
            await b.expect("ACK")
        for i in range(1, 6):
            self.assertEqual((await a.expect("EVENT"))["offset"], i)
        await a.abort()  # the link drops; 20 events happen while away
        for i in range(6, 26):
            await b.send("PUBLISH", room="r", id=f"b{i}", data=i)
            await b.expect("ACK")
        a2 = await Client.open(self.server)
        await a2.expect("HELLO")
        await a2.send("RESUME", session_id=ready["session_id"], resume_token=ready["resume_token"],
                      rooms=[{"room": "r", "epoch": epoch, "offset": 5}])
        self.assertEqual((await a2.expect("RESUMED"))["session_id"], ready["session_id"])
        joined = await a2.expect("JOINED")
        self.assertEqual((joined["offset"], joined["recovered"]), (25, True))
        got = [(await a2.expect("EVENT"))["offset"] for _ in range(20)]
        self.assertEqual(got, list(range(6, 26)))
        await b.send("PUBLISH", room="r", id="b26", data=26)  # live after replay
        self.assertEqual((await a2.expect("EVENT"))["offset"], 26)
        # Nothing more: no duplicate of anything.
        with self.assertRaises(asyncio.TimeoutError):
            await a2.expect("EVENT", timeout=0.3)

    async def test_resume_refused_reveals_nothing(self):
        a, _, ready = await self.connect_identified("alice")
        await a.close()
        answers = []
        for sid, tok in [(ready["session_id"], "0" * 64), ("no-such-session", ready["resume_token"]),
                         (ready["session_id"], ready["resume_token"][:-1] + "x")]:
            c = await Client.open(self.server)
            await c.expect("HELLO")
            await c.send("RESUME", session_id=sid, resume_token=tok, rooms=[])
            answers.append(await c.recv())
            await c.close()
        self.assertEqual(answers, [{"op": "INVALID_SESSION", "d": {"resumable": False}}] * 3)

    async def test_history_positions(self):
        a, _, _ = await self.connect_identified()
        await a.send("JOIN", room="h")
        epoch = (await a.expect("JOINED"))["epoch"]
        a, _, _ = await self.connect_identified("publisher")  # not subscribed: only ACKs come back
        for i in range(1, 4):
            await a.send("PUBLISH", room="h", id=f"h{i}", data=i)
            await a.expect("ACK")
        c, _, _ = await self.connect_identified("carol")
        await c.send("JOIN", room="h", since={"epoch": epoch, "offset": 1})
        j = await c.expect("JOINED")
        self.assertEqual((j["offset"], j["recovered"]), (3, True))
        self.assertEqual([(await c.expect("EVENT"))["offset"] for _ in range(2)], [2, 3])
        await c.send("JOIN", room="h", since={"epoch": epoch + 1, "offset": 1})  # another epoch
        self.assertFalse((await c.expect("JOINED"))["recovered"])
        await c.send("JOIN", room="h", since={"epoch": epoch, "offset": 99})  # beyond the head
        self.assertFalse((await c.expect("JOINED"))["recovered"])

    async def test_retried_publish_is_deduplicated_across_connections(self):
        a, _, ready = await self.connect_identified()
        await a.send("PUBLISH", room="d", id="same", data="x")
        first = await a.expect("ACK")
        await a.abort()
        a2 = await Client.open(self.server)
        await a2.expect("HELLO")
        await a2.send("RESUME", session_id=ready["session_id"], resume_token=ready["resume_token"], rooms=[])
        await a2.expect("RESUMED")
        await a2.send("PUBLISH", room="d", id="same", data="x")
        self.assertEqual(await a2.expect("ACK"), first)
        status, body, _ = self.server.http("GET", "/api/rooms/d/history")
        self.assertEqual(status, 200)
        self.assertEqual(len(json.loads(body)["events"]), 1)

    async def test_protocol_errors_get_documented_close_codes(self):
        cases = [
            ("no subprotocol", None, None, 4012),
            ("invalid json", "{nope", None, 4002),
            ("unknown op", json.dumps({"op": "SUBSCRIBE", "d": {}}), None, 4001),
            ("join before identify", json.dumps({"op": "JOIN", "d": {"room": "x"}}), None, 4003),
            ("bad token", json.dumps({"op": "IDENTIFY", "d": {"token": "garbage"}}), None, 4004),
            ("expired token", json.dumps({"op": "IDENTIFY", "d": {"token": jwt("u", exp_offset_s=-120)}}), None, 4004),
            ("other secret", json.dumps({"op": "IDENTIFY", "d": {"token": jwt("u", secret="other")}}), None, 4004),
            ("alg none", json.dumps({"op": "IDENTIFY", "d": {"token": jwt("u", alg="none", sign=False)}}), None, 4004),
            ("not yet valid", json.dumps({"op": "IDENTIFY", "d": {"token": jwt("u", nbf_offset_s=600)}}), None, 4004),
        ]
        for name, frame, _, code in cases:
            with self.subTest(name):
                c = await Client.open(self.server, subprotocols=None if frame is None else ("tether.v1",))
                if frame is not None:
                    await c.expect("HELLO")
                    await c.ws.send(frame)
                self.assertEqual((await c.closed_with())[0], code)
        # Tampered payload: a valid token whose payload was swapped.
        good = jwt("alice").split(".")
        evil = jwt("mallory").split(".")
        c = await Client.open(self.server)
        await c.expect("HELLO")
        await c.send("IDENTIFY", token=f"{good[0]}.{evil[1]}.{good[2]}")
        self.assertEqual((await c.closed_with())[0], 4004)
        # A second IDENTIFY.
        c, _, _ = await self.connect_identified()
        await c.send("IDENTIFY", token=jwt("alice"))
        self.assertEqual((await c.closed_with())[0], 4005)
        # A frame above the limit: refused by the WebSocket layer with 1009.
        c = await Client.open(self.server, max_size=None)
        await c.expect("HELLO")
        try:
            await c.ws.send("x" * (2 << 20))
            code = (await c.closed_with())[0]
        except websockets.exceptions.ConnectionClosed as e:
            code = e.rcvd.code
        self.assertEqual(code, 1009)
        # Binary frames are not part of tether.v1.
        c = await Client.open(self.server)
        await c.expect("HELLO")
        await c.ws.send(b"\x00\x01")
        self.assertEqual((await c.closed_with())[0], 4002)
        # The server is still fine for everyone else.
        c, _, _ = await self.connect_identified()
        await c.send("HEARTBEAT", ts=1)
        await c.expect("HEARTBEAT_ACK")

    async def test_admin_api(self):
        status, _, headers = self.server.http("GET", "/api/sessions", key=None)
        self.assertEqual(status, 401)
        self.assertEqual(headers.get("WWW-Authenticate"), "Bearer")
        self.assertEqual(self.server.http("GET", "/api/sessions", key="wrong-key-wrong-key")[0], 401)
        c, _, ready = await self.connect_identified("alice")
        await c.send("JOIN", room="ops")
        await c.expect("JOINED")
        status, body, _ = self.server.http("GET", "/api/sessions")
        self.assertEqual(status, 200)
        sessions = json.loads(body)["sessions"]
        self.assertIn(ready["session_id"], [s["id"] for s in sessions])
        status, body, _ = self.server.http("GET", f"/api/sessions/{ready['session_id']}")
        self.assertEqual(json.loads(body), {"id": ready["session_id"], "user": "alice", "rooms": ["ops"],
                                            "connected": True})
        self.assertEqual(self.server.http("GET", "/api/sessions/nope")[0], 404)
        # Server-side publishing reaches subscribers and answers the offset.
        status, body, _ = self.server.http("POST", "/api/rooms/ops/publish", body='{"alert":1}')
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["offset"], 1)
        self.assertEqual((await c.expect("EVENT"))["data"], {"alert": 1})
        self.assertEqual(self.server.http("POST", "/api/rooms/ops/publish", body="{broken")[0], 400)
        for i in range(2, 6):
            self.server.http("POST", "/api/rooms/ops/publish", body=str(i))
        status, body, _ = self.server.http("GET", "/api/rooms/ops/history?since=2&limit=2")
        h = json.loads(body)
        self.assertEqual(([e["offset"] for e in h["events"]], h["head"]), ([3, 4], 5))
        self.assertEqual(self.server.http("GET", "/api/rooms/ops/history?since=-1")[0], 400)
        self.assertEqual(self.server.http("GET", "/api/rooms/ops/history?limit=abc")[0], 400)
        self.assertEqual(self.server.http("GET", "/api/rooms/%2e%2e%2f%2e%2e/history")[0], 200)  # just a name
        self.assertEqual(self.server.http("GET", "/api/rooms/" + "r" * 300 + "/history")[0], 400)
        self.assertEqual(self.server.http("DELETE", "/api/sessions")[0], 405)
        self.assertEqual(self.server.http("GET", "/api/nothing")[0], 404)
        # Disconnect: the client is closed with a reconnectable code; the session stays.
        status, _, _ = self.server.http("POST", f"/api/sessions/{ready['session_id']}/disconnect")
        self.assertEqual(status, 200)
        self.assertEqual((await c.closed_with())[0], 4000)
        status, body, _ = self.server.http("GET", f"/api/sessions/{ready['session_id']}")
        self.assertFalse(json.loads(body)["connected"])

    async def test_health_and_metrics(self):
        self.assertEqual(self.server.http("GET", "/healthz", key=None)[:2], (200, '{"status":"ok"}'))
        c, _, _ = await self.connect_identified()
        await c.send("PUBLISH", room="m", id="1", data=1)
        await c.expect("ACK")
        status, text, headers = self.server.http("GET", "/metrics", key=None)
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/plain"))
        metrics = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
        self.assertEqual(metrics["tether_connections"], "1")
        self.assertEqual(metrics["tether_publishes_total"], "1")
        self.assertEqual(metrics["tether_identifies_total"], "1")
        for name in ("tether_sessions", "tether_rooms", "tether_deliveries_total", "tether_replayed_total",
                     'tether_resumes_total{result="ok"}', 'tether_resumes_total{result="failed"}',
                     'tether_drops_total{reason="slow_consumer"}'):
            self.assertIn(name, metrics)


class LimitsTest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        self.server = Server("--publish-rate", "1", "--publish-burst", "2", "--message-max", "1KiB",
                             "--outbound-max", "64KiB", "--rooms-per-connection", "2", memory=True).start()

    async def asyncTearDown(self):
        self.server.cleanup()

    async def test_nack_codes_and_room_limit(self):
        c = await Client.open(self.server)
        await c.identify()
        await c.send("PUBLISH", room="x", id="big", data="y" * 2000)
        n = await c.expect("NACK")
        self.assertEqual(n["code"], "too_large")
        for i in range(2):
            await c.send("PUBLISH", room="x", id=f"ok{i}", data=i)
            await c.expect("ACK")
        await c.send("PUBLISH", room="x", id="over", data=0)
        n = await c.expect("NACK")
        self.assertEqual(n["code"], "rate_limited")
        self.assertGreater(n["retry_after_ms"], 0)
        c2 = await Client.open(self.server)
        await c2.identify("bob")
        for room in ("a", "b"):
            await c2.send("JOIN", room=room)
            await c2.expect("JOINED")
        await c2.send("JOIN", room="c")
        err = await c2.expect("JOIN_ERROR")
        self.assertEqual((err["code"], err["fatal"]), ("too_many_rooms", True))
        # Bad room names: refused with bad_room, the connection stays.
        await c2.send("JOIN", room="tab\there")
        err = await c2.expect("JOIN_ERROR")
        self.assertEqual((err["code"], err["fatal"]), ("bad_room", True))
        await c.send("PUBLISH", room="x" * 150, id="long-room", data=1)
        self.assertEqual((await c.expect("NACK"))["code"], "bad_room")

    async def test_connection_limit_and_admin_rate_limit(self):
        server = Server("--max-connections", "1", memory=True).start()
        try:
            first = await Client.open(server)
            await first.identify()
            with self.assertRaises(websockets.exceptions.InvalidStatusCode) as ctx:
                await Client.open(server)
            self.assertEqual(ctx.exception.status_code, 503)
            await first.send("HEARTBEAT", ts=1)  # the first connection is unaffected
            await first.expect("HEARTBEAT_ACK")
            statuses = [server.http("GET", "/api/sessions") for _ in range(60)]
            limited = [s for s in statuses if s[0] == 429]
            self.assertTrue(limited, "60 admin requests at once must hit the 20/s (burst 40) limit")
            self.assertEqual(limited[0][2].get("Retry-After"), "1")
            self.assertGreaterEqual(sum(1 for s in statuses if s[0] == 200), 40)
        finally:
            server.cleanup()



class SlowConsumerTest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        self.server = Server("--publish-rate", "100000", "--publish-burst", "100000", "--message-max", "60KiB",
                             "--outbound-max", "256KiB", memory=True).start()

    async def asyncTearDown(self):
        self.server.cleanup()

    async def test_slow_consumer_is_closed_with_4010_and_keeps_its_session(self):
        slow = await Client.open(self.server, max_queue=1)
        _, ready = await slow.identify("slow")
        await slow.send("JOIN", room="flood")
        await slow.expect("JOINED")
        slow.ws.transport.pause_reading()  # stop reading at the TCP level: the kernel buffers fill, then ours
        fast = await Client.open(self.server)
        await fast.identify("fast")
        await fast.send("JOIN", room="flood")
        await fast.expect("JOINED")
        pub = await Client.open(self.server)
        await pub.identify("pub")
        payload = "z" * (50 << 10)
        for i in range(400):  # 20 MB: more than the socket buffers and the 256 KiB queue together
            await pub.send("PUBLISH", room="flood", id=f"p{i}", data=payload)
            await pub.expect("ACK")
            self.assertEqual((await fast.expect("EVENT"))["offset"], i + 1)  # the well-behaved reader keeps up
        slow.ws.transport.resume_reading()
        code, reason = await slow.closed_with(timeout=20)
        self.assertEqual(code, 4010, reason)
        # The session is kept for its resume; the server notices the close
        # asynchronously, so wait (bounded) for it to show as disconnected.
        deadline = time.monotonic() + 5
        while True:
            status, body, _ = self.server.http("GET", f"/api/sessions/{ready['session_id']}")
            self.assertEqual(status, 200)
            if not json.loads(body)["connected"] or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.01)
        self.assertFalse(json.loads(body)["connected"])
        status, text, _ = self.server.http("GET", "/metrics", key=None)
        self.assertIn('tether_drops_total{reason="slow_consumer"} 1', text)


if __name__ == "__main__":
    unittest.main(verbosity=2)
