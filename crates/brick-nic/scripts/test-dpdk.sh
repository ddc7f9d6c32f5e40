#!/usr/bin/env bash
# Builds brick-nic with the `dpdk` feature (bindgen over Debian's DPDK 22.11) and runs all its
# tests, the DPDK one included (EAL with --no-huge --no-pci and vdevs; needs root for the
# veth/netns parts). Install the prerequisites first with scripts/setup-brick-nic.sh.
set -euo pipefail
cd "$(dirname "$0")/../../.."
if ! pkg-config --exists libdpdk; then
    echo "test-dpdk: libdpdk not found by pkg-config; run scripts/setup-brick-nic.sh" >&2
    exit 1
fi
cargo test -p brick-nic --features dpdk "$@"
