#!/usr/bin/env bash
# Builds every cargo-fuzz target (crates/*/fuzz) and runs each one briefly on its committed
# seeds: FUZZ_CI_SECONDS (default 10) per target, FUZZ_JOBS (default 2) at once. Fails on a
# crash, a leak, an out-of-memory stop or a timeout, so the fuzzers cannot rot and the seeds
# keep passing. The report is in target/fuzz-ci/report.txt. Needs nightly and cargo-fuzz
# (scripts/setup-fuzz.sh, run by scripts/setup.sh, installs them); without them it only
# type-checks the targets, and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
if cargo +nightly fuzz --version >/dev/null 2>&1; then
  rm -rf target/fuzz-ci
  exec scripts/fuzz-all.sh -j "${FUZZ_JOBS:-2}" --no-seed-update --out target/fuzz-ci "${FUZZ_CI_SECONDS:-10}"
fi
echo "test-fuzz-build: WARNING: no nightly toolchain or cargo-fuzz; the fuzz targets are only" \
  "type-checked, not run (scripts/setup-fuzz.sh installs them)"
export CARGO_TARGET_DIR="$PWD/target/fuzz-check"
for f in crates/*/fuzz/Cargo.toml; do
  echo "fuzz targets: $(dirname "$f")"
  (cd "$(dirname "$f")" && cargo check --quiet --bins)
done
