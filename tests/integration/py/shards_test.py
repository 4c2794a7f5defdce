"""The sharded gateway (docs/DESIGN.md, "Shards"): the real `tether serve`
with four shards on four threads, publishers on every shard, and one client
whose sessions and rooms are served by several shards. Per room, every event
arrives exactly once and in order, every publish is acknowledged once, and a
RESUME that lands on another shard than its session's moves there and
replays what was missed, exactly once. Under TSan (scripts/test.sh) this is
the gateway's concurrent load test."""

import asyncio
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import Client, Server  # noqa: E402

ROOMS = [f"room-{i}" for i in range(4)]
PUBLISHERS = 8
PER_ROOM = 25  # publishes of each publisher to each room


async def collect(c, want, acks=None, timeout=60):
    """Reads frames until `want(events)` holds; EVENTs by room, ACKs by id."""
    events = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not want(events):
        left = deadline - loop.time()
        if left <= 0:
            raise AssertionError(f"timed out: {({r: len(v) for r, v in events.items()})}")
        m = await c.recv(timeout=left)
        if m["op"] == "EVENT":
            events.setdefault(m["d"]["room"], []).append(m["d"]["offset"])
        elif m["op"] == "ACK" and acks is not None:
            acks.append(m["d"]["id"])
        elif m["op"] not in ("HEARTBEAT_ACK", "JOINED", "RESUMED"):
            raise AssertionError(f"unexpected {m}")
    return events


class ShardsTest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        self.server = Server("--shards", "4", "--threads", "4").start()

    async def asyncTearDown(self):
        self.server.cleanup()

    def metric(self, name):
        _, text, _ = self.server.http("GET", "/metrics", key=None)
        m = re.search(rf"^{name} (\d+)$", text, re.M)
        self.assertIsNotNone(m, name)
        return int(m.group(1))

    async def publisher(self, index):
        c = await Client.open(self.server)
        await c.identify(f"pub{index}")
        acks = []
        ids = [f"p{index}-{room}-{k}" for room in ROOMS for k in range(PER_ROOM)]
        for pid in ids:
            room = pid.split("-", 1)[1].rsplit("-", 1)[0]
            await c.send("PUBLISH", room=room, id=pid, data={"from": index})
        while len(acks) < len(ids):
            m = await c.recv(timeout=60)
            if m["op"] == "ACK":
                acks.append(m["d"]["id"])
            elif m["op"] != "HEARTBEAT_ACK":
                raise AssertionError(f"publisher {index}: unexpected {m}")
        await c.close()
        return ids, acks

    async def test_every_room_once_in_order_and_resume_across_shards(self):
        self.assertEqual(self.metric("tether_shards"), 4)
        sub = await Client.open(self.server)
        _, ready = await sub.identify("reader")
        epochs = {}
        for room in ROOMS:
            await sub.send("JOIN", room=room)
            epochs[room] = (await sub.expect("JOINED"))["epoch"]
        # The reader publishes to each of its rooms too, while eight
        # publishers (on every shard) publish to all of them at once.
        own = [f"own-{room}-{k}" for room in ROOMS for k in range(5)]
        for pid in own:
            await sub.send("PUBLISH", room=pid.split("-", 1)[1].rsplit("-", 1)[0], id=pid, data=0)
        results = asyncio.gather(*(self.publisher(i) for i in range(PUBLISHERS)))
        total = PUBLISHERS * PER_ROOM + 5
        my_acks = []
        events = await collect(sub, lambda ev: all(len(ev.get(r, [])) >= total for r in ROOMS) and
                               len(my_acks) >= len(own), acks=my_acks)
        for ids, acks in await results:
            self.assertEqual(sorted(acks), sorted(ids))  # each acknowledged exactly once
        self.assertEqual(sorted(my_acks), sorted(own))
        for room in ROOMS:
            self.assertEqual(events[room], list(range(1, total + 1)), room)

        # Away, then back on new connections: each lands on a shard by its
        # connection id and moves to the session's shard when it is another.
        session, token = ready["session_id"], ready["resume_token"]
        positions = {room: total for room in ROOMS}
        moves_before = self.metric("tether_shard_moves_total")
        for attempt in range(12):
            await sub.abort()
            writer = await Client.open(self.server)
            await writer.identify("writer")
            for room in ROOMS:
                for k in range(3):
                    await writer.send("PUBLISH", room=room, id=f"w{attempt}-{room}-{k}", data=k)
            for _ in range(3 * len(ROOMS)):
                await writer.expect("ACK")
            await writer.close()
            sub = await Client.open(self.server)
            await sub.expect("HELLO")
            await sub.send("RESUME", session_id=session, resume_token=token,
                           rooms=[{"room": r, "epoch": epochs[r], "offset": positions[r]}
                                  for r in ROOMS])
            resumed = await sub.expect("RESUMED")
            token = resumed["resume_token"]
            joined = {}
            for _ in ROOMS:
                j = await sub.expect("JOINED")
                joined[j["room"]] = j
            for room in ROOMS:
                self.assertTrue(joined[room]["recovered"], joined[room])
            replay = await collect(sub, lambda ev: all(len(ev.get(r, [])) >= 3 for r in ROOMS))
            for room in ROOMS:
                self.assertEqual(replay[room], list(range(positions[room] + 1, positions[room] + 4)))
                positions[room] += 3
            if self.metric("tether_shard_moves_total") > moves_before and attempt >= 1:
                break
        self.assertGreater(self.metric("tether_shard_moves_total"), moves_before)
        await sub.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
