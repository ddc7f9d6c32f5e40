#!/usr/bin/env bash
# brick-core's tests (pool, graph, cross-thread queue, buffer property tests, the pool's
# memory accounting) under AddressSanitizer, with LeakSanitizer on: packet pools free
# everything once their last handle, packet and thread cache are gone, so a leak is a bug.
# Needs a nightly toolchain (not part of CI: a fresh machine may not have one).
# scripts/miri-pool.sh runs the pool's own tests under Miri.
set -euo pipefail
cd "$(dirname "$0")/.."
ASAN_OPTIONS=detect_leaks=1 RUSTFLAGS="-Zsanitizer=address" CARGO_TARGET_DIR="$PWD/target/asan" \
  cargo +nightly test -p brick-core --target "$(rustc -vV | sed -n 's/^host: //p')" \
  --lib --test threads --test graph --test packet_props --test sniffer --test pool_memory "$@"
