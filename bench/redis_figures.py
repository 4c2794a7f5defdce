"""Figures of the Redis store (docs/SCALING.md), with Python `websockets`
clients against real `tether serve` processes and a real `redis-server`:

- resume of 1,000 missed events on *another* node (JOIN since -> the 1,000th
  EVENT), median of RUNS runs, against the same on one node with SQLite;
- publish->ack latency, one publish at a time, p50/p99 over N publishes,
  with Redis and with SQLite.

  TETHER_BIN=build/release/tools/tether /usr/bin/python3 bench/redis_figures.py
"""

import asyncio
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration", "py"))
import harness  # noqa: E402
from harness import Client, RedisServer, Server  # noqa: E402

RUNS = 7
ACKS = 2000
FLAGS = ("--publish-rate", "100000", "--publish-burst", "100000")


async def publish_n(w, room, n, tag):
    for k in range(n):
        await w.send("PUBLISH", room=room, id=f"{tag}-{k}", data=k)
    got = 0
    while got < n:
        m = await w.recv(timeout=30)
        if m["op"] == "ACK":
            got += 1


async def resume_ms(node_a, node_b, run):
    room = f"resume-{run}"
    c = await Client.open(node_a)
    await c.identify("mover")
    await c.send("JOIN", room=room)
    epoch = (await c.expect("JOINED"))["epoch"]
    await c.close()
    w = await Client.open(node_b)
    await w.identify("writer")
    await publish_n(w, room, 1000, f"r{run}")
    await w.close()
    c2 = await Client.open(node_b)
    await c2.identify("mover")
    t0 = time.perf_counter()
    await c2.send("JOIN", room=room, since={"epoch": epoch, "offset": 0})
    got = 0
    while got < 1000:
        m = await c2.recv(timeout=30)
        if m["op"] == "EVENT":
            got += 1
    ms = (time.perf_counter() - t0) * 1000
    await c2.close()
    return ms


async def ack_latencies(node):
    w = await Client.open(node)
    await w.identify("lat")
    out = []
    for k in range(ACKS):
        t0 = time.perf_counter()
        await w.send("PUBLISH", room="lat", id=f"l{k}", data=k)
        while (await w.recv(timeout=30))["op"] != "ACK":
            pass
        out.append((time.perf_counter() - t0) * 1e6)
    await w.close()
    out.sort()
    return out[len(out) // 2], out[int(len(out) * 0.99)]


async def main():
    harness.TETHER = os.environ.get("TETHER_BIN", harness.TETHER)
    r = RedisServer().start()
    a = Server("--node-id", "a", *FLAGS, redis=r).start()
    b = Server("--node-id", "b", *FLAGS, redis=r).start()
    s = Server(*FLAGS).start()
    try:
        redis_resume = [await resume_ms(a, b, i) for i in range(RUNS)]
        sqlite_resume = [await resume_ms(s, s, i) for i in range(RUNS)]
        rp50, rp99 = await ack_latencies(a)
        sp50, sp99 = await ack_latencies(s)
        print(f"resume of 1,000 events on another node (redis): median {statistics.median(redis_resume):.1f} ms"
              f" (runs: {', '.join(f'{x:.1f}' for x in redis_resume)})")
        print(f"resume of 1,000 events on one node (sqlite):    median {statistics.median(sqlite_resume):.1f} ms"
              f" (runs: {', '.join(f'{x:.1f}' for x in sqlite_resume)})")
        print(f"publish->ack, one at a time, {ACKS} publishes: redis p50 {rp50:.0f} us p99 {rp99:.0f} us;"
              f" sqlite p50 {sp50:.0f} us p99 {sp99:.0f} us")
    finally:
        for n in (a, b, s):
            n.cleanup()
        r.cleanup()


asyncio.run(main())
