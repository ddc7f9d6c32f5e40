#!/usr/bin/env bash
# The packet pool's and packets' unit tests under Miri (undefined behaviour, data races, use
# after free, leaks), with their loops cut down (`cfg(miri)`). Needs nightly with the miri
# component (`rustup +nightly component add miri rust-src`); a few minutes. Not part of CI.
#   scripts/miri-pool.sh [EXTRA CARGO-MIRI TEST ARGS]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo +nightly miri test -p brick-core --lib "$@" -- pool:: packet::tests burst::
