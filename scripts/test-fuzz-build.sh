#!/usr/bin/env bash
# Type-checks every cargo-fuzz target (each crates/*/fuzz is a standalone crate), so the
# fuzzers cannot silently rot when the code they drive changes. Running them needs nightly
# and cargo-fuzz: `cd crates/<crate>/fuzz && cargo +nightly fuzz run <target>`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="$PWD/target/fuzz-check"
for f in crates/*/fuzz/Cargo.toml; do
  echo "fuzz targets: $(dirname "$f")"
  (cd "$(dirname "$f")" && cargo check --quiet --bins)
done
