"""`tether serve`/`tether token` command line (clear errors, exit code 2) and
wss:// with a certificate."""

import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import unittest

import websockets

sys.path.insert(0, os.path.dirname(__file__))
from harness import TETHER, Server, jwt  # noqa: E402


class CommandLineTest(unittest.TestCase):
    def run_tether(self, *args, env=None):
        return subprocess.run([TETHER, *args], capture_output=True, text=True, timeout=30,
                              env={**os.environ, **(env or {})})

    def test_bad_flags_exit_2_with_a_clear_message(self):
        cases = [
            (["serve", "--listen", "nowhere", "--memory", "--allow-anonymous"], "--listen"),
            (["serve", "--fsync", "sometimes", "--memory", "--allow-anonymous"], "--fsync"),
            (["serve", "--heartbeat", "soon", "--memory", "--allow-anonymous"], "--heartbeat"),
            (["serve", "--memory"], "--token-secret"),
            (["serve", "--memory", "--allow-anonymous", "--token-secret", "x"], "excludes"),
            (["serve", "--memory", "--allow-anonymous", "--message-max", "9GiB"], "--message-max"),
            (["serve", "--memory", "--allow-anonymous", "--admin-key", "short"], "--admin-key"),
            (["serve", "--memory", "--allow-anonymous", "--log-format", "xml"], "--log-format"),
            (["serve", "--no-such-flag"], "no-such-flag"),
            (["token", "--user", "a"], "secret"),
            (["token", "--user", "a", "--secret", "s", "--ttl", "forever"], "--ttl"),
            (["frobnicate"], ""),
        ]
        for args, needle in cases:
            with self.subTest(args=args):
                r = self.run_tether(*args, env={"TETHER_TOKEN_SECRET": "", "TETHER_ADMIN_KEY": ""})
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn(needle, r.stderr + r.stdout)

    def test_help_lists_every_flag(self):
        out = self.run_tether("serve", "--help").stdout
        for flag in ("--listen", "--data", "--memory", "--fsync", "--admin-key", "--token-secret",
                     "--allow-anonymous", "--heartbeat", "--session-ttl", "--history-size", "--history-ttl",
                     "--max-connections", "--tls-cert", "--tls-key", "--log-format"):
            self.assertIn(flag, out)

    def test_token_is_verifiable_hs256(self):
        r = self.run_tether("token", "--secret", "abc", "--user", "alice", "--ttl", "5m")
        self.assertEqual(r.returncode, 0)
        header, payload, sig = r.stdout.strip().split(".")
        pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
        import base64
        self.assertEqual(json.loads(base64.urlsafe_b64decode(pad(header)))["alg"], "HS256")
        claims = json.loads(base64.urlsafe_b64decode(pad(payload)))
        self.assertEqual(claims["sub"], "alice")
        self.assertEqual(claims["exp"] - claims["iat"], 300)

    def test_json_logs_are_one_valid_object_per_line(self):
        # The error message quotes the path: it must still be valid JSON.
        r = self.run_tether("serve", "--data", '/proc/quote"dir', "--allow-anonymous", "--listen",
                            "127.0.0.1:0", "--log-format", "json")
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        self.assertTrue(lines)
        for line in lines:
            obj = json.loads(line)
            self.assertEqual(set(obj), {"time", "level", "msg"})
        self.assertIn('quote"dir', lines[-1] and json.loads(lines[-1])["msg"])

    def test_unwritable_data_dir_fails_clearly(self):
        r = self.run_tether("serve", "--data", "/proc/tether-cannot-be-here", "--allow-anonymous",
                            "--listen", "127.0.0.1:0")
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot", r.stderr + r.stdout)


class TlsTest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        self.dir = tempfile.mkdtemp(prefix="tether-tls-")
        self.cert, self.key = os.path.join(self.dir, "cert.pem"), os.path.join(self.dir, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.key,
                        "-out", self.cert, "-days", "1", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
        self.server = Server("--tls-cert", self.cert, "--tls-key", self.key, memory=True)
        self.server.start_pattern = r"listening on wss://127\.0\.0\.1:(\d+)"
        self.server.start()

    async def asyncTearDown(self):
        self.server.cleanup()
        shutil.rmtree(self.dir, ignore_errors=True)

    async def test_wss_with_a_verified_certificate(self):
        ctx = ssl.create_default_context(cafile=self.cert)
        async with websockets.connect(f"wss://127.0.0.1:{self.server.port}/", subprotocols=["tether.v1"],
                                      ssl=ctx) as ws:
            self.assertEqual(json.loads(await ws.recv())["op"], "HELLO")
            await ws.send(json.dumps({"op": "IDENTIFY", "d": {"token": jwt("alice")}}))
            self.assertEqual(json.loads(await ws.recv())["op"], "READY")
        # A client that does not trust the certificate is refused by its own TLS check.
        with self.assertRaises(ssl.SSLCertVerificationError):
            await websockets.connect(f"wss://127.0.0.1:{self.server.port}/", subprotocols=["tether.v1"],
                                     ssl=ssl.create_default_context())


if __name__ == "__main__":
    unittest.main(verbosity=2)
