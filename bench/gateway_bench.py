#!/usr/bin/env python3
"""Gateway figures for issue #3, against a real `tether serve`:

1. resume: a client away while 1,000 events were published; time from sending
   RESUME to the last missed event received (median and p90 of N runs).
2. durable publishing: acknowledged publishes per second under each store
   mode (memory, fsync off/batch/always), P publisher connections each keeping
   W publishes in flight.

The clients are Python `websockets` (asyncio): their own JSON parsing and
framing are inside every figure, so these are lower bounds on what the server
does; the C++ load generator of issue #6 replaces them.

Usage: bench/gateway_bench.py --tether build/release/tools/tether [--runs 20]
"""

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration", "py"))
import harness  # noqa: E402
from harness import Client, Server  # noqa: E402


async def resume_once(server, n_events):
    a = await Client.open(server)
    _, ready = await a.identify("away")
    await a.send("JOIN", room="resume")
    epoch = (await a.expect("JOINED"))["epoch"]
    head0 = 0
    await a.close()
    pub = await Client.open(server)
    await pub.identify("pub")
    st = server.http("GET", "/api/rooms/resume/history?since=0&limit=1")
    head0 = json.loads(st[1])["head"]
    for i in range(n_events):
        await pub.send("PUBLISH", room="resume", id=f"r{time.monotonic_ns()}-{i}", data={"i": i})
    for _ in range(n_events):
        await pub.expect("ACK")
    await pub.close()
    b = await Client.open(server)
    await b.expect("HELLO")
    t0 = time.perf_counter()
    await b.send("RESUME", session_id=ready["session_id"], resume_token=ready["resume_token"],
                 rooms=[{"room": "resume", "epoch": epoch, "offset": head0}])
    got = 0
    while got < n_events:
        m = json.loads(await b.ws.recv())
        if m["op"] == "EVENT":
            got += 1
    elapsed = time.perf_counter() - t0
    await b.close()
    return elapsed


async def publish_rate(server, publishers, window, total):
    clients = []
    for p in range(publishers):
        c = await Client.open(server)
        await c.identify(f"pub{p}")
        clients.append(c)
    per = total // publishers

    async def run(c, p):
        sent = acked = 0
        while acked < per:
            while sent < per and sent - acked < window:
                await c.ws.send(json.dumps({"op": "PUBLISH", "d": {"room": f"bench{p}", "id": f"{p}-{sent}",
                                                                 "data": {"n": sent}}}))
                sent += 1
            m = json.loads(await c.ws.recv())
            if m["op"] == "ACK":
                acked += 1
            elif m["op"] == "NACK":
                raise RuntimeError(m)

    t0 = time.perf_counter()
    await asyncio.gather(*(run(c, p) for p, c in enumerate(clients)))
    elapsed = time.perf_counter() - t0
    for c in clients:
        await c.close()
    return per * publishers / elapsed


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tether", required=True)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument("--publishers", type=int, default=4)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--total", type=int, default=40000)
    args = ap.parse_args()
    harness.TETHER = args.tether
    fast = ("--publish-rate", "1000000", "--publish-burst", "1000000")

    server = Server(*fast, memory=True).start()
    try:
        times = [await resume_once(server, args.events) for _ in range(args.runs)]
    finally:
        server.cleanup()
    times.sort()
    p90 = times[int(0.9 * (len(times) - 1))]
    print(f"resume of {args.events} missed events: median {statistics.median(times) * 1000:.1f} ms, "
          f"p90 {p90 * 1000:.1f} ms ({args.runs} runs, memory store)")

    for mode in ("memory", "off", "batch", "always"):
        data = None if mode == "memory" else tempfile.mkdtemp(prefix="tether-bench-")
        extra = fast if mode == "memory" else fast + ("--fsync", mode)
        server = Server(*extra, memory=(mode == "memory"), data_dir=data).start()
        try:
            rates = [await publish_rate(server, args.publishers, args.window, args.total) for _ in range(3)]
        finally:
            server.cleanup()
            if data:
                shutil.rmtree(data, ignore_errors=True)
        print(f"acked publishes/s, {mode:>6}: median {statistics.median(rates):,.0f} "
              f"(runs {', '.join(f'{r:,.0f}' for r in rates)}; {args.publishers} publishers x {args.window} in flight)")


if __name__ == "__main__":
    asyncio.run(main())
