#!/usr/bin/env bash
# The full benchmark comparison of docs/BENCHMARKS.md, in one command:
# installs the dependencies, builds the release preset (tether, the load
# generator, the raw Beast floor), installs the Node peers from the lockfile,
# runs every scenario against every server and rewrites docs/BENCHMARKS.md
# and its plots (docs/bench/*.png). About 20 minutes on 2 cores.
#
#   scripts/bench.sh                 # everything
#   scripts/bench.sh --only fanout   # one scenario, JSON to stdout (debugging)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
npm ci --prefix bench/node --no-audit --no-fund --loglevel=error
cmake --preset release >/dev/null
cmake --build --preset release --target tether tether-loadgen tether-raw-server
exec /usr/bin/python3 bench/run.py --build build/release "$@"
