#!/usr/bin/env bash
# Restart torture (as root), two variants:
#
# - daemon side (default): butterflyd is stopped and started again every INTERVAL seconds
#   (default 10) for SECONDS (default 300) while two TAP "VMs" in network namespaces exchange
#   traffic through filtered NICs: a TCP stream checked byte for byte over one connection, and
#   UDP probes every 2 ms. Each round prints the time from stop to API up, the probes' gap,
#   the stream's progress and the new daemon's file descriptors and resident memory; the run
#   fails if a restart takes traffic more than 2 s to recover, the stream loses or changes a
#   byte, or descriptors or memory creep up from round to round.
# - VM side (--vm-side): the daemon keeps running while the VM end of a filtered vhost-user
#   NIC (dpdk-testpmd with a virtio_user port) is stopped and started again, round after round
#   for SECONDS (INTERVAL is not used: each round lasts as long as a testpmd start). Each round
#   prints how long each direction took to flow again and the daemon's descriptors, memory
#   mappings and resident memory; the run fails if traffic takes more than 2 s or any of them
#   creeps up.
#
# CI runs short versions as part of `cargo test -p butterflyd --test restart` and
# `--test vm_restart`.
#
#   scripts/restart-torture.sh [--vm-side] [SECONDS [INTERVAL]]
set -euo pipefail
cd "$(dirname "$0")/.."
side=daemon
if [ "${1:-}" = "--vm-side" ]; then side=vm; shift; fi
secs=${1:-300} interval=${2:-10}
[[ "$secs" =~ ^[0-9]+$ && "$interval" =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "usage: $0 [--vm-side] [SECONDS [INTERVAL]]" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "restart-torture: needs root (network namespaces, TAP devices)" >&2; exit 2; }
if [ "$side" = vm ]; then
  BF_TORTURE_SECS=$secs \
    exec cargo test -p butterflyd --test vm_restart -- --exact --nocapture \
    the_vm_side_restarts_again_and_again_and_nothing_leaks
fi
BF_TORTURE_SECS=$secs BF_TORTURE_INTERVAL=$interval \
  exec cargo test -p butterflyd --test restart restart_torture -- --exact --nocapture
