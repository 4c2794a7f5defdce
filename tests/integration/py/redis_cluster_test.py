"""Several `tether serve --redis` nodes on one real `redis-server`
(docs/SCALING.md): fan-out between nodes, dedupe of a publish retried on
another node, a room resumed on another node, lost pub/sub notifications
(the connection killed, a tiny output-buffer limit), Redis out of reach
(NACK unavailable, /healthz 503, recovery by itself), Redis restarted empty
(history lost is said, never a silent replay), the function library lost,
and a node's sessions across its kill -9."""

import asyncio
import json
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import Client, RedisServer, Server  # noqa: E402


async def events_until(c, room, count, timeout=30, acks=None):
    """Offsets of `room`'s EVENTs until `count` arrived; ACKs go to `acks`."""
    got = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(got) < count:
        left = deadline - loop.time()
        if left <= 0:
            raise AssertionError(f"timed out with {len(got)} of {count} events: {got[-5:]}")
        m = await c.recv(timeout=left)
        if m["op"] == "EVENT" and m["d"]["room"] == room:
            got.append((m["d"]["epoch"], m["d"]["offset"], m["d"]["data"]))
        elif m["op"] == "ACK" and acks is not None:
            acks.append(m["d"])
        elif m["op"] not in ("HEARTBEAT_ACK", "ACK"):
            raise AssertionError(f"unexpected {m}")
    return got


async def publish_all(c, room, ids, data=lambda i: i):
    """Publishes every id, then reads until each was ACKed; returns the ACKs by id."""
    for i, pid in enumerate(ids):
        await c.send("PUBLISH", room=room, id=pid, data=data(i))
    acks = {}
    while len(acks) < len(ids):
        m = await c.recv(timeout=30)
        if m["op"] == "ACK":
            acks[m["d"]["id"]] = m["d"]
        elif m["op"] == "NACK":
            raise AssertionError(f"NACK in the flow: {m}")
    return acks


