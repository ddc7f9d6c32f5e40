#!/usr/bin/env bash
# Installs everything butterfly-rs needs to build and test on a fresh Debian 12 machine.
# Idempotent: installs only what is missing. Run as root (or with sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# Packages every part of the project needs; each crate's own needs live in setup-<crate>.sh.
want=(tshark iproute2 iputils-ping graphviz pkg-config ca-certificates python3-venv libzmq3-dev)
missing=()
for p in "${want[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  # tshark asks whether non-root users may capture; answer "no" so nothing prompts.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Per-crate needs (DPDK, QEMU guests, Python peers...).
for s in scripts/setup-*.sh; do
  [ -e "$s" ] || continue
  echo "setup: $s"
  bash "$s"
done
echo "setup: done"
