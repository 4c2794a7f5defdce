"""`tether proxy` between a WebSocket client and the real `tether serve`:
every fault does what docs/CLI.md says. Timing bounds are generous."""

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
import unittest
import urllib.request

import websockets

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import Client, Proxy, Server  # noqa: E402


class ProxyTest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        self.server = Server(memory=True).start()
        self.proxy = Proxy(self.server.port)

    async def asyncTearDown(self):
        self.proxy.stop()
        self.server.cleanup()

    async def client(self):
        ws = await websockets.connect(self.proxy.url, subprotocols=["tether.v1"], open_timeout=10)
        c = Client(ws)
        await c.identify()
        return c

    async def rtt(self, c):
        t0 = time.monotonic()
        await c.send("HEARTBEAT", ts=1)
        await c.expect("HEARTBEAT_ACK")
        return time.monotonic() - t0

    async def test_passes_traffic_through(self):
        c = await self.client()
        self.assertLess(await self.rtt(c), 1.0)
        status, state = self.proxy.call("GET", "/faults")
        self.assertEqual((status, state["connections"]), (200, 1))

    async def test_latency_applies_per_direction(self):
        c = await self.client()
        self.proxy.call("POST", "/faults", {"direction": "up", "latency_ms": 300, "jitter_ms": 50})
        self.assertGreaterEqual(await self.rtt(c), 0.25)
        self.proxy.call("DELETE", "/faults")
        self.assertLess(await self.rtt(c), 0.25)

    async def test_blackhole_keeps_the_link_open_and_forwards_nothing(self):
        c = await self.client()
        self.proxy.call("POST", "/faults", {"blackhole": True})
        await c.send("HEARTBEAT", ts=2)
        with self.assertRaises(asyncio.TimeoutError):
            await c.recv(timeout=0.5)  # no answer, and no close either: a half-open link
        self.assertTrue(c.ws.open)

    async def test_reset_and_close_end_existing_connections(self):
        for action in ("/reset", "/close"):
            with self.subTest(action):
                c = await self.client()
                self.proxy.call("POST", action)
                code, _ = await c.closed_with(timeout=5)
                self.assertEqual(code, None)  # no close frame: the TCP connection just ended

    async def test_refuse_new_connections_then_recover(self):
        self.proxy.call("POST", "/faults", {"refuse": True})
        with self.assertRaises((OSError, websockets.exceptions.InvalidMessage, asyncio.TimeoutError,
                                websockets.exceptions.ConnectionClosed)):
            await websockets.connect(self.proxy.url, subprotocols=["tether.v1"], open_timeout=3)
        self.proxy.call("POST", "/faults", {"refuse": False})
        c = await self.client()
        self.assertLess(await self.rtt(c), 1.0)

    async def test_cut_after_bytes(self):
        c = await self.client()
        self.proxy.call("POST", "/faults", {"direction": "down", "cut_after_bytes": 10})
        await c.send("HEARTBEAT", ts=3)
        code, _ = await c.closed_with(timeout=5)
        self.assertIsNone(code)

    async def test_bandwidth_limit(self):
        c = await self.client()
        self.proxy.call("POST", "/faults", {"direction": "down", "bandwidth_bps": 20000})
        await c.send("JOIN", room="bw")
        await c.expect("JOINED")
        status, _, _ = self.server.http("POST", "/api/rooms/bw/publish", body=json.dumps("x" * 20000))
        self.assertEqual(status, 200)
        t0 = time.monotonic()
        await c.expect("EVENT", timeout=10)
        self.assertGreaterEqual(time.monotonic() - t0, 0.5)  # ~20 KB at 20 KB/s

    async def test_control_api_rejects_nonsense(self):
        self.assertEqual(self.proxy.call("POST", "/faults", {"direction": "sideways"})[0], 400)
        self.assertEqual(self.proxy.call("POST", "/faults", {"latency_ms": -5})[0], 400)
        self.assertEqual(self.proxy.call("GET", "/nope")[0], 404)


if __name__ == "__main__":
    unittest.main(verbosity=2)
