"""Crash safety of `tether serve` on its embedded durable store: kill -9
during a steady publish flow, restart on the same data, and check that no
acknowledged message is lost, sessions resume, and subscribers see no gap and
no duplicate. Also: SIGTERM drains."""

import asyncio
import json
import os
import sys
import tempfile
import shutil
import time
import unittest

import websockets

sys.path.insert(0, os.path.dirname(__file__))
from harness import Client, Server  # noqa: E402

WINDOW = 32  # publishes in flight at once


async def publisher(client, room, acked, sent, stop_after_acks, killed):
    """Publishes m0, m1, ... pipelined; records every ACK until the link dies."""
    pending = set()
    i = 0
    try:
        while True:
            while len(pending) < WINDOW:
                mid = f"m{i}"
                await client.send("PUBLISH", room=room, id=mid, data={"id": mid})
                sent.append(mid)
                pending.add(mid)
                i += 1
            msg = await client.recv(timeout=10)
            if msg["op"] == "NACK":
                raise AssertionError(f"unexpected NACK in the flow: {msg}")
            if msg["op"] == "ACK":
                acked[msg["d"]["id"]] = msg["d"]["offset"]
                pending.discard(msg["d"]["id"])
                if len(acked) == stop_after_acks:
                    killed.set()
    except (websockets.exceptions.ConnectionClosed, ConnectionError, asyncio.TimeoutError):
        return


class KillNineTest(unittest.IsolatedAsyncioTestCase):
    async def run_mode(self, fsync):
        data_dir = tempfile.mkdtemp(prefix=f"tether-kill9-{fsync}-")
        try:
            await self._run(fsync, data_dir)
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)

    async def _run(self, fsync, data_dir):
        flags = ("--fsync", fsync, "--publish-rate", "100000", "--publish-burst", "100000")
        server = Server(*flags, data_dir=data_dir).start()
        sub = await Client.open(server)
        _, sub_ready = await sub.identify("sub")
        await sub.send("JOIN", room="flow")
        epoch = (await sub.expect("JOINED"))["epoch"]
        pub = await Client.open(server)
        _, pub_ready = await pub.identify("pub")

        seen = []  # offsets the subscriber got, in order

        async def subscribe():
            try:
                while True:
                    m = await sub.recv(timeout=10)
                    if m["op"] == "EVENT":
                        seen.append((m["d"]["offset"], m["d"]["data"]["id"]))
            except (websockets.exceptions.ConnectionClosed, ConnectionError, asyncio.TimeoutError):
                return

        acked, sent, killed = {}, [], asyncio.Event()
        sub_task = asyncio.create_task(subscribe())
        pub_task = asyncio.create_task(publisher(pub, "flow", acked, sent, 400, killed))
        await asyncio.wait_for(killed.wait(), 60)
        server.kill9()  # mid-flow: publishes are in flight
        await asyncio.wait_for(pub_task, 15)
        await asyncio.wait_for(sub_task, 15)
        self.assertGreaterEqual(len(acked), 400)

        # Restart on the same data.
        server2 = Server(*flags, data_dir=data_dir)
        server2.start()
        try:
            # 1. Every acknowledged message is stored at the offset its ACK named.
            stored = {}
            since = 0
            while True:
                status, body, _ = server2.http("GET", f"/api/rooms/flow/history?since={since}&limit=1000")
                self.assertEqual(status, 200)
                h = json.loads(body)
                if not h["events"]:
                    break
                for e in h["events"]:
                    stored[e["offset"]] = e["data"]["id"]
                since = h["events"][-1]["offset"]
            self.assertEqual(h["epoch"], epoch, "the stream kept its epoch across the restart")
            for mid, off in acked.items():
                self.assertEqual(stored.get(off), mid, f"acknowledged {mid} at {off} was lost")
            self.assertEqual(sorted(stored), list(range(1, len(stored) + 1)), "offsets are contiguous")

            # 2. Sessions survived: the subscriber resumes and gets the rest, exactly once, in order.
            last = seen[-1][0] if seen else 0
            sub2 = await Client.open(server2)
            await sub2.expect("HELLO")
            await sub2.send("RESUME", session_id=sub_ready["session_id"], resume_token=sub_ready["resume_token"],
                            rooms=[{"room": "flow", "epoch": epoch, "offset": last}])
            await sub2.expect("RESUMED")
            joined = await sub2.expect("JOINED")
            self.assertTrue(joined["recovered"])
            for _ in range(joined["offset"] - last):
                d = await sub2.expect("EVENT")
                seen.append((d["offset"], d["data"]["id"]))
            self.assertEqual([o for o, _ in seen], list(range(1, joined["offset"] + 1)), "no gap, no duplicate")

            # 3. The publisher resumes and retries what was never acknowledged:
            #    what the store already had keeps its offset (dedupe survived).
            pub2 = await Client.open(server2)
            await pub2.expect("HELLO")
            await pub2.send("RESUME", session_id=pub_ready["session_id"], resume_token=pub_ready["resume_token"],
                            rooms=[])
            await pub2.expect("RESUMED")
            unacked = [m for m in sent if m not in acked]
            for mid in unacked:
                await pub2.send("PUBLISH", room="flow", id=mid, data={"id": mid})
                ack = await pub2.expect("ACK")
                if ack["offset"] in stored:
                    self.assertEqual(stored[ack["offset"]], mid)
            status, body, _ = server2.http("GET", "/api/rooms/flow/history?since=0&limit=1")
            head = json.loads(body)["head"]
            ids = []
            since = 0
            while since < head:
                h = json.loads(server2.http("GET", f"/api/rooms/flow/history?since={since}&limit=1000")[1])
                ids += [e["data"]["id"] for e in h["events"]]
                since = h["events"][-1]["offset"]
            self.assertEqual(len(ids), len(set(ids)), "a retried publish was stored twice")
            self.assertEqual(set(ids), set(sent), "every message published is stored exactly once")
        finally:
            server2.cleanup()

    async def test_kill9_fsync_always(self):
        await self.run_mode("always")

    async def test_kill9_fsync_batch(self):
        await self.run_mode("batch")


class DrainTest(unittest.IsolatedAsyncioTestCase):
    async def test_sigterm_sends_reconnect_and_exits(self):
        server = Server(memory=True).start()
        try:
            c = await Client.open(server)
            await c.identify()
            await c.send("JOIN", room="r")
            await c.expect("JOINED")
            t0 = time.monotonic()
            server.proc.send_signal(15)
            rc = await c.recv()
            self.assertEqual(rc["op"], "RECONNECT")
            self.assertGreaterEqual(rc["d"]["retry_after_ms"], 1000)
            self.assertEqual((await c.closed_with())[0], 1001)
            self.assertEqual(await asyncio.get_running_loop().run_in_executor(None, server.proc.wait, 15), 0)
            self.assertLess(time.monotonic() - t0, 5 + 2)  # the drain timeout plus a margin
        finally:
            server.cleanup()


if __name__ == "__main__":
    unittest.main(verbosity=2)
