"""The Linux network monitor, for real: the client runs in its own network
namespace behind a veth pair; taking the link down must put it offline at once
(no attempts while offline), and bringing it up must reconnect at once.
Needs root for `ip netns` (CI runs as root); skipped otherwise, saying why."""

import os
import shutil
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import Connect, Server, jwt  # noqa: E402

NS = f"tether-nm-{os.getpid()}"
HOST_IF, NS_IF = f"tna{os.getpid() % 100000}", f"tnb{os.getpid() % 100000}"
HOST_IP, NS_IP = "10.211.7.1", "10.211.7.2"


def sh(*args):
    subprocess.run(args, check=True, capture_output=True)


def in_ns(*args):
    sh("ip", "netns", "exec", NS, *args)


@unittest.skipUnless(os.geteuid() == 0 and shutil.which("ip"), "needs root and iproute2 for ip netns")
class NetworkMonitorTest(unittest.TestCase):
    def setUp(self):
        sh("ip", "netns", "add", NS)
        self.addCleanup(lambda: subprocess.run(["ip", "netns", "del", NS], capture_output=True))
        sh("ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", NS_IF)
        self.addCleanup(lambda: subprocess.run(["ip", "link", "del", HOST_IF], capture_output=True))
        sh("ip", "link", "set", NS_IF, "netns", NS)
        sh("ip", "addr", "add", f"{HOST_IP}/24", "dev", HOST_IF)
        sh("ip", "link", "set", HOST_IF, "up")
        in_ns("ip", "addr", "add", f"{NS_IP}/24", "dev", NS_IF)
        in_ns("ip", "link", "set", NS_IF, "up")
        in_ns("ip", "link", "set", "lo", "up")
        self.server = Server(memory=True)
        self.server.args[self.server.args.index("--listen") + 1] = f"{HOST_IP}:0"
        self.server.start_pattern = r"listening on ws://10\.211\.7\.1:(\d+)"
        self.server.start()
        self.addCleanup(self.server.cleanup)

    def test_link_down_goes_offline_and_link_up_reconnects_at_once(self):
        c = Connect(f"ws://{HOST_IP}:{self.server.port}/", "--token", jwt("alice"), "--room", "r", "-n",
                    "--backoff-initial", "2s", "--backoff-max", "10s", prefix=["ip", "netns", "exec", NS],
                    network_monitor=True)
        self.addCleanup(c.stop)
        c.wait_status("connected")

        since = c.mark()
        t0 = time.monotonic()
        in_ns("ip", "link", "set", NS_IF, "down")
        off = c.wait_status("disconnected", since=since, reason="offline", timeout=10)
        self.assertLess(off["t"] - t0, 2.0, "the monitor did not notice the link going down")
        window = c.mark()
        time.sleep(2.0)  # an observation window: no attempt may start while offline
        self.assertFalse([e for e in c.events[window:] if e["type"] == "status" and e["phase"] == "opening"],
                         "attempted while offline")

        since = c.mark()
        t0 = time.monotonic()
        in_ns("ip", "link", "set", NS_IF, "up")
        on = c.wait_status("connected", since=since, timeout=10)
        # At once: not after the 2 s backoff (the monitor resets it).
        self.assertLess(on["t"] - t0, 1.5, "coming online did not reconnect at once")


if __name__ == "__main__":
    unittest.main(verbosity=2)
