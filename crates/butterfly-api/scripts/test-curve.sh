#!/usr/bin/env bash
# Builds butterfly-api against Debian's libzmq (built with libsodium, so with
# CURVE) instead of the bundled one, and runs the CURVE test with CURVE
# required. Needs: apt-get install libzmq3-dev. Uses its own target dir.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
pkg-config --exists libzmq || { echo "libzmq3-dev missing: apt-get install -y libzmq3-dev" >&2; exit 1; }
triple="$(rustc -vV | sed -n 's/^host: //p')"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR_CURVE:-/work/target-api-curve}"
export BUTTERFLY_REQUIRE_CURVE=1
# Override the build script of the `zmq` links key (zmq-sys): link the system
# library; zmq-sys's bindings are pre-generated, so nothing else is needed.
cargo test -p butterfly-api --test curve \
    --config "target.${triple}.zmq.rustc-link-lib=[\"zmq\"]" \
    --config "target.${triple}.zmq.rustc-link-search=[\"$(pkg-config --variable=libdir libzmq)\"]" "$@"
