#!/usr/bin/env bash
# Installs (idempotently) what running the fuzz targets needs: a nightly toolchain and
# cargo-fuzz, for scripts/test-fuzz-build.sh and scripts/fuzz-all.sh. Without rustup it says
# so and stops (the fuzz check then only type-checks the targets).
set -euo pipefail
if ! command -v rustup >/dev/null; then
  echo "setup-fuzz: no rustup; skipped (install nightly and cargo-fuzz to run the fuzzers)"
  exit 0
fi
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked
echo "setup-fuzz: $(rustc +nightly -V), $(cargo +nightly fuzz --version)"
