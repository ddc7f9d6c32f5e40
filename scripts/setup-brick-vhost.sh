#!/bin/bash
# Installs what brick-vhost's tests and benchmarks need (idempotent: skips installed packages).
#   qemu-system-x86  : the TCG guests of tests/guest_pair.rs and benches/iperf-compare.sh
#   busybox-static, cpio, gzip : the guest initramfs (tests/guest/build-guest.sh)
#   dpdk-dev         : dpdk-testpmd with the virtio_user vdev (tests/virtio_user.rs: a guest with no VM)
#   iperf3           : guest-to-guest throughput (benches/iperf-compare.sh, copied into the initramfs)
#   iproute2         : bridge + tap for the vhost-net comparison
set -eu
source "$(dirname "$0")/lib/apt.sh"
apt_install_missing setup-brick-vhost qemu-system-x86 busybox-static cpio gzip dpdk-dev librte-net-vhost23 librte-mempool-ring23 iperf3 iproute2 bc
