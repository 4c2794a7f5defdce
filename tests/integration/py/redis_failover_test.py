"""Gateway nodes on a replicated Redis (docs/SCALING.md): a Sentinel failover
to a replica that missed the last acknowledged writes (the nodes follow the
new primary, and no client resumes as recovered across the lost entries),
and `--redis-wait`, which acknowledges only what a replica confirmed.

Real `redis-server` primaries and replicas and a real `redis-sentinel`,
started and stopped here. The replica "misses" writes deterministically: it
is stopped (SIGSTOP) while they are made, and the primary is killed before
it runs again, and its link is closed by the primary first (a stopped
process still receives into its socket buffer)."""

import os
import re
import signal
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import Client, RedisSentinel, RedisServer, Server  # noqa: E402
from redis_cluster_test import (assert_old_epoch_is_lost, events_until, healthy,  # noqa: E402
                                publish_all, reader_and_writer, until)


def replica_in_sync(replica):
    info = replica.cli("INFO", "replication")
    return "master_link_status:up" in info


def metric(node, name):
    _, text, _ = node.http("GET", "/metrics", key=None)
    m = re.search(rf"^{name} (\d+)$", text, re.M)
    return int(m.group(1)) if m else None


class SentinelFailoverTest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        self.primary = RedisServer().start()
        self.replica = RedisServer("--replicaof", "127.0.0.1", str(self.primary.port)).start()
        await until(lambda: replica_in_sync(self.replica), "the replica's first sync")
        self.sentinel = RedisSentinel(self.primary).start()
        self.nodes = [Server("--node-id", f"s{i}", "--publish-rate", "5000", "--publish-burst",
                             "5000", redis=self.sentinel).start() for i in range(2)]

    async def asyncTearDown(self):
        for n in self.nodes:
            n.cleanup()
        os.kill(self.replica.proc.pid, signal.SIGCONT)
        for r in (self.sentinel, self.replica, self.primary):
            r.cleanup()

    async def test_failover_to_a_replica_that_missed_writes(self):
        a, b = self.nodes
        sub, epoch, w = await reader_and_writer(a, b, "fo", "watcher")
        await publish_all(w, "fo", ["r1", "r2", "r3"])
        await until(lambda: self.replica.cli("HGET", "tether:{fo}:m", "head") == "3",
                    "offsets 1..3 on the replica")
        # Cut replication (the replica stopped, its link closed by the
        # primary, so nothing more reaches even its socket buffer), then two
        # acknowledged writes only the primary has.
        os.kill(self.replica.proc.pid, signal.SIGSTOP)
        self.primary.cli("CLIENT", "KILL", "TYPE", "replica")
        await publish_all(w, "fo", ["lost-4", "lost-5"])
        self.assertEqual([o for _, o, _ in await events_until(sub, "fo", 5)], [1, 2, 3, 4, 5])
        self.primary.kill9()
        os.kill(self.replica.proc.pid, signal.SIGCONT)
        # Sentinel promotes the replica; both nodes follow it by themselves.
        await until(lambda: self.sentinel.primary_port() == self.replica.port, "the failover")
        for node in (a, b):
            await healthy(node, "the node on the new primary")
            self.assertGreaterEqual(metric(node, "tether_redis_term_changes_total"), 1)
        self.assertEqual(self.replica.cli("HGET", "tether:{fo}:m", "head"), "3")
        # No client resumes as recovered across the lost entries, on either
        # node; publishes go on under a new epoch on the new primary.
        await assert_old_epoch_is_lost(self, "fo", epoch, ((a, 5), (b, 4), (a, 3)), w, sub, 4)


class RedisWaitTest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        self.primary = RedisServer().start()
        self.replica = RedisServer("--replicaof", "127.0.0.1", str(self.primary.port)).start()
        await until(lambda: replica_in_sync(self.replica), "the replica's first sync")
        self.node = Server("--redis-wait", "1", "--redis-timeout", "1s", redis=self.primary).start()

    async def asyncTearDown(self):
        self.node.cleanup()
        os.kill(self.replica.proc.pid, signal.SIGCONT)
        self.replica.cleanup()
        self.primary.cleanup()

    async def test_a_publish_is_acknowledged_once_a_replica_has_it(self):
        w = await Client.open(self.node)
        await w.identify("writer")
        acks = await publish_all(w, "wt", ["one"])
        self.assertEqual(acks["one"]["offset"], 1)
        # The replica cannot confirm: NACK unavailable, never an ACK.
        os.kill(self.replica.proc.pid, signal.SIGSTOP)
        await w.send("PUBLISH", room="wt", id="two", data=2)
        m = await w.recv(timeout=15)
        while m["op"] == "HEARTBEAT_ACK":
            m = await w.recv(timeout=15)
        self.assertEqual((m["op"], m["d"]["code"]), ("NACK", "unavailable"), m)
        self.assertGreaterEqual(metric(self.node, "tether_redis_wait_failures_total"), 1)
        # The replica is back: the retry gets the original offset, confirmed.
        os.kill(self.replica.proc.pid, signal.SIGCONT)
        await until(lambda: self.replica.cli("HGET", "tether:{wt}:m", "head") == "2",
                    "the replica catching up")
        acks = await publish_all(w, "wt", ["two"])
        self.assertEqual(acks["two"]["offset"], 2)


class SentinelFlagsTest(unittest.TestCase):
    def test_bad_sentinel_flags_exit_2(self):
        import subprocess
        from harness import TETHER
        cases = [
            (["--redis-sentinel", "127.0.0.1:26379"], "go together"),
            (["--redis-master", "m"], "go together"),
            (["--redis-sentinel", "nohost", "--redis-master", "m"], "--redis-sentinel"),
            (["--redis-sentinel", "127.0.0.1:1", "--redis-master", "m", "--redis",
              "redis://127.0.0.1:1"], "excludes"),
            (["--redis-wait", "2"], "--redis-wait"),
            (["--redis", "redis://127.0.0.1:1", "--redis-wait", "-1"], "--redis-wait"),
        ]
        for args, needle in cases:
            r = subprocess.run([TETHER, "serve", "--allow-anonymous"] + args, capture_output=True,
                               text=True, timeout=20)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn(needle, r.stderr, args)


if __name__ == "__main__":
    unittest.main(verbosity=2)
