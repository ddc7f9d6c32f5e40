#!/usr/bin/env bash
# DPDK io forwarding: dpdk-testpmd vs brick-nic (DpdkNic → Patch ← DpdkNic), on the same
# vdevs, in the same run, each on one lcore without hugepages. Prints both rates and the
# ratio. Usage: benches/dpdk-vs-testpmd.sh [SECONDS] [VDEV-KIND]   (net_null | net_ring)
set -euo pipefail
secs=${1:-5}
kind=${2:-net_null}
here=$(cd "$(dirname "$0")/../../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-nic}
cargo build --release -q -p brick-nic --features dpdk --example dpdk_fwd --manifest-path "$here/Cargo.toml"
bin=$CARGO_TARGET_DIR/release/examples/dpdk_fwd
cpu=${CPU:-1}
vdevs=(--vdev "${kind}0" --vdev "${kind}1")
prefix_t=bnbench-tpmd-$$
prefix_b=bnbench-brick-$$
trap 'rm -rf /var/run/dpdk/$prefix_t /var/run/dpdk/$prefix_b' EXIT

# testpmd: one forwarding lcore (the second of -l), io mode, stats every second.
out=$(timeout -s INT $((secs + 3)) dpdk-testpmd -l 0,$cpu --no-huge --no-pci -m 512 --file-prefix "$prefix_t" \
    --log-level error "${vdevs[@]}" -- --forward-mode=io --stats-period 1 --total-num-mbufs=16384 \
    --auto-start 2>&1 || true)
# Sum of the ports' Rx-pps over the last full statistics round.
tpmd=$(echo "$out" | grep -o 'Rx-pps: *[0-9]*' | awk '{print $2}' | tail -n 2 | paste -sd+ | bc)
# brick-nic: same vdevs, the main lcore pinned to the same CPU testpmd forwarded on.
bout=$("$bin" "$secs" -l "$cpu" --no-huge --no-pci -m 512 --file-prefix "$prefix_b" --log-level error "${vdevs[@]}")
brick=$(echo "$bout" | sed -n 's/^RX_PPS=//p')
echo "$bout" | head -1
printf 'testpmd io fwd (%s): %.2f Mpps\n' "$kind" "$(echo "$tpmd / 1000000" | bc -l)"
printf 'brick-nic fwd  (%s): %.2f Mpps\n' "$kind" "$(echo "$brick / 1000000" | bc -l)"
printf 'ratio brick/testpmd: %.3f (target >= 0.9)\n' "$(echo "$brick / $tpmd" | bc -l)"
