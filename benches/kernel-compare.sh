#!/usr/bin/env bash
# Side-by-side: the same two-host overlay built three times in one run, then measured.
#   butterfly : two butterflyd (AF_PACKET underlay on a veth), TAP "VMs" in namespaces
#   kernel    : Linux bridge + vxlan + nftables conntrack (stateful filter) on each host
#   veth      : the two VM namespaces joined directly by a veth pair (the ceiling)
# Figures: ping RTT (mean / median of 50), iperf3 TCP (1 stream), iperf3 UDP 64-byte packets/s received and loss,
# CPU used during the UDP test. Usage (root):
#   [BUSY_POLL=1] [BUTTERFLYD=path] [UDP_RATES="0.1 0.15 0.2"] benches/kernel-compare.sh [SECONDS [ROUNDS]]
# butterfly-rs is measured three ways: AF_PACKET underlay with --no-offload (VMs without TSO:
# every MSS-sized segment crosses both daemons, the behaviour before GSO support), AF_PACKET
# underlay with TSO from the VMs (super-frames cross the VM side whole, the VTEP cuts them in
# software before encapsulation: AF_PACKET cannot send UDP-tunnel super-frames; the far VM's
# TAP merges segments back), and a TAP underlay bridged to the veth by the host kernel with
# UDP-tunnel GSO (super-frames cross the whole path and the wire whole).
# Installs iperf3 and nftables if missing. Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}
ROUNDS=${2:-3}
BENCH_PACKAGES="iperf3 nftables iputils-ping bc"
. benches/common.sh
vmaddr() { # ns dev ip
  ip -n "$1" link set "$2" mtu 1450
  ip -n "$1" addr add "$3/24" dev "$2"; ip -n "$1" link set "$2" up
}

# Every topology is built first, then measured in interleaved rounds (each round measures
# every setup once, in turn), so that a burst of noise on this shared machine lands on one
# round of each setup rather than on all the rounds of one. The table gives the median of
# the rounds, and the range for throughputs.
# The daemons of the setups not being measured are stopped (SIGSTOP) meanwhile: idle they
# cost little, but with --busy-poll they would spin on the shared CPUs.
NAMES=(); CLIENTS=(); SERVERS=(); ADDRS=(); DAEMONS=()
setup() { # name client-ns server-ns server-ip [daemon pids]
  NAMES+=("$1"); CLIENTS+=("$2"); SERVERS+=("$3"); ADDRS+=("$4"); DAEMONS+=("${5:-}")
}

# One measurement of setup number $1, appended to $TMP/res.$1 as one line:
# rtt-mean rtt-median tcp-gbit udp-mpps udp-loss cpu [udp-mpps loss cpu at each UDP_RATES]
measure() {
  local k=$1 c=${CLIENTS[$1]} s=${SERVERS[$1]} ip=${ADDRS[$1]} j
  for j in "${!DAEMONS[@]}"; do
    [ -n "${DAEMONS[$j]}" ] || continue
    if [ "$j" = "$k" ]; then kill -CONT ${DAEMONS[$j]}; else kill -STOP ${DAEMONS[$j]}; fi
  done
  if ! ip netns exec "$c" ping -c 3 -W 2 "$ip" >/dev/null; then echo unreachable >>"$TMP/res.$k"; return; fi
  # Mean and median of 50 pings: on a shared machine a few scheduling outliers move the mean.
  local rtt; rtt=$(ip netns exec "$c" ping -c 50 -i 0.02 "$ip" | grep -o 'time=[0-9.]*' | cut -d= -f2 | sort -n |
    awk '{a[NR]=$1; s+=$1} END{printf "%.3f %.3f", s/NR, (a[int((NR+1)/2)]+a[int(NR/2)+1])/2}')
  ip netns exec "$s" iperf3 -s -D -1 -p 5201 >/dev/null; sleep 0.3
  local tcp; tcp=$(ip netns exec "$c" iperf3 -c "$ip" -p 5201 -t "$SECS" -J | python3 -c 'import json,sys; print("%.2f" % (json.JSONDecoder().raw_decode(sys.stdin.read())[0]["end"]["sum_received"]["bits_per_second"]/1e9))')
  udp_run 0
  local line="$rtt $tcp $udp $cpu"
  # Offered-rate sweep (UDP_RATES="0.1 0.15 ..." in Mpps): where loss starts, with the
  # generator not flooding a queue it shares the CPUs with.
  for rate in ${UDP_RATES:-}; do
    udp_run "$(echo "$rate*1000000*18*8" | bc)"
    line="$line $udp $cpu"
  done
  echo "$line" >>"$TMP/res.$k"
}

