"""Three `tether serve --redis` nodes behind a real nginx running
deploy/nginx.conf, on one real `redis-server` (docs/SCALING.md). Clients are
`tether connect` processes (the C++ client: reconnect, RESUME, outbox) that
only know nginx's address. The promise under node failures: every
acknowledged message reaches every subscriber exactly once and in order.

- kill -9 of one of the three nodes during a steady flow;
- a rolling restart of every node, one at a time, during a steady flow."""

import json
import os
import re
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from connect_test import assert_exactly_once_in_order, history  # noqa: E402
from harness import Connect, Nginx, RedisServer, Server, free_port, jwt  # noqa: E402


def metric(node, name):
    _, text, _ = node.http("GET", "/metrics", key=None)
    m = re.search(rf"^{name} (\d+)$", text, re.M)
    return int(m.group(1)) if m else 0


class ClusterTest(unittest.TestCase):
    def setUp(self):
        self.cleanups = []
        self.redis = RedisServer("--enable-debug-command", "local").start()
        self.cleanups.append(self.redis.cleanup)
        self.nodes = []
        for i in range(3):
            n = Server("--node-id", f"c{i}", "--publish-rate", "5000", "--publish-burst", "5000",
                       "--drain-timeout", "2s", redis=self.redis, port=free_port()).start()
            self.cleanups.append(n.cleanup)
            self.nodes.append(n)
        self.nginx = Nginx([n.port for n in self.nodes]).start()
        self.cleanups.append(self.nginx.cleanup)

    def tearDown(self):
        for f in reversed(self.cleanups):
            f()

    def connect(self, *args, user):
        c = Connect(self.nginx.url, "--token", jwt(user), "--backoff-initial", "100ms",
                    "--backoff-max", "1s", "-n", *args)
        self.cleanups.append(c.stop)
        return c

    def flow(self, room, total, during, subscribers=6):
        """Subscribers and a publisher through nginx; `during()` runs once
        the flow is under way; then every subscriber must have every message
        exactly once, in order, and the store exactly the messages."""
        subs = [self.connect("--room", room, user=f"sub{i}") for i in range(subscribers)]
        for s in subs:
            s.wait_for(lambda e: e["type"] == "room" and e["state"] == "joined", what="joined")
        pub = self.connect("--room", room, user="pub")
        pub.wait_status("connected")
        expected = [{"n": i} for i in range(total)]
        self.sent = 0

        def publish():
            for i in range(total):
                pub.send(json.dumps({"n": i}))
                self.sent = i + 1
                time.sleep(0.004)  # a steady flow, not a burst (pacing, not synchronisation)
        t = threading.Thread(target=publish)
        t.start()
        pub.wait_count("ack", total // 5)
        during()
        t.join()
        pub.wait_count("ack", total, timeout=90)
        for s in subs:
            s.wait_count("message", total, timeout=90)
        for s in subs:
            assert_exactly_once_in_order(self, s, expected, room)
        alive = next(n for n in self.nodes if n.proc.poll() is None)
        self.assertEqual([e["data"] for e in history(alive, room)], expected)
        return subs + [pub]

    def holds(self, node, user):
        status, body, _ = node.http("GET", "/api/sessions?limit=100")
        self.assertEqual(status, 200, body)
        return any(x["user"] == user and x["connected"] for x in json.loads(body)["sessions"])

    def test_kill9_of_one_of_three_nodes_during_a_steady_flow(self):
        def kill():
            # The publisher's node dies while Redis is busy (DEBUG SLEEP):
            # the publishes it forwarded meanwhile are stored once Redis wakes,
            # but never acknowledged. The client sends them again through
            # another node, where the publish log must recognise them.
            victim = next(n for n in self.nodes if self.holds(n, "pub"))
            self.survivors = [n for n in self.nodes if n is not victim]
            self.held = metric(victim, "tether_connections")
            asleep = threading.Thread(target=lambda: self.redis.cli("DEBUG", "SLEEP", "1"))
            before = self.sent
            asleep.start()
            while self.sent < before + 25:  # publishes sent towards the sleeping Redis
                time.sleep(0.004)
            victim.kill9()
            asleep.join()
        clients = self.flow("k9", 300, kill)
        survivors = self.survivors
        self.assertGreaterEqual(self.held, 1, "the killed node held clients")
        # Its clients came back through nginx on the others, their sessions resumed.
        self.assertGreaterEqual(sum(metric(n, "tether_sessions_claimed_total") for n in survivors),
                                self.held)
        self.assertEqual(sum(metric(n, "tether_connections") for n in survivors), len(clients))
        for c in clients:
            self.assertFalse(any(e["type"] == "history_lost" for e in c.events), c.events[-5:])
        # Some of the retried publishes were stored already: their ACKs came
        # from the publish log, with the original offsets.
        self.assertGreaterEqual(sum(metric(n, "tether_publish_duplicates_total") for n in survivors), 1)

    def test_rolling_restart_of_every_node_during_a_steady_flow(self):
        def roll():
            for n in self.nodes:
                n.terminate()  # SIGTERM: drain, its clients move to the others
                n.restart()
                deadline = time.monotonic() + 15
                while n.http("GET", "/healthz", key=None)[0] != 200:
                    self.assertLess(time.monotonic(), deadline, "the restarted node healthy")
                    time.sleep(0.05)  # polling the health endpoint a load balancer polls
        clients = self.flow("roll", 600, roll)
        for c in clients:
            self.assertFalse(any(e["type"] == "history_lost" for e in c.events), c.events[-5:])
        self.assertGreaterEqual(sum(metric(n, "tether_sessions_claimed_total") for n in self.nodes), 1)


class ClusterScriptTest(unittest.IsolatedAsyncioTestCase):
    """scripts/cluster.sh: one command up, a client through it, Ctrl-C down."""

    async def test_the_script_starts_a_working_cluster_and_ctrl_c_stops_it(self):
        import asyncio
        import signal
        import socket
        import subprocess
        from harness import TETHER, Client
        ports = [free_port() for _ in range(5)]
        env = dict(os.environ, TETHER_BIN=TETHER, PORT=str(ports[0]), REDIS_PORT=str(ports[1]),
                   NODE_PORTS=" ".join(map(str, ports[2:])))
        script = os.path.join(os.path.dirname(__file__), "..", "..", "..", "scripts", "cluster.sh")
        proc = subprocess.Popen([script], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            lines = []
            loop = asyncio.get_running_loop()
            while not any(line.startswith("tether cluster: ") for line in lines):
                line = await loop.run_in_executor(None, proc.stdout.readline)
                self.assertTrue(line, "".join(lines))
                lines.append(line)
            url = next(x for x in lines if x.startswith("tether cluster: ")).split()[-1]
            self.assertEqual(url, f"ws://127.0.0.1:{ports[0]}/")

            class Via:  # what Client.open needs of a server
                pass
            via = Via()
            via.url = url
            c = await Client.open(via)
            await c.identify(token="alice")
            await c.send("JOIN", room="lobby")
            await c.expect("JOINED")
            await c.send("PUBLISH", room="lobby", id="hi", data="hello")
            ops = {(await c.recv())["op"] for _ in range(2)}
            self.assertEqual(ops, {"ACK", "EVENT"})
            await c.close()
        finally:
            proc.send_signal(signal.SIGINT)  # Ctrl-C goes to the script
            rc = proc.wait(timeout=30)
            proc.stdout.close()
        self.assertEqual(rc, 130)
        for p in ports:  # nginx, Redis and the three nodes are gone
            with self.assertRaises(OSError, msg=f"port {p} still open"):
                socket.create_connection(("127.0.0.1", p), timeout=1).close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
