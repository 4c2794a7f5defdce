#!/usr/bin/env bash
# Installs everything tether needs to build, test and benchmark, from Debian
# bookworm packages only. Idempotent: packages already present are skipped, so
# running it twice is cheap. Needs root (or sudo) on a Debian bookworm machine.
#
#   scripts/install-deps.sh            # build + test dependencies
#   TETHER_DEPS_QUIET=1 scripts/...    # less apt noise
set -euo pipefail

packages=(
  # toolchain
  g++ cmake ninja-build ccache git pkg-config clang-format
  # fuzzing: clang with libFuzzer and the sanitizer runtimes
  clang libclang-rt-14-dev
  # the network-monitor test builds network namespaces
  iproute2
  # libraries
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
  libssl-dev libsqlite3-dev libhiredis-dev libspdlog-dev libfmt-dev
  libcli11-dev libgtest-dev libgmock-dev libbenchmark-dev
  # servers and third-party peers used by integration tests
  redis-server redis-sentinel nginx python3 python3-websockets openssl curl
  # the TypeScript SDK's browser tests: Debian's Chromium, driven by playwright-core
  chromium
  # benchmarks: the plots of docs/BENCHMARKS.md
  gnuplot-nox
  # the API reference (the `api_docs` target) and clang-tidy (scripts/lint.sh)
  doxygen clang-tidy
)
# Node.js: any install that provides both `node` and `npm` is fine (a machine
# may carry a newer vendor build whose nodejs package already bundles npm and
# conflicts with Debian's separate npm package).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: done"
