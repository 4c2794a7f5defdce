"""Starts and stops real `tether serve` processes for integration tests and
speaks docs/PROTOCOL.md with Python `websockets` (a client we did not write)."""

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

import websockets

TETHER = os.environ.get("TETHER_BIN", "tether")
SECRET = "integration-secret"
ADMIN_KEY = "integration-admin-key"
STARTUP_TIMEOUT_S = 10


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwt(sub, exp_offset_s=3600, secret=SECRET, alg="HS256", nbf_offset_s=None, sign=True):
    """Builds a token independently of tether's own minting code."""
    now = int(time.time())
    header = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    claims = {"sub": sub, "exp": now + exp_offset_s}
    if nbf_offset_s is not None:
        claims["nbf"] = now + nbf_offset_s
    payload = b64url(json.dumps(claims).encode())
    signing_input = f"{header}.{payload}".encode()
    sig = b64url(hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()) if sign else ""
    return f"{header}.{payload}.{sig}"


def stop_process(proc):
    """Kills a child process if it still runs, and closes its log pipe."""
    if proc and proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)
    if proc and proc.stdout:
        proc.stdout.close()


class Server:
    """One `tether serve` process on a free port; stopped by stop()/kill()."""

    def __init__(self, *extra, data_dir=None, memory=False, port=0, redis=None, anonymous=False):
        self.data_dir = data_dir
        self.own_dir = None
        if not memory and data_dir is None and redis is None:
            self.own_dir = tempfile.mkdtemp(prefix="tether-it-")
            self.data_dir = self.own_dir
        if isinstance(redis, RedisSentinel):
            store = ["--redis-sentinel", redis.address, "--redis-master", redis.name]
        elif redis is not None:
            store = ["--redis", redis.url] if isinstance(redis, RedisServer) else ["--redis", redis]
        else:
            store = ["--memory"] if memory else ["--data", self.data_dir]
        auth = ["--allow-anonymous"] if anonymous else ["--token-secret", SECRET]
        self.args = [TETHER, "serve", "--listen", f"127.0.0.1:{port}"] + auth + \
            ["--admin-key", ADMIN_KEY] + store + list(extra)
        self.proc = None
        self.port = None
        self.log = []
        self.start_pattern = r"listening on ws://127\.0\.0\.1:(\d+)"

    def start(self):
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("tether serve exited: " + "".join(self.log))
            self.log.append(line)
            m = re.search(self.start_pattern, line)
            if m:
                self.port = int(m.group(1))
                # Keep draining the log so the process never blocks on a full pipe.
                threading.Thread(target=self._pump, daemon=True).start()
                return self
        raise RuntimeError("tether serve did not report its port")

    def _pump(self):
        for line in self.proc.stdout:
            self.log.append(line)

    @property
    def url(self):
        return f"ws://127.0.0.1:{self.port}/"

    def http(self, method, path, body=None, key=ADMIN_KEY):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method,
                                     data=body.encode() if isinstance(body, str) else body)
        if key is not None:
            req.add_header("Authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read().decode(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(), dict(e.headers)

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, timeout=10):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def stop(self):
        stop_process(self.proc)

    def cleanup(self):
        self.stop()
        if self.own_dir:
            shutil.rmtree(self.own_dir, ignore_errors=True)

    def restart(self):
        """Starts again on the same port and data directory (after kill9/terminate)."""
        self.stop()
        self.args[self.args.index("--listen") + 1] = f"127.0.0.1:{self.port}"
        return self.start()


