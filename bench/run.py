#!/usr/bin/env python3
"""The whole benchmark comparison in one run (issue #6).

Starts every server itself (tether serve, the raw Beast floor, Node `ws`,
Socket.IO 4.8), drives each with the same C++ load generator
(bench/tether-loadgen) where its protocol allows, and rewrites
docs/BENCHMARKS.md with the table, the machine, the versions, the exact
commands and the gnuplot plots (PNG in docs/bench/).

    bench/run.py --build build/release            # the full run (~20 min)
    bench/run.py --build build/dev --smoke --out /tmp/b/BENCHMARKS.md

--smoke runs every scenario at a tiny size (CI: the harness must not rot) and
still checks the correctness figures (storm: nothing lost or duplicated).
Use scripts/bench.sh for the full run: it installs, builds `release` and
calls this script.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
NODE_DIR = os.path.join(ROOT, "bench", "node")

COMMANDS = []  # every load generator command, for the reproduce section


def log(*a):
    print("[bench]", *a, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listening on {port} after {timeout} s")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Server:
    """One server process of the comparison."""

    def __init__(self, kind, build, workdir, extra=None, prefix=None):
        self.kind = kind
        self.prefix = prefix or []  # e.g. taskset -c 0
        self.build = build
        self.workdir = workdir
        self.extra = extra or []
        self.port = free_port()
        self.proc = None
        self.data = None

    def argv(self):
        return self.prefix + self.command()

    def command(self):
        if self.kind == "tether":
            return [os.path.join(self.build, "tools", "tether"), "serve",
                    "--listen", f"127.0.0.1:{self.port}", "--allow-anonymous",
                    "--publish-rate", "1000000000", "--publish-burst", "1000000000",
                    "--max-connections", "19000", "--log-level", "warn"] + self.extra
        if self.kind == "raw":
            return [os.path.join(self.build, "bench", "tether-raw-server"),
                    "--listen", f"127.0.0.1:{self.port}"]
        if self.kind == "ws":
            return ["node", os.path.join(NODE_DIR, "ws_server.js"), str(self.port)]
        if self.kind == "sio":
            return ["node", os.path.join(NODE_DIR, "sio_server.js"), str(self.port)]
        raise ValueError(self.kind)

    def start(self):
        self.log = open(os.path.join(self.workdir, f"{self.kind}-{self.port}.log"), "ab")
        self.proc = subprocess.Popen(self.argv(), stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=self.workdir)
        wait_listening(self.port, self.proc)
        return self

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def url(self, scenario):
        if self.kind == "tether":
            return f"ws://127.0.0.1:{self.port}/"
        if self.kind in ("raw", "ws"):
            return f"ws://127.0.0.1:{self.port}/" + ("fanout" if scenario == "fanout" else "echo")
        return f"ws://127.0.0.1:{self.port}/"

    def proto(self):
        return {"tether": "tether", "raw": "raw", "ws": "raw", "sio": "sio"}[self.kind]

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


PEERS = ["tether", "raw", "ws", "sio"]
NAMES = {"tether": "tether", "raw": "raw Beast (floor)", "ws": "Node ws 8.18",
         "sio": "Socket.IO 4.8"}


def loadgen(args, cfg, stdin=None, timeout=600, prefix=()):
    argv = list(prefix) + [os.path.join(cfg.build, "bench", "tether-loadgen")] + [str(a) for a in args]
    COMMANDS.append(" ".join(list(prefix) + argv[len(prefix) + 1:]))
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=stdin)
    if out.returncode != 0:
        raise RuntimeError(f"loadgen {' '.join(argv[1:])} failed: {out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_of(runs, key):
    return statistics.median(r[key] for r in runs)


# ---- scenarios ------------------------------------------------------------------------------

def bench_fanout(cfg, work):
    """Per N: saturation of every server, then latency at half of each server's own
    saturated message rate (what the issue asks), then latency of every server at one
    common rate (half the slowest server's saturated rate: the like-for-like view)."""
    rows = []

    def lat_runs(s, n, rate):
        return [loadgen(["fanout", "--url", s.url("fanout"), "--proto", s.proto(),
                         "--subscribers", n, "--duration", cfg.duration,
                         "--warmup", cfg.warmup, "--rate", f"{rate:.1f}"], cfg)
                for _ in range(cfg.reps)]

    for n in cfg.fanout_n:
        by_kind = {}
        for kind in PEERS:
            with Server(kind, cfg.build, work, ["--memory"] if kind == "tether" else None) as s:
                sat = [loadgen(["fanout", "--url", s.url("fanout"), "--proto", s.proto(),
                                "--subscribers", n, "--duration", cfg.duration,
                                "--warmup", cfg.warmup, "--window", cfg.window], cfg)
                       for _ in range(cfg.reps)]
                dps = median_of(sat, "deliveries_per_s")
                half = max(1.0, dps / n / 2)
                lat = lat_runs(s, n, half)
                by_kind[kind] = {"server": kind, "subscribers": n, "deliveries_per_s": dps,
                                 "runs": [r["deliveries_per_s"] for r in sat], "rate": half,
                                 "p50_us": median_of(lat, "p50_us"),
                                 "p99_us": median_of(lat, "p99_us")}
        common = min(r["rate"] for r in by_kind.values())
        for kind in PEERS:
            with Server(kind, cfg.build, work, ["--memory"] if kind == "tether" else None) as s:
                lat = lat_runs(s, n, common)
            row = by_kind[kind]
            row.update({"common_rate": common, "common_p50_us": median_of(lat, "p50_us"),
                        "common_p99_us": median_of(lat, "p99_us")})
            log("fanout", row)
            rows.append(row)
    return rows


def bench_echo(cfg, work):
    rows = []
    for kind in PEERS:
        with Server(kind, cfg.build, work, ["--memory"] if kind == "tether" else None) as s:
            runs = [loadgen(["echo", "--url", s.url("echo"), "--proto", s.proto(),
                             "--connections", cfg.echo_m, "--duration", cfg.duration,
                             "--warmup", cfg.warmup], cfg) for _ in range(cfg.reps)]
            row = {"server": kind, "connections": cfg.echo_m,
                   "round_trips_per_s": median_of(runs, "round_trips_per_s"),
                   "p50_us": median_of(runs, "p50_us"), "p99_us": median_of(runs, "p99_us")}
            log("echo", row)
            rows.append(row)
    return rows


def bench_idle(cfg, work):
    rows = []
    for kind in PEERS:
        with Server(kind, cfg.build, work, ["--memory"] if kind == "tether" else None) as s:
            # Warm the server with one short connection cycle, then take the baseline.
            loadgen(["echo", "--url", s.url("echo"), "--proto", s.proto(), "--connections", 2,
                     "--duration", 0.2, "--warmup", 0.1], cfg)
            time.sleep(0.5)  # let the runtime settle (Node's GC) before the baseline
            before = rss_kib(s.proc.pid)
            argv = [os.path.join(cfg.build, "bench", "tether-loadgen"), "idle", "--url",
                    s.url("idle"), "--proto", s.proto(), "--connections", str(cfg.idle_n)]
            COMMANDS.append(" ".join(argv[1:]))
            p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            ready = json.loads(p.stdout.readline())
            if ready.get("event") != "ready":
                raise RuntimeError(f"idle: {ready}")
            time.sleep(cfg.idle_settle)  # observation window: memory after the burst settles
            after = rss_kib(s.proc.pid)
            p.stdin.close()
            p.wait(60)
            per = (after - before) * 1024 / cfg.idle_n
            row = {"server": kind, "connections": cfg.idle_n, "rss_before_kib": before,
                   "rss_after_kib": after, "bytes_per_connection": per,
                   "open_ms": ready["open_ms"]}
            log("idle", row)
            rows.append(row)
    return rows


def peak_rate(times_ms, window_ms=100):
    """The highest count in any window_ms-long window, per second (None: not observed)."""
    if not times_ms:
        return None
    t = sorted(times_ms)
    best, lo = 0, 0
    for hi in range(len(t)):
        while t[hi] - t[lo] >= window_ms:
            lo += 1
        best = max(best, hi - lo + 1)
    return best * 1000.0 / window_ms


def timeline(times_ms, bucket_ms=50):
    """(seconds after the kill, events per second) in bucket_ms buckets."""
    if not times_ms:
        return []
    n = int(max(times_ms) // bucket_ms) + 2
    v = [0] * n
    for x in times_ms:
        v[int(max(0, x) // bucket_ms)] += 1
    return [(i * bucket_ms / 1000, c * 1000 / bucket_ms) for i, c in enumerate(v)]


def storm_once(cfg, work, server, argv):
    """Starts the clients, waits for the steady flow, kill -9 + restart, returns the figures."""
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        steady = json.loads(p.stdout.readline() or "{}")
        if steady.get("event") != "steady":
            raise RuntimeError(f"storm: no steady state ({steady}); see {work}")
        time.sleep(cfg.storm_flow)  # the steady flow runs for a while before the crash
        # Tell the clients first: a disconnect they see before the "kill" line
        # would not count as part of the storm.
        kill_ms = int(time.time() * 1000)
        p.stdin.write(f"kill {kill_ms}\n")
        p.stdin.flush()
        time.sleep(0.2)  # the line reaches the clients' event loop before the crash
        server.kill9()
        server.start()  # same port (and data directory)
        p.stdin.write(f"restarted {int(time.time() * 1000)}\n")
        p.stdin.flush()
        line = p.stdout.readline()
        p.wait(30)
    finally:
        if p.poll() is None:
            p.kill()
        server.stop()
    if not line:
        raise RuntimeError(f"storm: no result from {argv[:3]}; see {work}")
    row = json.loads(line)
    row["connect_ms"] = steady["connect_ms"]
    row["peak_attempts_per_s"] = peak_rate(row["attempt_ms"])
    row["peak_handshakes_per_s"] = peak_rate(row["handshake_ms"])
    log("storm", {k: v for k, v in row.items() if not k.endswith("_ms") or "back" in k})
    return row


def bench_storm(cfg, work):
    rows = []
    for jitter in ("default", "full", "none"):
        data = tempfile.mkdtemp(prefix="storm-", dir=work)
        s = Server("tether", cfg.build, work, ["--data", data]).start()
        argv = [os.path.join(cfg.build, "bench", "tether-loadgen"), "storm", "--url", s.url("storm"),
                "--clients", str(cfg.storm_n), "--rooms", str(cfg.storm_rooms), "--rate",
                str(cfg.storm_rate), "--jitter", jitter, "--label", jitter]
        COMMANDS.append(" ".join(argv[1:]) + "   # stdin: kill MS / restarted MS")
        rows.append(storm_once(cfg, work, s, argv))
    # Socket.IO with its own client (the peer's protocol needs its client for
    # reconnection and recovery); Node ws has no sessions to resume.
    s = Server("sio", cfg.build, work).start()
    argv = ["node", os.path.join(NODE_DIR, "sio_storm.js"), f"http://127.0.0.1:{s.port}",
            str(cfg.storm_n), str(cfg.storm_rooms), str(cfg.storm_rate)]
    COMMANDS.append("node bench/node/sio_storm.js URL " + " ".join(argv[3:]) +
                    "   # stdin: kill MS / restarted MS")
    row = storm_once(cfg, work, s, argv)
    row["jitter"] = "socket.io"
    rows.append(row)
    return rows


def bench_resume(cfg, work):
    rows = []
    for label, extra in (("memory", ["--memory"]), ("sqlite, fsync batch", None)):
        with Server("tether", cfg.build, work, extra or ["--data", tempfile.mkdtemp(dir=work)]) as s:
            r = loadgen(["resume", "--url", s.url("resume"), "--events", cfg.resume_events,
                         "--runs", cfg.resume_runs, "--label", label], cfg)
            log("resume", r)
            rows.append(r)
    return rows


def bench_durable(cfg, work):
    rows = []
    for mode in ("memory", "off", "batch", "always"):
        extra = ["--memory"] if mode == "memory" else ["--data", tempfile.mkdtemp(dir=work),
                                                        "--fsync", mode]
        with Server("tether", cfg.build, work, extra) as s:
            runs = [loadgen(["echo", "--url", s.url("echo"), "--connections", cfg.durable_p,
                             "--inflight", cfg.durable_w, "--duration", cfg.duration,
                             "--warmup", cfg.warmup, "--label", mode], cfg)
                    for _ in range(cfg.reps)]
            row = {"mode": mode, "acked_per_s": median_of(runs, "round_trips_per_s"),
                   "p50_us": median_of(runs, "p50_us"), "p99_us": median_of(runs, "p99_us")}
            log("durable", row)
            rows.append(row)
    return rows


def bench_scaling(cfg, work):
    """tether's engine shards and threads: --threads 1 (one shard) against
    --threads T (T shards, the default) for echo (PUBLISH -> ACK) and fan-out
    (N = 100), the server and the load generator pinned to the same cores
    with taskset, so the load generator's core time comes out of the server's."""
    cores = os.cpu_count() or 1
    cpus = f"0-{cores - 1}"
    pin = ["taskset", "-c", cpus] if shutil.which("taskset") else []
    rows = []
    for threads in sorted({1, cores}):
        extra = ["--memory", "--threads", str(threads)]
        with Server("tether", cfg.build, work, extra, prefix=pin) as s:
            echo = [loadgen(["echo", "--url", s.url("echo"), "--connections", cfg.echo_m,
                             "--duration", cfg.duration, "--warmup", cfg.warmup], cfg, prefix=pin)
                    for _ in range(cfg.reps)]
        with Server("tether", cfg.build, work, extra, prefix=pin) as s:
            fan = [loadgen(["fanout", "--url", s.url("fanout"), "--subscribers", cfg.fanout_n[0],
                            "--duration", cfg.duration, "--warmup", cfg.warmup,
                            "--window", cfg.window], cfg, prefix=pin)
                   for _ in range(cfg.reps)]
        row = {"threads": threads, "shards": threads, "cpus": cpus if pin else "unpinned",
               "round_trips_per_s": median_of(echo, "round_trips_per_s"),
               "echo_runs": [r["round_trips_per_s"] for r in echo],
               "deliveries_per_s": median_of(fan, "deliveries_per_s"),
               "fanout_runs": [r["deliveries_per_s"] for r in fan],
               "subscribers": cfg.fanout_n[0]}
        log("scaling", row)
        rows.append(row)
    return rows


def bench_client(cfg, work):
    with Server("tether", cfg.build, work, ["--memory"]) as s:
        r = loadgen(["client", "--url", s.url("client"), "--idle", cfg.client_idle, "--runs",
                     cfg.client_runs], cfg)
        log("client", r)
        return r


# ---- report -----------------------------------------------------------------------------------

def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True,
                              timeout=20).stdout.strip()
    except Exception:  # noqa: BLE001 - a missing tool just leaves the field empty
        return ""


def machine():
    model = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    mem = sh("grep MemTotal /proc/meminfo | awk '{printf \"%.0f GiB\", $2/1048576}'")
    return {
        "cpu": f"{os.cpu_count()} × {model}" if model else f"{os.cpu_count()} CPUs",
        "memory": mem,
        "kernel": platform.release(),
        "os": sh(". /etc/os-release && echo $PRETTY_NAME"),
        "compiler": sh("c++ --version | head -1"),
        "node": sh("node --version"),
        "boost": sh("grep -m1 'define BOOST_LIB_VERSION' /usr/include/boost/version.hpp | cut -d'\"' -f2"),
        "ws": node_version("ws"),
        "socket.io": node_version("socket.io"),
        "tether": sh(f"git -C {ROOT} describe --always --dirty"),
    }


def node_version(pkg):
    try:
        with open(os.path.join(NODE_DIR, "node_modules", pkg, "package.json")) as f:
            return json.load(f)["version"]
    except OSError:
        return "?"


def gnuplot(script, cwd):
    subprocess.run(["gnuplot"], input=script, text=True, check=True, cwd=cwd)


def histogram(output, title, clustered=True):
    """The gnuplot preamble of a bar chart (PNG, 900 x 420)."""
    cluster = "set style histogram clustered gap 1\n" if clustered else ""
    return (f"set terminal pngcairo size 900,420 noenhanced\nset output '{output}'\n"
            f"set title '{title}'\nset style data histograms\n{cluster}"
            "set style fill solid 0.8 border -1\n")


def plots(res, plot_dir):
    os.makedirs(plot_dir, exist_ok=True)
    with open(os.path.join(plot_dir, "fanout.dat"), "w") as f:
        for kind in PEERS:
            vals = [next(r["deliveries_per_s"] for r in res["fanout"]
                         if r["server"] == kind and r["subscribers"] == n)
                    for n in res["cfg"]["fanout_n"]]
            f.write(f'"{NAMES[kind]}" ' + " ".join(f"{v:.0f}" for v in vals) + "\n")
    cols = " , ".join(f"'fanout.dat' using {i + 2}:xtic(1) title 'N = {n}'"
                      for i, n in enumerate(res["cfg"]["fanout_n"]))
    gnuplot(histogram("fanout.png", "Fan-out: deliveries per second at saturation (median)") + f"""set xrange [-0.6:3.6]
set key top right
set grid ytics
set yrange [0:*]
set format y '%.0f'
plot {cols}
""", plot_dir)
    with open(os.path.join(plot_dir, "idle.dat"), "w") as f:
        for r in res["idle"]:
            f.write(f'"{NAMES[r["server"]]}" {r["bytes_per_connection"]:.0f}\n')
    gnuplot(histogram("idle.png", f"Server memory per idle connection at {res['cfg']['idle_n']} "
                      "connections (bytes, RSS growth)", clustered=False) + f"""set grid ytics
set yrange [0:*]
set key top left
plot 'idle.dat' using 2:xtic(1) title 'bytes per connection', 2048 with lines lw 2 dt 2 title 'target: 2 KiB'
""", plot_dir)
    lines = []
    for r in res["storm"]:
        name = f"storm_{r['jitter']}.dat"
        with open(os.path.join(plot_dir, name), "w") as f:
            for x, y in timeline(r["attempt_ms"]):
                f.write(f"{x:.2f} {y:.0f}\n")
        label = f"tether, jitter {r['jitter']}" if r["proto"] == "tether" else "Socket.IO client"
        lines.append(f"'{name}' using 1:2 with steps lw 2 title '{label}'")
    gnuplot(f"""set terminal pngcairo size 900,450 noenhanced
set output 'storm.png'
set title 'Reconnect storm: connection attempts per second after kill -9 ({res["cfg"]["storm_n"]} clients)'
set xlabel 'seconds after kill -9 (server restarted at once)'
set ylabel 'attempts/s (50 ms buckets)'
set grid
plot {", ".join(lines)}
""", plot_dir)
    if len(res.get("scaling", [])) >= 2:
        base = res["scaling"][0]
        with open(os.path.join(plot_dir, "scaling.dat"), "w") as f:
            for r in res["scaling"]:
                f.write(f'"--threads {r["threads"]}" '
                        f'{ratio(r["round_trips_per_s"], base["round_trips_per_s"]):.3f} '
                        f'{ratio(r["deliveries_per_s"], base["deliveries_per_s"]):.3f}\n')
        top = max([1.6] + [1.1 * ratio(r[k], base[k]) for r in res["scaling"]
                           for k in ("round_trips_per_s", "deliveries_per_s")])
        gnuplot(histogram("scaling.png", f"Thread scaling on {os.cpu_count()} cores (server and "
                          "load generator share them): relative to --threads 1") + f"""set grid ytics
set yrange [0:{top:.2f}]
set key top left
plot 'scaling.dat' using 2:xtic(1) title 'PUBLISH -> ACK round trips', '' using 3 title 'fan-out deliveries (N = {res["scaling"][0]["subscribers"]})', 1.4 with lines lw 2 dt 2 title 'target: 1.4x'
""", plot_dir)
        os.remove(os.path.join(plot_dir, "scaling.dat"))
    for name in ("fanout.dat", "idle.dat") + tuple(f"storm_{r['jitter']}.dat" for r in res["storm"]):
        os.remove(os.path.join(plot_dir, name))


def fmt(v, digits=0):
    if v is None:
        return "–"
    return f"{v:,.{digits}f}"


def ratio(a, b):
    return a / b if b else float("inf")


def targets(res):
    out = []
    for n in res["cfg"]["fanout_n"]:
        d = {r["server"]: r["deliveries_per_s"] for r in res["fanout"] if r["subscribers"] == n}
        out.append((f"fan-out N={n}: ≥ 2× Node ws", ratio(d["tether"], d["ws"]), 2.0, "×"))
        out.append((f"fan-out N={n}: ≥ 4× Socket.IO", ratio(d["tether"], d["sio"]), 4.0, "×"))
        out.append((f"fan-out N={n}: ≥ 60 % of raw Beast", ratio(d["tether"], d["raw"]) * 100,
                    60.0, "%"))
    idle = {r["server"]: r["bytes_per_connection"] for r in res["idle"]}
    out.append(("idle memory ≤ 2 KiB per connection", idle["tether"], 2048.0, "B (max)"))
    for r in (r for r in res["storm"] if r["proto"] == "tether"):
        ok = (r["complete"] and r["back"] == r["clients"] and r["lost"] == 0
              and r["duplicated"] == 0 and r["all_back_ms"] <= r["backoff_cap_ms"] + 2000)
        out.append((f"storm ({r['jitter']} jitter): all resumed within cap + 2 s, 0 lost, 0 dup",
                    r["all_back_ms"], r["backoff_cap_ms"] + 2000, "ms (max)", ok))
    peak = {r["jitter"]: r["peak_attempts_per_s"] for r in res["storm"]}
    out.append(("storm: peak rate of attempts at the server lower with jitter than without",
                peak["none"] / max(1.0, peak["default"]), 1.0, "× (none / default)"))
    echo = {r["server"]: r["round_trips_per_s"] for r in res["echo"]}
    out.append(("publish → ack ≥ 1.0× Node ws echo (default threads)",
                ratio(echo["tether"], echo["ws"]), 1.0, "×"))
    if len(res.get("scaling", [])) >= 2:
        one, many = res["scaling"][0], res["scaling"][-1]
        out.append((f"--threads {many['threads']} ≥ 1.4× --threads 1: round trips",
                    ratio(many["round_trips_per_s"], one["round_trips_per_s"]), 1.4, "×"))
        out.append((f"--threads {many['threads']} ≥ 1.4× --threads 1: fan-out deliveries",
                    ratio(many["deliveries_per_s"], one["deliveries_per_s"]), 1.4, "×"))
    mem = next(r for r in res["resume"] if r["label"] == "memory")
    out.append(("resume of 1,000 missed events < 20 ms median (memory store)",
                mem["connect_to_last_median_ms"], 20.0, "ms (max)"))
    return out


def passed(t):
    if len(t) == 5:
        return t[4]
    name, val, bound, unit = t
    return val <= bound if "max" in unit else val >= bound


def report(res, out_path, plot_rel):
    m = res["machine"]
    cfg = res["cfg"]
    L = []
    w = L.append
    w("# Benchmarks")
    w("")
    w("Generated by `bench/run.py` (issue #6); do not edit by hand — rerun instead:")
    w("")
    w("```sh")
    w("scripts/bench.sh            # installs, builds the release preset, runs everything, rewrites this page")
    w("```")
    w("")
    w(f"Run of {res['date']}{' (SMOKE: tiny sizes, figures meaningless)' if cfg['smoke'] else ''}, "
      f"{res['elapsed_min']:.1f} min. Every server and the load generator ran on the same machine, "
      "over loopback, in the same run. Figures are medians of "
      f"{cfg['reps']} runs unless stated; the machine is a shared VM, so read ratios, not absolutes.")
    w("")
    w("| machine | |")
    w("|---|---|")
    for k in ("cpu", "memory", "os", "kernel", "compiler", "boost", "node", "ws", "socket.io", "tether"):
        w(f"| {k} | {m[k]} |")
    w("")
    w("## Headline: the targets of issue #6")
    w("")
    w("| target | measured | bound | met |")
    w("|---|---|---|---|")
    for t in targets(res):
        w(f"| {t[0]} | {fmt(t[1], 2 if t[1] < 100 else 0)} {t[3].split(' ')[0]} | "
          f"{fmt(t[2], 0)} | {'yes' if passed(t) else '**no**'} |")
    w("")
    w("## The servers")
    w("")
    w("- **tether**: `tether serve --memory --allow-anonymous` (release build) unless the scenario "
      "names a store; publish rate limits lifted (`--publish-rate`/`--publish-burst`), every other "
      "limit at its default. Clients IDENTIFY and JOIN; every publication gets an offset, enters the "
      "room's history and the dedupe window, and is acknowledged.")
    w("- **raw Beast (floor)**: `bench/raw_beast_server.cpp`, the same threading model as the gateway "
      "(2 I/O threads, strands, one shared buffer per broadcast, bounded queues) without sessions, "
      "offsets, history or dedupe.")
    w("- **Node ws**: `bench/node/ws_server.js`, a broadcast/echo server of a few lines.")
    w("- **Socket.IO**: `bench/node/sio_server.js`, `connectionStateRecovery` on, WebSocket transport; "
      "the load generator speaks Engine.IO v4 / Socket.IO v5 framing over the WebSocket "
      "(`40` connect, `42[...]` events, ping/pong).")
    w("")
    w("The load generator (`bench/loadgen.cpp`: one thread, Asio, its own WebSocket framing so "
      "that it costs less per message than the servers it measures) drives all four for scenarios "
      "1–3. Scenario 4 runs tether with `tether::Client` and Socket.IO with its own client; Node "
      "`ws` has no sessions to resume. Scenarios 5–7 are tether's own (resume, durable stores, the "
      "client library).")
    w("")
    w("## 1. Fan-out")
    w("")
    w("One publisher, N subscribers in one room. Saturation: the publisher keeps at most "
      f"{cfg['window']} messages not yet delivered to every subscriber. Latency, publish → deliver "
      "measured in the load generator (one clock), with the publisher paced at half of each "
      "server's own saturated message rate, and again with every server at one common rate "
      f"(half the slowest server's). {cfg['size']}-byte payloads.")
    w("")
    w(f"![fan-out]({plot_rel}/fanout.png)")
    w("")
    w("| N | server | deliveries/s | tether ÷ this | half rate (msg/s) | p50 | p99 | common rate (msg/s) | p50 | p99 |")
    w("|---|---|---|---|---|---|---|---|---|---|")
    for n in cfg["fanout_n"]:
        t = next(r for r in res["fanout"] if r["server"] == "tether" and r["subscribers"] == n)
        for r in (r for r in res["fanout"] if r["subscribers"] == n):
            w(f"| {n:,} | {NAMES[r['server']]} | {fmt(r['deliveries_per_s'])} | "
              f"{ratio(t['deliveries_per_s'], r['deliveries_per_s']):.2f}× | {fmt(r['rate'])} | "
              f"{fmt(r['p50_us'] / 1000, 2)} ms | {fmt(r['p99_us'] / 1000, 2)} ms | "
              f"{fmt(r['common_rate'])} | {fmt(r['common_p50_us'] / 1000, 2)} ms | "
              f"{fmt(r['common_p99_us'] / 1000, 2)} ms |")
    w("")
    w("## 2. Echo / round trip")
    w("")
    w(f"{cfg['echo_m']} connections, one message in flight each. For tether a round trip is "
      "PUBLISH → ACK: the message is stored (memory store), offset and dedupe entry assigned, then "
      "acknowledged; for the peers it is an echo.")
    w("")
    w("| server | round trips/s | p50 | p99 |")
    w("|---|---|---|---|")
    for r in res["echo"]:
        w(f"| {NAMES[r['server']]} | {fmt(r['round_trips_per_s'])} | {fmt(r['p50_us'] / 1000, 2)} ms"
          f" | {fmt(r['p99_us'] / 1000, 2)} ms |")
    w("")
    w("## 3. Idle memory per connection")
    w("")
    w(f"Server RSS growth from a warmed baseline to {cfg['idle_n']:,} idle connections "
      f"(tether: identified, one room joined; Socket.IO: namespace connected), read "
      f"{cfg['idle_settle']} s after the last one opened. The script raises the fd limit.")
    w("")
    w(f"![idle memory]({plot_rel}/idle.png)")
    w("")
    w("| server | RSS before | RSS after | bytes per connection |")
    w("|---|---|---|---|")
    for r in res["idle"]:
        w(f"| {NAMES[r['server']]} | {fmt(r['rss_before_kib'])} KiB | {fmt(r['rss_after_kib'])} KiB | "
          f"{fmt(r['bytes_per_connection'])} |")
    w("")
    w("## 4. Reconnect storm")
    w("")
    w(f"{cfg['storm_n']:,} `tether::Client`s (the library, one thread) in {cfg['storm_rooms']} rooms, "
      f"a steady flow of {cfg['storm_rate']} publishes/s from another client; the server "
      "(SQLite store, `--fsync batch`) is killed with SIGKILL and restarted at once on the same "
      "port and data. Times are from the restart. Attempts = connections the clients started (what "
      "arrives at the server), handshakes = READY/RESUMED answers they got; a peak rate is the most "
      "of them in any 100 ms window, per second. Lost = acknowledged offsets a client never saw, duplicated = "
      "offsets delivered twice to the application.")
    w("")
    w(f"![storm]({plot_rel}/storm.png)")
    w("")
    w("| client | all back after | median | peak handshakes/s | peak attempts/s | resumed sessions | "
      "new sessions | published / acked | lost | duplicated |")
    w("|---|---|---|---|---|---|---|---|---|---|")
    for r in res["storm"]:
        name = (f"tether::Client, jitter {r['jitter']}" if r["proto"] == "tether"
                else "Socket.IO 4.8 + socket.io-client (its own backoff, ±50 %)")
        w(f"| {name} | {fmt(r['all_back_ms'] / 1000, 2)} s | {fmt(r['median_back_ms'] / 1000, 2)} s | "
          f"{fmt(r['peak_handshakes_per_s'])} | {fmt(r['peak_attempts_per_s'])} | "
          f"{fmt(r['resumed_sessions'])} | {fmt(r['new_sessions'])} | {fmt(r['published'])} / "
          f"{fmt(r['acked'])} | {r['lost']} | {r['duplicated']} |")
    w("")
    w("Jitter variants: *default* = exponential from 500 ms with ±25 % jitter; *full* = full jitter "
      "(uniform in [0, delay]); *none* = exponential with the jitter ratio at 0. Socket.IO runs "
      "with its own client (`bench/node/sio_storm.js`, one Node process): its reconnection and "
      "`connectionStateRecovery` need it. \"Resumed sessions\" there = `socket.recovered`; its "
      "recovery state lives in the server's memory, so after `kill -9` every client starts a new "
      "session, re-joins its room and never sees what was broadcast while it was away. Its "
      "publishes count as acknowledged when the server's ack callback ran. Node `ws` has no "
      "sessions, so the storm does not apply to it.")
    w("")
    w("## 5. Resume")
    w("")
    w(f"A client away while {cfg['resume_events']:,} events were published (and acknowledged) comes "
      f"back: connect → HELLO → RESUME → RESUMED, JOINED, every missed event. {cfg['resume_runs']} "
      "runs; the client parses every frame (Boost.JSON).")
    w("")
    w("| store | connect → last event, median | p90 | RESUME sent → last event, median | p90 |")
    w("|---|---|---|---|---|")
    for r in res["resume"]:
        w(f"| {r['label']} | {r['connect_to_last_median_ms']:.2f} ms | {r['connect_to_last_p90_ms']:.2f} ms"
          f" | {r['resume_to_last_median_ms']:.2f} ms | {r['resume_to_last_p90_ms']:.2f} ms |")
    w("")
    w("## 6. Durable publishing")
    w("")
    w(f"{cfg['durable_p']} publisher connections × {cfg['durable_w']} publishes in flight; a publish "
      "counts when its ACK arrives (the gateway acknowledges only what the store made durable in "
      "that mode).")
    w("")
    w("| store | acknowledged publishes/s | p50 | p99 |")
    w("|---|---|---|---|")
    for r in res["durable"]:
        name = "memory" if r["mode"] == "memory" else f"SQLite, `--fsync {r['mode']}`"
        w(f"| {name} | {fmt(r['acked_per_s'])} | {fmt(r['p50_us'] / 1000, 2)} ms | "
          f"{fmt(r['p99_us'] / 1000, 2)} ms |")
    w("")
    w("## 7. Client")
    w("")
    c = res["client"]
    w(f"One `tether::Client` (own thread) connected with one room, idle for {c['idle_s']} s "
      "(heartbeats only).")
    w("")
    w("| figure | value |")
    w("|---|---|")
    w(f"| CPU while idle | {c['idle_cpu_percent']:.3f} % of one core |")
    w(f"| process RSS growth from construction to connected | {fmt(c['rss_growth_kib'])} KiB |")
    w(f"| `set_online(true)` → connected, median of {c['runs']} | {c['online_to_connected_median_ms']:.2f} ms "
      f"(p90 {c['online_to_connected_p90_ms']:.2f} ms) |")
    w("")
    if res.get("scaling"):
        w("## 8. Thread scaling")
        w("")
        sc = res["scaling"]
        w(f"tether alone (`--memory`), `--threads 1` (one engine shard) against `--threads "
          f"{sc[-1]['threads']}` (the default: one thread and one shard per core). The server and "
          f"the load generator are both pinned to CPUs {sc[0]['cpus']} with `taskset`, so every "
          "cycle the load generator spends is one the server does not get. Echo: "
          f"{cfg['echo_m']} connections × 1 PUBLISH in flight; fan-out: one publisher, "
          f"{sc[0]['subscribers']} subscribers, window {cfg['window']}.")
        w("")
        if len(sc) >= 2:
            w(f"![thread scaling]({plot_rel}/scaling.png)")
            w("")
        w("| threads (= shards) | round trips/s | ÷ 1 thread | fan-out deliveries/s | ÷ 1 thread |")
        w("|---|---|---|---|---|")
        for r in sc:
            w(f"| {r['threads']} | {fmt(r['round_trips_per_s'])} | "
              f"{ratio(r['round_trips_per_s'], sc[0]['round_trips_per_s']):.2f}× | "
              f"{fmt(r['deliveries_per_s'])} | "
              f"{ratio(r['deliveries_per_s'], sc[0]['deliveries_per_s']):.2f}× |")
        w("")
    if res.get("notes"):
        w("## Reading the figures")
        w("")
        w(res["notes"].strip())
        w("")
    w("## Commands of this run")
    w("")
    w("Every load generator invocation, in order (servers started by `bench/run.py` on free ports):")
    w("")
    w("```")
    for c in COMMANDS:
        w(c)
    w("```")
    w("")
    with open(out_path, "w") as f:
        f.write("\n".join(L))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "release"))
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (CI)")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "BENCHMARKS.md"))
    ap.add_argument("--notes", default=os.path.join(ROOT, "bench", "NOTES.md"),
                    help="hand-written reading of the figures, copied into the report")
    ap.add_argument("--only", default="", help="comma-separated scenarios (debugging)")
    ap.add_argument("--render-only", action="store_true",
                    help="rewrite the page and plots from docs/bench/results.json (after editing NOTES.md)")
    cfg = ap.parse_args()
    cfg.build = os.path.abspath(cfg.build)
    if cfg.render_only:
        out_dir = os.path.dirname(os.path.abspath(cfg.out))
        with open(os.path.join(out_dir, "bench", "results.json")) as f:
            res = json.load(f)
        COMMANDS.extend(res.get("commands", []))
        with open(cfg.notes) as f:
            res["notes"] = f.read()
        plots(res, os.path.join(out_dir, "bench"))
        report(res, cfg.out, "bench")
        return
    if cfg.smoke:
        cfg.reps, cfg.duration, cfg.warmup, cfg.window, cfg.size = 1, 0.5, 0.2, 16, 100
        cfg.fanout_n, cfg.echo_m, cfg.idle_n, cfg.idle_settle = [5, 20], 5, 50, 0.2
        cfg.storm_n, cfg.storm_rooms, cfg.storm_rate, cfg.storm_flow = 40, 4, 40, 0.5
        cfg.resume_events, cfg.resume_runs = 100, 3
        cfg.durable_p, cfg.durable_w, cfg.client_idle, cfg.client_runs = 2, 8, 0.5, 3
    else:
        cfg.reps, cfg.duration, cfg.warmup, cfg.window, cfg.size = 3, 5, 1, 64, 100
        cfg.fanout_n, cfg.echo_m, cfg.idle_n, cfg.idle_settle = [100, 1000], 100, 10000, 2
        cfg.storm_n, cfg.storm_rooms, cfg.storm_rate, cfg.storm_flow = 5000, 50, 100, 3
        cfg.resume_events, cfg.resume_runs = 1000, 20
        cfg.durable_p, cfg.durable_w, cfg.client_idle, cfg.client_runs = 4, 64, 10, 20

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    need = cfg.idle_n + 500
    if want < need:
        sys.exit(f"bench: the fd limit is {want}, {need} are needed (raise the hard limit)")
    for binary in ("tools/tether", "bench/tether-loadgen", "bench/tether-raw-server"):
        if not os.path.exists(os.path.join(cfg.build, binary)):
            sys.exit(f"bench: {binary} is missing in {cfg.build} (build it first)")
    if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "socket.io")):
        sys.exit("bench: run `npm ci --prefix bench/node` first")
    if not shutil.which("gnuplot"):
        sys.exit("bench: gnuplot is missing (scripts/install-deps.sh installs gnuplot-nox)")

    started = time.monotonic()
    work = tempfile.mkdtemp(prefix="tether-bench-")
    res = {"cfg": {k: v for k, v in vars(cfg).items()}, "machine": machine(),
           "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    only = set(filter(None, cfg.only.split(",")))
    steps = [("fanout", bench_fanout), ("echo", bench_echo), ("idle", bench_idle),
             ("storm", bench_storm), ("resume", bench_resume), ("durable", bench_durable),
             ("scaling", bench_scaling), ("client", bench_client)]
    try:
        for name, fn in steps:
            if only and name not in only:
                continue
            log(f"== {name}")
            res[name] = fn(cfg, work)
    except Exception:
        log(f"failed; server logs kept in {work}")
        raise
    res["elapsed_min"] = (time.monotonic() - started) / 60
    res["commands"] = list(COMMANDS)
    out_dir = os.path.dirname(os.path.abspath(cfg.out))
    os.makedirs(os.path.join(out_dir, "bench"), exist_ok=True)
    with open(os.path.join(out_dir, "bench", "results.json"), "w") as f:
        json.dump(res, f, indent=1)  # the raw figures, timelines included
    if only:
        print(json.dumps(res, indent=1))
        return
    if os.path.exists(cfg.notes) and not cfg.smoke:
        with open(cfg.notes) as f:
            res["notes"] = f.read()
    plots(res, os.path.join(out_dir, "bench"))
    report(res, cfg.out, "bench")
    shutil.rmtree(work, ignore_errors=True)
    failed = [t[0] for t in targets(res) if not passed(t)]
    log(f"wrote {cfg.out} in {res['elapsed_min']:.1f} min; targets missed: {failed or 'none'}")
    if cfg.smoke:
        # The smoke checks the harness and the correctness figures, not speed.
        for r in (r for r in res["storm"] if r["proto"] == "tether"):
            if not r["complete"] or r["lost"] or r["duplicated"] or r["back"] != r["clients"]:
                sys.exit(f"bench smoke: storm ({r['jitter']}) not clean: "
                         f"{ {k: v for k, v in r.items() if not k.endswith('_ms') or 'back' in k} }")


if __name__ == "__main__":
    main()
