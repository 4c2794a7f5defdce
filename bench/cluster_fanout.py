"""Fan-out on Redis: two nodes behind nginx against one (docs/SCALING.md).

One room, one publisher, N subscribers, the C++ load generator
(`tether-loadgen fanout`) at saturation and at a fixed rate, against:

- one node on the embedded SQLite store (the reference);
- one node on Redis, direct;
- one node on Redis behind nginx (deploy/nginx.conf);
- two nodes on Redis behind nginx: least_conn spreads the subscribers over
  both, and the node without the publisher hears every event over pub/sub.

Everything (Redis, nginx, the nodes, the load generator) shares this
machine's cores, so the figure shows the cost of the cluster's extra hops
on one machine, not the capacity of two machines.

  TETHER_BIN=build/release/tools/tether /usr/bin/python3 bench/cluster_fanout.py
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tests", "integration", "py"))
from harness import Nginx, RedisServer, Server, TETHER  # noqa: E402

LOADGEN = os.environ.get("TETHER_LOADGEN",
                         os.path.join(os.path.dirname(os.path.dirname(TETHER)), "bench",
                                      "tether-loadgen"))
SUBSCRIBERS = int(os.environ.get("SUBSCRIBERS", "100"))
REPS = int(os.environ.get("REPS", "3"))
RATE = 100  # messages/s for the latency runs
FLAGS = ("--publish-rate", "100000", "--publish-burst", "100000")


def loadgen(url, *extra):
    out = subprocess.run([LOADGEN, "fanout", "--url", url, "--subscribers", str(SUBSCRIBERS),
                          "--duration", "5", "--warmup", "1"] + list(extra),
                         capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(name, url):
    sat = [loadgen(url, "--window", "16")["deliveries_per_s"] for _ in range(REPS)]
    lat = [loadgen(url, "--rate", str(RATE)) for _ in range(REPS)]
    row = {"setup": name, "deliveries_per_s": statistics.median(sat), "runs": sat,
           "p50_us": statistics.median(r["p50_us"] for r in lat),
           "p99_us": statistics.median(r["p99_us"] for r in lat)}
    print(json.dumps(row), flush=True)
    return row


def main():
    rows = []
    data = tempfile.mkdtemp(prefix="tether-fanout-")
    s = Server(*FLAGS, data_dir=data, anonymous=True).start()
    try:
        rows.append(measure("sqlite, 1 node", s.url))
    finally:
        s.cleanup()
    redis = RedisServer().start()
    try:
        for count, via_nginx in ((1, False), (1, True), (2, True)):
            redis.cli("FLUSHALL")
            nodes = [Server("--node-id", f"f{i}", *FLAGS, redis=redis, anonymous=True).start()
                     for i in range(count)]
            nginx = Nginx([n.port for n in nodes]).start() if via_nginx else None
            try:
                name = f"redis, {count} node{'s' if count > 1 else ''}" + \
                    (", nginx" if via_nginx else ", direct")
                rows.append(measure(name, nginx.url if nginx else nodes[0].url))
            finally:
                if nginx:
                    nginx.cleanup()
                for n in nodes:
                    n.cleanup()
    finally:
        redis.cleanup()
    base = rows[2]["deliveries_per_s"]
    print("| setup | deliveries/s (median of %d) | ratio to 1 node via nginx | p50 / p99 at %d msg/s |"
          % (REPS, RATE))
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['setup']} | {r['deliveries_per_s']:,.0f} | {r['deliveries_per_s'] / base:.2f} | "
              f"{r['p50_us']:,.0f} / {r['p99_us']:,.0f} µs |")


if __name__ == "__main__":
    main()