# One UDP run of 64-byte frames at BITRATE (payload bits/s, 0 = as fast as iperf3 can);
# sets udp ("Mpps-received loss-%") and cpu (% of all CPUs, out of 200).
udp_run() {
  ip netns exec "$s" iperf3 -s -D -1 -p 5202 >/dev/null; sleep 0.3
  local c0 c1 t0 t1
  c0=$(cpu_busy); t0=$(date +%s.%N)
  udp=$(ip netns exec "$c" iperf3 -c "$ip" -p 5202 -u -l 18 -b "$1" -t "$SECS" -J | python3 -c '
import json,sys
e=json.JSONDecoder().raw_decode(sys.stdin.read())[0]["end"]["sum"]
pps=e["packets"]-e["lost_packets"]
print("%.3f %.1f" % (pps/e["seconds"]/1e6, e["lost_percent"]))')
  c1=$(cpu_busy); t1=$(date +%s.%N)
  cpu=$(echo "($c1-$c0)/($(getconf CLK_TCK)*($t1-$t0))*100" | bc -l)
}


# --- veth ceiling
mkns bfcva$T; mkns bfcvb$T
ip -n bfcva$T link add e0 type veth peer name e0 netns bfcvb$T
vmaddr bfcva$T e0 10.50.0.1; vmaddr bfcvb$T e0 10.50.0.2
setup veth bfcva$T bfcvb$T 10.50.0.2

# --- kernel overlay: bridge + vxlan + nftables conntrack on each host
mkns bfck1$T; mkns bfck2$T; mkns bfcka$T; mkns bfckb$T
ip -n bfck1$T link add u type veth peer name u netns bfck2$T
for i in 1 2; do
  h=bfck$i$T; vm=$([ $i = 1 ] && echo bfcka$T || echo bfckb$T)
  ip -n $h addr add 198.18.90.$i/24 dev u; ip -n $h link set u up
  ip -n $h link add vx type vxlan id 50 group 230.0.0.50 dev u dstport 4789 local 198.18.90.$i
  ip -n $h link add kbr type bridge; ip -n $h link set vx master kbr up; ip -n $h link set kbr up
  ip -n $h link add kport type veth peer name e0 netns $vm
  ip -n $h link set kport master kbr up
  vmaddr $vm e0 10.51.0.$i
  # Bridged IPv4 goes through the inet forward hook (br_netfilter), where conntrack runs:
  # a stateful filter like butterfly's (new flows by rule, the rest by connection state).
  ip netns exec $h sysctl -qw net.bridge.bridge-nf-call-iptables=1
  ip netns exec $h nft -f - <<NFT
table inet filter {
  chain forward {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    ip protocol { tcp, udp, icmp } ct state new accept
  }
}
NFT
done
setup "kernel bridge+vxlan+nftables conntrack" bfcka$T bfckb$T 10.51.0.2

# --- butterfly-rs: butterfly NAME TAG SUBNET UNDERLAY(af-packet|tap) [daemon options]
butterfly() {
  local name=$1 tg=$2 net=$3 kind=$4; shift 4
  local h1=bfc${tg}1$T h2=bfc${tg}2$T
  mkns $h1; mkns $h2
  ip -n $h1 link add u type veth peer name u netns $h2
  for i in 1 2; do
    h=bfc${tg}$i$T
    ip -n $h link set u up
    ip netns exec $h sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    local ul=af-packet:u
    if [ "$kind" = tap ]; then
      # The host kernel bridges the daemon's TAP underlay to its NIC (here the veth).
      ip -n $h link add br0 type bridge mcast_snooping 0; ip -n $h link set u master br0
      ip -n $h link set br0 up; ul=tap:bfu
    fi
    ip netns exec $h $BD --underlay $ul -i 198.18.$net.$i -e ipc://$TMP/api$tg$i.sock -s $TMP/s$tg$i \
       --no-state --metrics off -l error ${BUSY_POLL:+--busy-poll} "$@" </dev/null 2>$TMP/bd$tg$i.log &
    PIDS+=($!)
  done
  for i in 1 2; do
    local api=ipc://$TMP/api$tg$i.sock
    for k in $(seq 50); do $CLI -e $api -t 500 nic list >/dev/null 2>&1 && break; sleep 0.1; done
    [ "$kind" = tap ] && ip -n bfc${tg}$i$T link set bfu master br0
    $CLI -e $api sg add open >/dev/null
    $CLI -e $api sg rule add open --dir in --ip-proto all --cidr 0.0.0.0/0 >/dev/null
    $CLI -e $api nic add --id bfcn$i --type TAP --mac 52:54:00:$net:00:0$i --vni $net --ip 10.$net.0.$i --sg open >/dev/null
    vm=bfc${tg}v$i$T; mkns $vm
    ip -n bfc${tg}$i$T link set dev bfcn$i address 52:54:00:$net:00:0$i
    ip -n bfc${tg}$i$T link set dev bfcn$i netns $vm
    vmaddr $vm bfcn$i 10.$net.0.$i
  done
  setup "$name" bfc${tg}v1$T bfc${tg}v2$T 10.$net.0.2 "${PIDS[*]: -2}"
}
butterfly "butterfly-rs AF_PACKET, VMs without TSO (--no-offload)" a 52 af-packet --no-offload
butterfly "butterfly-rs AF_PACKET, TSO + software GSO in the VTEP" b 53 af-packet
butterfly "butterfly-rs TAP underlay + UDP-tunnel GSO (bridged)" c 54 tap

for r in $(seq "$ROUNDS"); do
  for k in "${!NAMES[@]}"; do measure "$k"; done
done
for p in "${PIDS[@]}"; do kill -CONT "$p" 2>/dev/null || true; done

# The table: medians of the rounds; throughputs also give their range (min-max).
for k in "${!NAMES[@]}"; do echo "${NAMES[$k]}"; cat "$TMP/res.$k"; echo; done | python3 -c '
import sys, statistics as st
rates = sys.argv[1].split()
blocks = sys.stdin.read().strip("\n").split("\n\n")
print("Medians of %s interleaved rounds of %s s; throughputs as median (min-max)." % (sys.argv[2], sys.argv[3]))
print()
print("| setup | ping RTT ms mean / median | TCP Gbit/s | UDP 64B Mpps received | UDP loss % | CPU (of 200%) |")
print("|---|---|---|---|---|---|")
def rng(v, f): return "%s (%s-%s)" % (f % st.median(v), f % min(v), f % max(v))
for b in blocks:
    lines = b.split("\n"); name = lines[0]
    rows = [list(map(float, l.split())) for l in lines[1:] if l != "unreachable"]
    if not rows:
        print("| %s | unreachable | | | | |" % name); continue
    col = lambda i: [r[i] for r in rows]
    print("| %s | %.3f / %.3f | %s | %s | %.1f | %.0f%% |" % (name, st.median(col(0)), st.median(col(1)),
          rng(col(2), "%.2f"), rng(col(3), "%.3f"), st.median(col(4)), st.median(col(5))))
    for j, rate in enumerate(rates):
        i = 6 + 3 * j
        print("| %s, UDP offered at %s Mpps | | | %s | %.1f | %.0f%% |" % (name, rate, rng(col(i), "%.3f"),
              st.median(col(i + 1)), st.median(col(i + 2))))
' "${UDP_RATES:-}" "$ROUNDS" "$SECS"
