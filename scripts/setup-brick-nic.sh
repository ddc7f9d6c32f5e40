#!/usr/bin/env bash
# Installs (idempotently) the Debian packages brick-nic's tests, the `dpdk` feature and the
# benchmarks need. Safe to run repeatedly: packages already present are skipped.
#
#   iproute2, iputils-ping   veth / netns / TAP tests (ip, ping)
#   tshark                   reading back captures in examples and manual checks
#   pkg-config, libdpdk-dev, dpdk-dev, dpdk, libclang-dev, clang
#                            the `dpdk` feature (bindgen over DPDK 22.11 headers, C shim,
#                            dpdk-testpmd for the benchmark comparison)
set -euo pipefail

source "$(dirname "$0")/lib/apt.sh"
apt_install_missing setup-brick-nic iproute2 iputils-ping tshark pkg-config dpdk dpdk-dev libdpdk-dev libclang-dev clang