async def until(check, what, timeout=20):
    """Polls `check` (a state only observable from outside, such as the
    health endpoint a load balancer polls) until it holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def healthy(node, what="the node healthy"):
    await until(lambda: node.http("GET", "/healthz", key=None)[0] == 200, what)


async def reader_and_writer(reader_node, writer_node, room, reader="reader"):
    """A subscriber of `room` on one node and a writer on another:
    (subscriber, the epoch it joined, writer)."""
    sub = await Client.open(reader_node)
    await sub.identify(reader)
    await sub.send("JOIN", room=room)
    epoch = (await sub.expect("JOINED"))["epoch"]
    w = await Client.open(writer_node)
    await w.identify("writer")
    return sub, epoch, w


async def assert_old_epoch_is_lost(test, room, epoch, positions, w, sub, next_offset):
    """After Redis lost a room's newest writes: each (node, offset) of the old
    epoch joins as not recovered, the next publish gets `next_offset` under a
    new epoch, and the live subscriber is moved to the new epoch."""
    for node, offset in positions:
        c = await Client.open(node)
        await c.identify(f"back-{node.port}-{offset}")
        await c.send("JOIN", room=room, since={"epoch": epoch, "offset": offset})
        j = await c.expect("JOINED")
        test.assertFalse(j["recovered"], (offset, j))
        test.assertNotEqual(j["epoch"], epoch)
    acks = await publish_all(w, room, ["after-loss"])
    test.assertNotEqual(acks["after-loss"]["epoch"], epoch)
    test.assertEqual(acks["after-loss"]["offset"], next_offset)
    m = await sub.recv(timeout=15)
    while m["op"] != "EVENT":
        m = await sub.recv(timeout=15)
    test.assertNotEqual(m["d"]["epoch"], epoch, m)


class RedisClusterTest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        self.redis = RedisServer().start()
        self.nodes = [Server("--node-id", f"n{i}", "--publish-rate", "5000", "--publish-burst",
                             "5000", redis=self.redis).start() for i in range(2)]

    async def asyncTearDown(self):
        for n in self.nodes:
            n.cleanup()
        self.redis.cleanup()

    def metric(self, node, name):
        _, text, _ = node.http("GET", "/metrics", key=None)
        m = re.search(rf"^{name} (\d+)$", text, re.M)
        self.assertIsNotNone(m, name)
        return int(m.group(1))

    async def test_fan_out_between_nodes_once_in_order_and_dedupe_across_nodes(self):
        a, b = self.nodes
        sub = await Client.open(a)
        await sub.identify("reader")
        await sub.send("JOIN", room="chat")
        joined = await sub.expect("JOINED")
        # Two writers on the two nodes, the same user: a publish id retried
        # on the other node gets the original offset and stores nothing.
        w_b = await Client.open(b)
        await w_b.identify("writer")
        w_a = await Client.open(a)
        await w_a.identify("writer")
        acks_b = await publish_all(w_b, "chat", [f"b{k}" for k in range(50)])
        acks_a = await publish_all(w_a, "chat", [f"a{k}" for k in range(50)])
        retried = await publish_all(w_a, "chat", ["b7", "b8"])
        self.assertEqual(retried["b7"]["offset"], acks_b["b7"]["offset"])
        self.assertEqual(retried["b8"]["offset"], acks_b["b8"]["offset"])
        got = await events_until(sub, "chat", 100)
        self.assertEqual([o for _, o, _ in got], list(range(1, 101)))
        self.assertTrue(all(e == joined["epoch"] for e, _, _ in got))
        offsets = sorted(x["offset"] for x in list(acks_a.values()) + list(acks_b.values()))
        self.assertEqual(offsets, list(range(1, 101)))
        # Nothing more: the two retries stored no event.
        await w_b.send("PUBLISH", room="chat", id="last", data="end")
        last = await events_until(sub, "chat", 1)
        self.assertEqual(last[0][1], 101)
        self.assertGreaterEqual(self.metric(a, "tether_redis_notifications_total"), 50)

    async def test_a_room_resumes_on_another_node_with_exactly_what_was_missed(self):
        a, b = self.nodes
        c = await Client.open(a)
        await c.identify("mover")
        await c.send("JOIN", room="r")
        epoch = (await c.expect("JOINED"))["epoch"]
        w = await Client.open(b)
        await w.identify("writer")
        await publish_all(w, "r", [f"x{k}" for k in range(10)])
        seen = await events_until(c, "r", 10)
        await c.abort()
        await publish_all(w, "r", [f"y{k}" for k in range(1000)])
        c2 = await Client.open(b)
        await c2.identify("mover")
        await c2.send("JOIN", room="r", since={"epoch": epoch, "offset": seen[-1][1]})
        j = await c2.expect("JOINED")
        self.assertTrue(j["recovered"], j)
        replay = await events_until(c2, "r", 1000)
        self.assertEqual([o for _, o, _ in replay], list(range(11, 1011)))
        self.assertEqual([d for _, _, d in replay], list(range(1000)))

    async def test_lost_notifications_are_filled_from_the_stream(self):
        a, b = self.nodes
        sub, _, w = await reader_and_writer(a, b, "busy")
        # A pub/sub client may buffer 2 KiB at most: node a's subscription is
        # cut again and again under a flow of 1 KiB events.
        self.redis.cli("CONFIG", "SET", "client-output-buffer-limit", "pubsub 2kb 2kb 0")
        big = "x" * 1024
        total = 0
        for round_ in range(4):
            ids = [f"r{round_}-{k}" for k in range(100)]
            sender = asyncio.create_task(publish_all(w, "busy", ids, data=lambda i: big))
            if round_ == 2:
                self.redis.cli("CLIENT", "KILL", "TYPE", "pubsub")
            await sender
            total += len(ids)
        got = await events_until(sub, "busy", total, timeout=60)
        self.assertEqual([o for _, o, _ in got], list(range(1, total + 1)))
        fills = self.metric(a, "tether_redis_gap_fills_total")
        reconnects = self.metric(a, "tether_redis_reconnects_total")
        self.assertGreater(fills, 0)
        self.assertGreater(reconnects, 0)

    async def test_redis_out_of_reach_then_back_empty(self):
        a, b = self.nodes
        sub, epoch, w = await reader_and_writer(a, b, "life")
        await publish_all(w, "life", ["before-1", "before-2"])
        await events_until(sub, "life", 2)
        self.redis.kill9()
        # Never an ACK for what Redis did not store: NACK unavailable.
        await w.send("PUBLISH", room="life", id="during", data=0)
        m = await w.recv(timeout=15)
        while m["op"] == "HEARTBEAT_ACK":
            m = await w.recv(timeout=15)
        self.assertEqual(m["op"], "NACK", m)
        self.assertEqual(m["d"]["code"], "unavailable", m)
        self.assertGreater(m["d"].get("retry_after_ms", 0), 0)
        status, body, _ = b.http("GET", "/healthz", key=None)
        self.assertEqual(status, 503, body)
        self.assertEqual(json.loads(body)["status"], "unavailable")
        # Back, empty (no persistence): the nodes recover by themselves.
        self.redis.start()
        for node in (a, b):
            await healthy(node, "the node back on Redis")
        acks = await publish_all(w, "life", ["after-1"])
        self.assertNotEqual(acks["after-1"]["epoch"], epoch)
        self.assertEqual(acks["after-1"]["offset"], 1)
        # The live subscriber sees the new epoch; a client coming back with
        # the old position is told that history was lost.
        ev = await events_until(sub, "life", 1)
        self.assertEqual(ev[0][:2], (acks["after-1"]["epoch"], 1))
        late = await Client.open(b)
        await late.identify("late")
        await late.send("JOIN", room="life", since={"epoch": epoch, "offset": 2})
        j = await late.expect("JOINED")
        self.assertFalse(j["recovered"], j)
        self.assertNotEqual(j["epoch"], epoch)

    async def test_function_library_lost_is_loaded_again(self):
        a, _ = self.nodes
        w = await Client.open(a)
        await w.identify("writer")
        await publish_all(w, "f", ["one"])
        loads = self.metric(a, "tether_redis_function_loads_total")
        self.redis.cli("FUNCTION", "FLUSH")
        acks = await publish_all(w, "f", ["two"])
        self.assertEqual(acks["two"]["offset"], 2)
        self.assertGreater(self.metric(a, "tether_redis_function_loads_total"), loads)

    async def test_a_nodes_sessions_survive_its_kill9(self):
        a, _ = self.nodes
        c = await Client.open(a)
        _, ready = await c.identify("keeper")
        await c.send("JOIN", room="k")
        epoch = (await c.expect("JOINED"))["epoch"]
        await publish_all(c, "k", ["k1"])
        a.kill9()
        a.restart()
        c2 = await Client.open(a)
        await c2.expect("HELLO")
        await c2.send("RESUME", session_id=ready["session_id"], resume_token=ready["resume_token"],
                      rooms=[{"room": "k", "epoch": epoch, "offset": 0}])
        await c2.expect("RESUMED")
        j = await c2.expect("JOINED")
        self.assertTrue(j["recovered"], j)
        got = await events_until(c2, "k", 1)
        self.assertEqual(got[0][1], 1)


    async def resume(self, node, ready, rooms=()):
        """A RESUME of `ready`'s session on `node`: (client, first answer)."""
        c = await Client.open(node)
        await c.expect("HELLO")
        await c.send("RESUME", session_id=ready["session_id"], resume_token=ready["resume_token"],
                     rooms=list(rooms))
        m = await c.recv()
        while m["op"] == "HEARTBEAT_ACK":
            m = await c.recv()
        return c, m

    async def test_a_session_resumes_on_another_node_with_exactly_what_it_missed(self):
        a, b = self.nodes
        c = await Client.open(a)
        _, ready = await c.identify("roamer")
        await c.send("JOIN", room="roam")
        epoch = (await c.expect("JOINED"))["epoch"]
        await publish_all(c, "roam", [f"r{i}" for i in range(3)])  # its EVENTs are read too
        await c.close()
        w = await Client.open(b)
        await w.identify("writer")
        await publish_all(w, "roam", [f"m{i}" for i in range(5)], data=lambda i: f"missed-{i}")
        claimed = self.metric(b, "tether_sessions_claimed_total")
        c2, m = await self.resume(b, ready, [{"room": "roam", "epoch": epoch, "offset": 3}])
        self.assertEqual(m["op"], "RESUMED", m)
        self.assertEqual(m["d"]["session_id"], ready["session_id"])
        j = await c2.expect("JOINED")
        self.assertTrue(j["recovered"], j)
        got = await events_until(c2, "roam", 5)
        self.assertEqual([(o, d) for _, o, d in got], [(4 + i, f"missed-{i}") for i in range(5)])
        self.assertEqual(self.metric(b, "tether_sessions_claimed_total"), claimed + 1)
        # Its publishes are the same user's on the new node: a retry of one
        # made on the old node is deduplicated.
        acks = await publish_all(c2, "roam", ["r1"])
        self.assertEqual(acks["r1"]["offset"], 2)
        # The token it resumed with was used up, on every node.
        for node in (a, b):
            _, m = await self.resume(node, ready)
            self.assertEqual(m["op"], "INVALID_SESSION", m)

    async def test_a_node_whose_session_was_claimed_closes_its_connection(self):
        a, b = self.nodes
        old = await Client.open(a)
        _, ready = await old.identify("mover")
        await old.send("JOIN", room="mv")
        await old.expect("JOINED")
        new, m = await self.resume(b, ready)
        self.assertEqual(m["op"], "RESUMED", m)
        await new.send("JOIN", room="mv")
        code, reason = await old.closed_with(timeout=10)
        self.assertEqual((code, reason), (4000, "session resumed elsewhere"))
        self.assertEqual(self.metric(a, "tether_sessions_taken_total"), 1)
        # Node a forgot it: the admin API lists it nowhere but on b.
        for _ in range(100):
            status, body, _ = a.http("GET", f"/api/sessions/{ready['session_id']}")
            if status == 404:
                break
            await asyncio.sleep(0.05)  # the close is asynchronous to the claim's answer
        self.assertEqual(status, 404, body)
        self.assertEqual(b.http("GET", f"/api/sessions/{ready['session_id']}")[0], 200)
        # The session lives on b: publishes there are acknowledged.
        await new.expect("JOINED")
        acks = await publish_all(new, "mv", ["after-move"])
        self.assertEqual(acks["after-move"]["offset"], 1)

    async def test_one_session_resumed_on_two_nodes_at_once_has_one_winner(self):
        a, b = self.nodes
        outcomes = []
        for i in range(10):
            c = await Client.open(a)
            _, ready = await c.identify(f"twin-{i}")
            await c.close()
            racers = [await Client.open(n) for n in (a, b)]
            for r in racers:
                await r.expect("HELLO")
            await asyncio.gather(*(r.send("RESUME", session_id=ready["session_id"],
                                          resume_token=ready["resume_token"], rooms=[])
                                   for r in racers))
            ops = sorted([(await r.recv())["op"] for r in racers])
            outcomes.append(ops)
            for r in racers:
                await r.close()
        for ops in outcomes:
            self.assertEqual(ops, ["INVALID_SESSION", "RESUMED"], outcomes)


    async def test_writes_lost_by_a_restart_from_an_old_snapshot_are_detected(self):
        a, b = self.nodes
        sub, epoch, w = await reader_and_writer(a, b, "lw", "watcher")
        await publish_all(w, "lw", ["s1", "s2", "s3"])
        self.redis.cli("SAVE")  # the snapshot has offsets 1..3
        await publish_all(w, "lw", ["lost-4", "lost-5"])  # acknowledged, then lost
        seen = await events_until(sub, "lw", 5)
        self.assertEqual([o for _, o, _ in seen], [1, 2, 3, 4, 5])
        self.redis.restart()  # kill -9, then back from the snapshot: 4 and 5 are gone
        for node in (a, b):
            await healthy(node, "the node back on Redis")
            self.assertEqual(self.metric(node, "tether_redis_term_changes_total"), 1)
        self.assertEqual(self.redis.cli("HGET", "tether:{lw}:m", "head"), "3")
        # A position inside the lost range, and one before it: neither
        # resumes as recovered (the room has a new epoch), on the node whose
        # live subscriber keeps the room in its view (a) as on the other; the
        # next publish re-uses offset 4 under the new epoch only.
        await assert_old_epoch_is_lost(self, "lw", epoch, ((a, 5), (b, 3), (a, 3)), w, sub, 4)

    async def test_garbage_on_the_notification_channel_changes_nothing(self):
        a, b = self.nodes
        sub, _, w = await reader_and_writer(a, b, "g", "steady")
        await publish_all(w, "g", ["g1"])
        self.assertEqual([o for _, o, _ in await events_until(sub, "g", 1)], [1])
        junk = ["", "\n", "claim", "claim\n", "claim\nn9", "claim\nn9\nno-such-session\nx",
                "claim\nn9\n\n18446744073709551616", "probe", "probe\nn0\nnot-a-number",
                "n9", "n9\ng", "n9\ng\n0\n0\nnull", "n9\ng\nx\ny\nnull",
                "n9\ng\n99999999999999999999999\n1\nnull", "n9\nunknown-room\n5\n5\n{}",
                "\xff\xfe\n\x01", "n9\n" + "r" * 4096 + "\n1\n1\n1"]
        for payload in junk:
            self.redis.cli("PUBLISH", "tether:appends", payload)
        for node in (a, b):
            self.assertEqual(node.http("GET", "/healthz", key=None)[0], 200)
        # The subscriber's stream is untouched: the next append is offset 2, once.
        await publish_all(w, "g", ["g2"])
        self.assertEqual([o for _, o, _ in await events_until(sub, "g", 1)], [2])
        _, m = await self.resume(a, {"session_id": "no-such-session", "resume_token": "x"})
        self.assertEqual(m["op"], "INVALID_SESSION")


