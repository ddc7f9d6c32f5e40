#!/usr/bin/env bash
# Installs (idempotently) the Debian packages the brick-switch / brick-vtep tests need.
#
#   iproute2       ip netns / veth / kernel vxlan devices, bridge fdb (interop tests)
#   iputils-ping   the kernel side pings our overlay (interop tests)
#   tshark         decodes the frames we emit as VXLAN and checks their checksums
set -euo pipefail

source "$(dirname "$0")/lib/apt.sh"
apt_install_missing setup-l2 iproute2 iputils-ping tshark
