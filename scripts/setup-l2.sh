#!/usr/bin/env bash
# Installs (idempotently) the Debian packages the brick-switch / brick-vtep tests need.
#
#   iproute2       ip netns / veth / kernel vxlan devices, bridge fdb (interop tests)
#   iputils-ping   the kernel side pings our overlay (interop tests)
#   ethtool        turns veth TX checksum offload off so raw sockets see complete checksums
#   tshark         decodes the frames we emit as VXLAN and checks their checksums
set -euo pipefail

pkgs=(iproute2 iputils-ping ethtool tshark)
to_install=()
for p in "${pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || to_install+=("$p")
done

if [ "${#to_install[@]}" -eq 0 ]; then
    echo "setup-l2: everything already installed"
    exit 0
fi

echo "setup-l2: installing ${to_install[*]}"
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${to_install[@]}"
