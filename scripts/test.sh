#!/usr/bin/env bash
# README command 2 (and CI): install dependencies, build, and run every test:
# 1. the whole suite in the dev build;
# 2. the whole suite again under ASan + UBSan;
# 3. the concurrent parts under TSan: the multi-threaded gateway, its engine
#    and store, and the client strands (driven by the Python suites and the
#    client API tests), the stores under concurrent submits, the parallel
#    simulator runner (the single-threaded sans-I/O unit tests give TSan
#    nothing to find and are not rebuilt);
# 4. clang-tidy over the core and the gateway (scripts/lint.sh; the full run
#    over src/ and tools/ does not fit CI's 25-minute budget on two cores and
#    is run before every submission, CONTRIBUTING.md);
# 5. a fuzz smoke: every libFuzzer target for 10 s from its seed corpus
#    (scripts/fuzz.sh; the longer run is manual).
# Each phase prints its start and the time since the script began.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS
phase() { printf '== [%dm%02ds] %s\n' $(((SECONDS - t0) / 60)) $(((SECONDS - t0) % 60)) "$*"; }
phase "dependencies"
scripts/install-deps.sh
# Node `ws`, a third-party peer of the raw-socket tests (lockfile committed).
npm ci --prefix tests/integration/node --no-audit --no-fund --loglevel=error
# Node `ws` and Socket.IO, the peers of the benchmark smoke (bench_smoke).
npm ci --prefix bench/node --no-audit --no-fund --loglevel=error
# The TypeScript SDK's tools (typescript, esbuild, vitest, playwright-core, ws).
npm ci --prefix clients/js --no-audit --no-fund --loglevel=error
# The SDK's examples consume it as a package (file:../../clients/js) with ws.
npm ci --prefix examples/js --no-audit --no-fund --loglevel=error

run_suite() {
  local preset="$1"; shift
  phase "${preset}: configure and build"
  cmake --preset "${preset}" >/dev/null
  cmake --build --preset "${preset}" "$@"
}

run_suite dev
phase "dev: ctest"
ctest --preset dev
# The TypeScript suites ran inside ctest: their vitest summaries.
grep -E '^ *(Test Files|Tests) ' build/dev/Testing/Temporary/LastTest.log | sed 's/^ */vitest: /' || true

phase "lint: src/core src/gateway"
scripts/lint.sh src/core src/gateway

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
run_suite asan-ubsan
# The packaging, formatting, layering and API-doc checks and the TypeScript
# SDK's suites gain nothing from a sanitizer and ran in the dev suite.
phase "asan-ubsan: ctest"
# Simulator.SeedsPassAndReplayIdentically runs seeds 1-300 twice, for
# determinism: sim_seeds runs them (once) under the sanitizers already.
ctest --preset asan-ubsan \
  -E '^(install_consumer|format_check|layering_check|api_docs|js_.*|Simulator\.SeedsPassAndReplayIdentically)$'

export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
run_suite tsan --target tether integration_client unit_store_concurrency example_minimal \
  example_chat example_generic_socket
phase "tsan: ctest"
ctest --preset tsan -R '^(py_|sim_sabotage_is_caught|sim_single_seed|Client\.|TlsTest\.|ReconnectingWebSocket\.|StoreConcurrency\.)'

phase "fuzz smoke (10 s per target)"
scripts/fuzz.sh 10
phase "all passed"
