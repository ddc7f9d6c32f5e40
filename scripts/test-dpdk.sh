#!/usr/bin/env bash
# brick-nic built with the `dpdk` feature (Debian's DPDK 22.11) and its tests, DPDK ones
# included (EAL with --no-huge --no-pci and virtual devices), and the daemon on a DPDK bond
# (scenario 50).
set -euo pipefail
cd "$(dirname "$0")/.."
bash crates/brick-nic/scripts/test-dpdk.sh
cargo test -p butterflyd --features dpdk --test dpdk --test scenarios_bonding
# --nic-mtu on a DPDK port (net_tap in a namespace: needs root).
cargo test -p butterflyd --features dpdk --test operations nic_mtu_sets_the_dpdk_port
