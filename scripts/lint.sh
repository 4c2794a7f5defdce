#!/usr/bin/env bash
# clang-tidy over src/, include/ and tools/ with the checked-in .clang-tidy;
# exits non-zero on any finding. Uses its own compile database (no
# precompiled headers: clang cannot read GCC's).
#
#   scripts/lint.sh              # every translation unit of src/ and tools/
#   scripts/lint.sh src/core     # only those under the given folders
set -euo pipefail
cd "$(dirname "$0")/.."
build=build/lint
cmake -S . -B "$build" -G Ninja -DCMAKE_EXPORT_COMPILE_COMMANDS=ON \
  -DCMAKE_DISABLE_PRECOMPILE_HEADERS=ON -DTETHER_BUILD_TESTS=OFF -DTETHER_BUILD_BENCH=OFF \
  -DTETHER_BUILD_EXAMPLES=OFF >/dev/null
folders=("${@:-src tools}")
# shellcheck disable=SC2206
folders=(${folders[*]})
files=()
for f in "${folders[@]}"; do
  while IFS= read -r file; do files+=("$file"); done < <(find "$f" -name '*.cpp' | sort)
done
echo "lint: clang-tidy on ${#files[@]} files (headers of include/, src/ and tools/ checked through them)"
start=$SECONDS
# run-clang-tidy: one process per core; -quiet prints findings only.
if ! run-clang-tidy -quiet -p "$build" -j "$(nproc)" "${files[@]}" >"$build/lint.log" 2>&1; then
  grep -E 'warning:|error:' "$build/lint.log" | sort -u | head -200
  n=$(grep -cE 'warning:|error:' "$build/lint.log" || true)
  echo "lint: FAILED, $n finding(s) ($((SECONDS - start)) s); full log: $build/lint.log"
  exit 1
fi
echo "lint: clean ($((SECONDS - start)) s)"
