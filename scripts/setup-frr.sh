#!/usr/bin/env bash
# Installs (idempotently) what the EVPN tests need (crates/butterflyd/tests/evpn.rs):
#
#   frr        bgpd and zebra, the BGP EVPN control plane (their service is not needed:
#              the tests start their own daemons in network namespaces)
#   iproute2   namespaces, veth, kernel vxlan and bridge devices
#   python3    the byte-exact TCP transfers
set -euo pipefail

source "$(dirname "$0")/lib/apt.sh"
apt_install_missing setup-frr frr iproute2 iputils-ping python3
