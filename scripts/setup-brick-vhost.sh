#!/bin/bash
# Installs what brick-vhost's tests and benchmarks need (idempotent: skips installed packages).
#   qemu-system-x86  : the TCG guests of tests/guest_pair.rs and benches/iperf-compare.sh
#   busybox-static, cpio, gzip : the guest initramfs (tests/guest/build-guest.sh)
#   dpdk-dev         : dpdk-testpmd with the virtio_user vdev (tests/virtio_user.rs: a guest with no VM)
#   iperf3           : guest-to-guest throughput (benches/iperf-compare.sh, copied into the initramfs)
#   iproute2         : bridge + tap for the vhost-net comparison
set -eu
to_install=()
for p in qemu-system-x86 busybox-static cpio gzip dpdk-dev librte-net-vhost23 librte-mempool-ring23 iperf3 iproute2 bc; do
  dpkg -s "$p" >/dev/null 2>&1 || to_install+=("$p")
done
if [ ${#to_install[@]} -gt 0 ]; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${to_install[@]}"
fi
