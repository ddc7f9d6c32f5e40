#!/usr/bin/env bash
# The API over ZeroMQ CURVE, with butterfly-api linked to Debian's libzmq (built with
# libsodium) instead of the bundled one, which has no CURVE.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR_CURVE="${CARGO_TARGET_DIR_CURVE:-$PWD/target/curve}"
exec bash crates/butterfly-api/scripts/test-curve.sh
