#!/usr/bin/env bash
# README command 1: install dependencies, build a release `tether`, and run
# the main job. Until the gateway lands (issue #3) the main job is a simulated
# client session surviving seeded faults, printed as a readable trace.
#
#   scripts/run.sh            # seed 42
#   scripts/run.sh 1234       # another seed
set -euo pipefail
cd "$(dirname "$0")/.."
seed="${1:-42}"
scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release --target tether
echo
echo "== tether sim --seed ${seed}: one client, one server, 120 s of faults, then healing =="
./build/release/tools/tether sim --seed "${seed}"
