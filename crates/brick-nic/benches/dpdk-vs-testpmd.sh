#!/usr/bin/env bash
# DPDK forwarding: dpdk-testpmd vs brick-nic (DpdkNic → Patch ← DpdkNic), on the same vdevs,
# each on one lcore without hugepages, alternating ROUNDS times so that both see the same
# machine (it is shared and noisy); the best round of each is compared.
#   testpmd io     : moves mbuf pointers, never touches a packet (the target: ratio >= 0.9)
#   testpmd macswap: swaps the Ethernet addresses of every packet (a forwarder that reads
#                    headers, as the graph does: the NIC brick locates L2/L3 of every frame)
# Usage: benches/dpdk-vs-testpmd.sh [SECONDS] [VDEV-KIND] [ROUNDS]   (net_null | net_ring)
set -euo pipefail
secs=${1:-5}
kind=${2:-net_null}
rounds=${3:-3}
here=$(cd "$(dirname "$0")/../../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$here/target}
cargo build --release -q -p brick-nic --features dpdk --example dpdk_fwd --manifest-path "$here/Cargo.toml"
bin=$CARGO_TARGET_DIR/release/examples/dpdk_fwd
cpu=${CPU:-1}
vdevs=(--vdev "${kind}0" --vdev "${kind}1")
prefix=bnbench-$$
trap 'rm -rf /var/run/dpdk/$prefix-*' EXIT

testpmd() { # mode -> Mpps (sum of both ports' Rx-pps over the last full statistics round)
  local out
  out=$(timeout -s INT $((secs + 3)) dpdk-testpmd -l 0,$cpu --no-huge --no-pci -m 512 \
      --file-prefix "$prefix-t$1" --log-level error "${vdevs[@]}" -- --forward-mode="$1" \
      --stats-period 1 --total-num-mbufs=16384 --auto-start 2>&1 || true)
  echo "$out" | grep -o 'Rx-pps: *[0-9]*' | awk '{print $2}' | tail -n 2 | paste -sd+ | bc
}
brick() { # zero-copy (1|0) -> pps, the main lcore pinned to the CPU testpmd forwarded on
  BRICK_ZERO_COPY=$1 "$bin" "$secs" -l "$cpu" --no-huge --no-pci -m 512 --file-prefix "$prefix-b" --log-level error \
      "${vdevs[@]}" | sed -n 's/^RX_PPS=//p'
}
best() { tr ' ' '\n' | sort -g | tail -1; }

io=() mac=() br=() cp=()
for r in $(seq "$rounds"); do
  io+=("$(testpmd io)"); br+=("$(brick 1)"); mac+=("$(testpmd macswap)"); cp+=("$(brick 0)")
  printf 'round %d: testpmd io %.2f, brick-nic %.2f, testpmd macswap %.2f, brick-nic copying %.2f Mpps\n' "$r" \
    "$(echo "${io[-1]} / 1000000" | bc -l)" "$(echo "${br[-1]} / 1000000" | bc -l)" \
    "$(echo "${mac[-1]} / 1000000" | bc -l)" "$(echo "${cp[-1]} / 1000000" | bc -l)"
done
bio=$(echo "${io[*]}" | best); bbr=$(echo "${br[*]}" | best); bmac=$(echo "${mac[*]}" | best)
bcp=$(echo "${cp[*]}" | best)
printf 'best of %d (%s, 64 B):\n' "$rounds" "$kind"
printf '  testpmd io fwd      %.2f Mpps\n' "$(echo "$bio / 1000000" | bc -l)"
printf '  testpmd macswap     %.2f Mpps\n' "$(echo "$bmac / 1000000" | bc -l)"
printf '  brick-nic fwd       %.2f Mpps (%.1f ns/pkt)\n' "$(echo "$bbr / 1000000" | bc -l)" "$(echo "1000000000 / $bbr" | bc -l)"
printf '  brick-nic copying   %.2f Mpps (%.1f ns/pkt)\n' "$(echo "$bcp / 1000000" | bc -l)" "$(echo "1000000000 / $bcp" | bc -l)"
printf 'ratio brick/testpmd io: %.3f (target >= 0.9); brick/macswap: %.3f\n' \
  "$(echo "$bbr / $bio" | bc -l)" "$(echo "$bbr / $bmac" | bc -l)"
