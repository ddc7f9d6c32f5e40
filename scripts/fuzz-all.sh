#!/usr/bin/env bash
# Runs every cargo-fuzz target of the workspace for SECONDS each (default 60) with libFuzzer.
# Needs nightly and cargo-fuzz (`cargo install cargo-fuzz`); not part of CI (CI type-checks
# the targets, scripts/test-fuzz-build.sh). Leak detection is off: packet pools leak their
# bookkeeping on purpose (crates/brick-core/src/pool.rs). Crashes land in
# crates/<crate>/fuzz/artifacts/<target>/; reproduce with `cargo +nightly fuzz run <target> <file>`.
#   scripts/fuzz-all.sh [SECONDS] [TARGET-NAME-FILTER]
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
filter=${2:-}
failed=()
for f in crates/*/fuzz/fuzz_targets/*.rs; do
  dir=$(dirname "$(dirname "$f")"); t=$(basename "$f" .rs)
  [[ -z "$filter" || "$t" == *"$filter"* ]] || continue
  echo "=== $dir: $t (${secs}s)"
  if ! (cd "$dir" && ASAN_OPTIONS=detect_leaks=0 cargo +nightly fuzz run "$t" -- -max_total_time="$secs" -detect_leaks=0 \
        -rss_limit_mb=4096 2>&1 | grep -E "^Done|ERROR|panicked|SUMMARY|Test unit written"; exit "${PIPESTATUS[0]}"); then
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then echo "fuzz: crashes in ${failed[*]}"; exit 1; fi
echo "fuzz: no crash"
