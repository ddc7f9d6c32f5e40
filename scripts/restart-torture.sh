#!/usr/bin/env bash
# Restart torture (as root): butterflyd is stopped and started again every INTERVAL seconds
# (default 10) for SECONDS (default 300) while two TAP "VMs" in network namespaces exchange
# traffic through filtered NICs: a TCP stream checked byte for byte over one connection, and
# UDP probes every 2 ms. Each round prints the time from stop to API up, the probes' gap, the
# stream's progress and the new daemon's file descriptors and resident memory; the run fails
# if a restart takes traffic more than 2 s to recover, the stream loses or changes a byte,
# or descriptors or memory creep up from round to round. CI runs a 10-second version as part
# of `cargo test -p butterflyd --test restart`.
#
#   scripts/restart-torture.sh [SECONDS [INTERVAL]]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-300} interval=${2:-10}
[[ "$secs" =~ ^[0-9]+$ && "$interval" =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "usage: $0 [SECONDS [INTERVAL]]" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "restart-torture: needs root (network namespaces, TAP devices)" >&2; exit 2; }
BF_TORTURE_SECS=$secs BF_TORTURE_INTERVAL=$interval \
  exec cargo test -p butterflyd --test restart restart_torture -- --exact --nocapture
