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

pkgs=(iproute2 iputils-ping tshark pkg-config dpdk dpdk-dev libdpdk-dev libclang-dev clang)
to_install=()
for p in "${pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || to_install+=("$p")
done

if [ "${#to_install[@]}" -eq 0 ]; then
    echo "setup-brick-nic: everything already installed"
    exit 0
fi

echo "setup-brick-nic: installing ${to_install[*]}"
# Keep the tshark install non-interactive (no setuid dumpcap question).
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${to_install[@]}"