class RedisServer:
    """A real `redis-server` on a free loopback port, in its own directory.
    No persistence unless asked: a restart comes back empty."""

    def __init__(self, *extra, port=None):
        self.dir = tempfile.mkdtemp(prefix="tether-redis-")
        self.port = port or free_port()
        self.extra = list(extra)
        self.proc = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--save", "", "--appendonly", "no", "--protected-mode", "no"] + self.extra,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        log = []
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("redis-server exited: " + "".join(log))
            log.append(line)
            if "Ready to accept connections" in line:
                threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()
                return self
        raise RuntimeError("redis-server did not get ready: " + "".join(log))

    def cli(self, *args):
        r = subprocess.run(["redis-cli", "-p", str(self.port), "--no-raw"] + [str(a) for a in args],
                           capture_output=True, text=True, timeout=10)
        if r.returncode != 0 or r.stdout.startswith("Could not connect"):
            raise RuntimeError(r.stdout + r.stderr)
        out = r.stdout.strip()
        return out[1:-1] if out.startswith('"') and out.endswith('"') else out

    def kill9(self):
        self.stop()

    def restart(self):
        self.stop()
        return self.start()

    def stop(self):
        stop_process(self.proc)

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisSentinel:
    """A real `redis-sentinel` on a free loopback port watching `primary`
    under `name`, with short timeouts so that a failover takes ~1 s."""

    def __init__(self, primary, name="tether-primary", down_after_ms=500):
        self.dir = tempfile.mkdtemp(prefix="tether-sentinel-")
        self.port = free_port()
        self.name = name
        self.conf = os.path.join(self.dir, "sentinel.conf")
        with open(self.conf, "w") as f:
            f.write(f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n"
                    f"sentinel monitor {name} 127.0.0.1 {primary.port} 1\n"
                    f"sentinel down-after-milliseconds {name} {down_after_ms}\n"
                    f"sentinel failover-timeout {name} 2000\n"
                    f"sentinel parallel-syncs {name} 1\n")
        self.proc = None

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        self.proc = subprocess.Popen(["redis-sentinel", self.conf], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.events = []
        ready = threading.Event()

        def pump():
            for line in self.proc.stdout:
                self.events.append(line)
                if "+monitor" in line:
                    ready.set()
        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(STARTUP_TIMEOUT_S):
            raise RuntimeError("redis-sentinel did not start: " + "".join(self.events))
        return self

    def primary_port(self):
        r = subprocess.run(["redis-cli", "-p", str(self.port), "SENTINEL",
                            "get-master-addr-by-name", self.name],
                           capture_output=True, text=True, timeout=10)
        lines = r.stdout.split()
        return int(lines[1]) if len(lines) == 2 else None

    def cleanup(self):
        stop_process(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


class Nginx:
    """A real nginx running deploy/nginx.conf, with its listen port and its
    upstream servers replaced by the test's."""

    CONF = os.path.join(os.path.dirname(__file__), "..", "..", "..", "deploy", "nginx.conf")

    def __init__(self, upstream_ports, port=None):
        self.dir = tempfile.mkdtemp(prefix="tether-nginx-")
        os.makedirs(os.path.join(self.dir, "tmp"))
        self.port = port or free_port()
        with open(self.CONF) as f:
            conf = f.read()
        conf = conf.replace("listen 127.0.0.1:8080;", f"listen 127.0.0.1:{self.port};")
        opts = re.search(r"server 127\.0\.0\.1:700\d( [^;]*);", conf).group(1)
        servers = "".join(f"        server 127.0.0.1:{p}{opts};\n" for p in upstream_ports)
        conf = re.sub(r"(        server 127\.0\.0\.1:700\d [^\n]*\n)+", servers, conf)
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.proc = None

    @property
    def url(self):
        return f"ws://127.0.0.1:{self.port}/"

    def start(self):
        self.proc = subprocess.Popen(["nginx", "-p", self.dir, "-e", "stderr", "-c", self.conf,
                                      "-g", "daemon off;"], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:  # nginx prints nothing when it is up: its port answers
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("nginx did not start")
                time.sleep(0.02)

    def cleanup(self):
        # The master and its workers: a kill of the master alone would leave
        # the workers holding the log pipe.
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        stop_process(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


class Proxy:
    """A `tether proxy` process in front of `upstream_port`, with its control API."""

    def __init__(self, upstream_port):
        self.proc = subprocess.Popen([TETHER, "proxy", "--listen", "127.0.0.1:0", "--upstream",
                                      f"127.0.0.1:{upstream_port}"], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        line = self.proc.stdout.readline()
        m = re.search(r"listening on 127\.0\.0\.1:(\d+) .* control on http://127\.0\.0\.1:(\d+)/faults", line)
        if not m:
            raise RuntimeError("proxy did not start: " + line)
        self.port, self.control = int(m.group(1)), int(m.group(2))
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()
        self.url = f"ws://127.0.0.1:{self.port}/"

    def call(self, method, path, body=None):
        req = urllib.request.Request(f"http://127.0.0.1:{self.control}{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def stop(self):
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc.stdout.close()


class Connect:
    """A `tether connect --json` process: stdin lines in, one JSON event per
    stdout line out, collected by a thread; wait_for() blocks on a condition
    variable until an event matches (no sleeps)."""

    def __init__(self, url, *args, raw=False, prefix=(), network_monitor=False):
        cmd = list(prefix) + [TETHER, "connect", url, "--json"] + \
            ([] if network_monitor else ["--no-network-monitor"]) + (["--raw"] if raw else []) + list(args)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.events = []
        self.stderr = []
        self.closed = False
        self.cv = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: [self.stderr.append(l) for l in self.proc.stderr], daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            ev = json.loads(line)
            ev["t"] = time.monotonic()
            with self.cv:
                self.events.append(ev)
                self.cv.notify_all()
        with self.cv:
            self.closed = True
            self.cv.notify_all()

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def mark(self):
        """The index of the next event: wait_for(..., since=mark) ignores older ones."""
        with self.cv:
            return len(self.events)

    def wait_for(self, pred, timeout=15, since=0, what="event"):
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                for ev in self.events[since:]:
                    if pred(ev):
                        return ev
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    notable = [e for e in self.events if e["type"] != "latency"]
                    raise AssertionError(f"no {what} within {timeout} s; last events: {notable[-8:]}; "
                                         f"stderr: {''.join(self.stderr[-5:])}")
                self.cv.wait(min(left, 0.5))

    def wait_status(self, state, since=0, timeout=15, **fields):
        return self.wait_for(lambda e: e["type"] == "status" and e["state"] == state and
                             all(e.get(k) == v for k, v in fields.items()),
                             timeout=timeout, since=since, what=f"status {state} {fields}")

    def of(self, kind, since=0):
        with self.cv:
            return [e for e in self.events[since:] if e["type"] == kind]

    def wait_count(self, kind, n, timeout=30, pred=lambda e: True):
        def enough(_):
            return len([e for e in self.events if e["type"] == kind and pred(e)]) >= n
        with self.cv:
            deadline = time.monotonic() + timeout
            while not enough(None):
                left = deadline - time.monotonic()
                if left <= 0:
                    got = len([e for e in self.events if e["type"] == kind and pred(e)])
                    raise AssertionError(f"{got} of {n} {kind} events within {timeout} s; "
                                         f"stderr: {''.join(self.stderr[-5:])}")
                self.cv.wait(min(left, 0.5))

    def exit_code(self, timeout=15):
        return self.proc.wait(timeout=timeout)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except (OSError, ValueError):
                pass


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    """A protocol-level client: every frame is explicit, nothing is hidden."""

    def __init__(self, ws):
        self.ws = ws

    @classmethod
    async def open(cls, server, subprotocols=("tether.v1",), **kw):
        ws = await websockets.connect(server.url, subprotocols=list(subprotocols) if subprotocols else None,
                                      open_timeout=10, **kw)
        return cls(ws)

    async def send(self, op, **d):
        await self.ws.send(json.dumps({"op": op, "d": d}))

    async def recv(self, timeout=10):
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def expect(self, op, timeout=10):
        while True:
            m = await self.recv(timeout)
            if m["op"] == op:
                return m["d"]
            if m["op"] not in ("HEARTBEAT_ACK",):
                raise AssertionError(f"expected {op}, got {m}")

    async def closed_with(self, timeout=10):
        """Reads until the server closes; returns (code, reason)."""
        try:
            while True:
                await asyncio.wait_for(self.ws.recv(), timeout)
        except websockets.exceptions.ConnectionClosed as e:
            return (e.rcvd.code if e.rcvd else None), (e.rcvd.reason if e.rcvd else "")

    async def identify(self, user="alice", token=None):
        hello = await self.expect("HELLO")
        await self.send("IDENTIFY", token=token or jwt(user), client={"name": "py-it", "version": "1"})
        ready = await self.expect("READY")
        return hello, ready

    async def abort(self):
        """Drops the TCP connection without a close handshake."""
        self.ws.transport.abort()
        try:
            await self.ws.wait_closed()
        except Exception:
            pass

    async def close(self):
        await self.ws.close()