class RedisFlagsTest(unittest.TestCase):
    """Bad --redis values: exit code 2 and the flag named, before any I/O."""

    def run_serve(self, *args):
        import subprocess
        from harness import TETHER
        return subprocess.run([TETHER, "serve", "--allow-anonymous"] + list(args),
                              capture_output=True, text=True, timeout=30)

    def test_bad_values_exit_2_and_say_why(self):
        cases = [
            (["--redis", "http://127.0.0.1:6379"], "redis://"),
            (["--redis", "redis://127.0.0.1:0"], "port"),
            (["--redis", "redis://127.0.0.1:6379/99"], "database"),
            (["--redis", "redis://user:pw@127.0.0.1"], "credentials"),
            (["--redis", "redis://127.0.0.1", "--memory"], "excludes"),
            (["--redis", "redis://127.0.0.1", "--data", "/tmp/x"], "excludes"),
            (["--redis", "redis://127.0.0.1", "--node-id", "a b"], "--node-id"),
            (["--redis", "redis://127.0.0.1", "--redis-prefix", "{x}"], "--redis-prefix"),
            (["--redis", "redis://127.0.0.1", "--redis-timeout", "5ms"], "--redis-timeout"),
        ]
        for args, said in cases:
            r = self.run_serve(*args)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn(said, r.stderr, args)


if __name__ == "__main__":
    unittest.main(verbosity=2)
