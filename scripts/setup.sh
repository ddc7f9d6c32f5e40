#!/usr/bin/env bash
# Installs everything butterfly-rs needs to build and test on a fresh Debian 12 machine.
# Idempotent: installs only what is missing. Run as root (or with sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

# Packages every part of the project needs; each crate's own needs live in setup-<crate>.sh.
source scripts/lib/apt.sh
apt_install_missing setup tshark iproute2 iputils-ping graphviz pkg-config ca-certificates python3-venv libzmq3-dev

# Per-crate needs (DPDK, QEMU guests, Python peers...).
for s in scripts/setup-*.sh; do
  [ -e "$s" ] || continue
  echo "setup: $s"
  bash "$s"
done
echo "setup: done"
