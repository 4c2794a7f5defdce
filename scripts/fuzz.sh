#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, the `fuzz` preset: ASan + UBSan) and runs
# each from its seed corpus (tests/fuzz/corpus/<target>, copied: the repo is
# not modified) for SECONDS, then prints executions, exec/s and coverage.
# A crash stops with the input saved under build/fuzz/artifacts/ -- turn it
# into a regression seed in tests/fuzz/corpus/<target>/.
#
#   scripts/fuzz.sh          # 60 s per target
#   scripts/fuzz.sh 900      # the longer run quoted in the closing notes
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz --target fuzzers
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p build/fuzz/artifacts
# One target per core at a time (each fuzzer is single-threaded): every target
# still runs SECONDS, the whole smoke takes SECONDS x targets / cores.
jobs_max="${FUZZ_JOBS:-$(nproc)}"
targets=(protocol server_engine client_core jwt admin ws_frame)
run_one() {
  local t="$1"
  mkdir -p "$work/$t"
  cp tests/fuzz/corpus/"$t"/* "$work/$t/"
  local rc=0
  build/fuzz/tests/fuzz/fuzz_"$t" -max_total_time="$secs" -print_final_stats=1 -max_len=4096 \
    -timeout=10 -rss_limit_mb=2048 -artifact_prefix=build/fuzz/artifacts/"$t"- "$work/$t" \
    >"$work/$t.log" 2>&1 || rc=$?
  echo "$rc" >"$work/$t.rc"
}
for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n || true; done
  run_one "$t" &
done
wait
printf '%-16s %12s %10s %8s %8s\n' target executions exec/s cov features
failed=0
for t in "${targets[@]}"; do
  log="$work/$t.log"
  if [ "$(cat "$work/$t.rc" 2>/dev/null || echo missing)" != 0 ]; then
    tail -n 40 "$log"
    echo "fuzz_$t FAILED: see build/fuzz/artifacts/" >&2
    failed=1
    continue
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
  printf '%-16s %12s %10s %8s %8s\n' "$t" "$execs" "$rate" "$cov" "$ft"
done
exit "$failed"
