"""The examples run against the real server (and the Python peer): they are
documentation, so they must keep working."""

import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import Server, jwt  # noqa: E402

EXAMPLES = os.environ.get("TETHER_EXAMPLES_DIR", "")
HERE = os.path.dirname(os.path.abspath(__file__))


def run(name, *args, stdin=""):
    return subprocess.run([os.path.join(EXAMPLES, f"example_{name}"), *args], input=stdin, capture_output=True,
                          text=True, timeout=30)


class ExamplesTest(unittest.TestCase):
    def setUp(self):
        self.server = Server(memory=True).start()

    def tearDown(self):
        self.server.cleanup()

    def test_minimal_publishes_and_prints_the_ack(self):
        r = run("minimal", self.server.url, "lobby", jwt("alice"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("stored at offset 1", r.stdout)
        self.assertIn("[connected", r.stderr)

    def test_chat_sends_every_line_and_sees_them_back(self):
        r = run("chat", self.server.url, "general", jwt("bob"), stdin="hello\nsecond \"quoted\" line\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        status, body, _ = self.server.http("GET", "/api/rooms/general/history?since=0")
        self.assertEqual(status, 200)
        self.assertIn('"text":"hello"', body)
        self.assertIn('second \\"quoted\\" line', body)

    def test_generic_socket_authenticates_and_echoes(self):
        peer = subprocess.Popen([sys.executable, os.path.join(HERE, "ws_peer.py")], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        try:
            import json
            port = json.loads(peer.stdout.readline())["port"]
            ex = subprocess.Popen([os.path.join(EXAMPLES, "example_generic_socket"), f"ws://127.0.0.1:{port}/",
                                   '{"op":"auth","key":"secret"}'], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True)
            ex.stdin.write("echo hi\n")
            ex.stdin.flush()
            self.assertEqual(ex.stdout.readline(), "hi\n")  # the echo, after auth
            ex.stdin.close()
            self.assertEqual(ex.wait(timeout=30), 0)
            ex.stdout.close()
        finally:
            peer.kill()
            peer.wait()
            peer.stdin.close()
            peer.stdout.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
