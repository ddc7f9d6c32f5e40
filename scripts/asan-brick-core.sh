#!/usr/bin/env bash
# brick-core's tests (pool, graph, cross-thread queue, buffer property tests) under
# AddressSanitizer. Needs a nightly toolchain (not part of CI: a fresh machine may not have
# one). Leak detection is off: a closed pool's bookkeeping is leaked on purpose (see
# crates/brick-core/src/pool.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
ASAN_OPTIONS=detect_leaks=0 RUSTFLAGS="-Zsanitizer=address" CARGO_TARGET_DIR="$PWD/target/asan" \
  cargo +nightly test -p brick-core --target "$(rustc -vV | sed -n 's/^host: //p')" \
  --lib --test threads --test graph --test packet_props --test sniffer "$@"
