#!/usr/bin/env bash
# butterflyd with 1 and with 2 worker threads, on the same two-host namespace topology in one
# run: two VNIs (60 on worker 0, 61 on worker 1 with --workers 2), one VM pair in each, and
# two iperf3 flows at once (one per VNI). Figures: UDP 64-byte packets/s received (sum of
# both flows), TCP Gbit/s (sum of both flows), CPU used. Rounds alternate between the two
# set-ups and the best round of each is kept. The in-memory scaling of the graphs alone is
# `cargo bench -p butterfly-benches --bench workers`.
# Usage (root): benches/workers-compare.sh [SECONDS] [ROUNDS]. Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}
ROUNDS=${2:-3}
BENCH_PACKAGES="iperf3 iputils-ping bc"
. benches/common.sh

# hosts W: two daemons with W workers, VM pairs in VNIs 60 and 61.
hosts() {
  local w=$1; local h1=bfw${w}1$T h2=bfw${w}2$T
  mkns $h1; mkns $h2
  ip -n $h1 link add u type veth peer name u netns $h2
  for i in 1 2; do
    h=bfw$w$i$T
    ip -n $h link set u up
    ip netns exec $h sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    ip netns exec $h $BD --underlay af-packet:u -i 198.18.6$w.$i -e ipc://$TMP/api$w$i.sock -s $TMP/s$w$i \
       --no-state --metrics off -l error --workers $w </dev/null 2>$TMP/bd$w$i.log &
    PIDS+=($!)
  done
  for i in 1 2; do
    local api=ipc://$TMP/api$w$i.sock
    for k in $(seq 50); do $CLI -e $api -t 500 nic list >/dev/null 2>&1 && break; sleep 0.1; done
    $CLI -e $api sg add open >/dev/null
    $CLI -e $api sg rule add open --dir in --ip-proto all --cidr 0.0.0.0/0 >/dev/null
    for vni in 60 61; do
      local id=n$vni$i vm=bfw${w}v$vni$i$T
      $CLI -e $api nic add --id $id --type TAP --mac 52:54:00:$vni:00:0$i --vni $vni --ip 10.$vni.0.$i --sg open >/dev/null
      mkns $vm
      ip -n bfw$w$i$T link set dev $id address 52:54:00:$vni:00:0$i
      ip -n bfw$w$i$T link set dev $id netns $vm
      ip -n $vm link set $id mtu 1450
      ip -n $vm addr add 10.$vni.0.$i/24 dev $id; ip -n $vm link set $id up
    done
  done
  for vni in 60 61; do
    ip netns exec bfw${w}v${vni}1$T ping -c 3 -W 2 10.$vni.0.2 >/dev/null || { echo "workers $w: VNI $vni unreachable" >&2; exit 1; }
  done
}

# both W MODE: two iperf3 flows at once; prints "sum cpu%" (UDP: Mpps received; TCP: Gbit/s).
both() {
  local w=$1 mode=$2 c0 c1 t0 t1
  for vni in 60 61; do ip netns exec bfw${w}v${vni}2$T iperf3 -s -D -1 -p 5201 >/dev/null; done
  sleep 0.3
  c0=$(cpu_busy); t0=$(date +%s.%N)
  for vni in 60 61; do
    if [ "$mode" = udp ]; then
      ip netns exec bfw${w}v${vni}1$T iperf3 -c 10.$vni.0.2 -p 5201 -u -l 18 -b 0 -t "$SECS" -J >$TMP/r$vni.json &
    else
      ip netns exec bfw${w}v${vni}1$T iperf3 -c 10.$vni.0.2 -p 5201 -t "$SECS" -J >$TMP/r$vni.json &
    fi
  done
  wait %1 %2 2>/dev/null || wait
  c1=$(cpu_busy); t1=$(date +%s.%N)
  local sum; sum=$(python3 - "$mode" $TMP/r60.json $TMP/r61.json <<'PY'
import json,sys
mode=sys.argv[1]; tot=0.0
for f in sys.argv[2:]:
    e=json.load(open(f))["end"]
    if mode=="udp":
        s=e["sum"]; tot+=(s["packets"]-s["lost_packets"])/s["seconds"]/1e6
    else:
        tot+=e["sum_received"]["bits_per_second"]/1e9
print("%.3f" % tot)
PY
)
  local cpu; cpu=$(echo "($c1-$c0)/($(getconf CLK_TCK)*($t1-$t0))*100" | bc -l)
  printf '%s %.0f\n' "$sum" "$cpu"
}

hosts 1
hosts 2
declare -A best
for r in $(seq "$ROUNDS"); do
  for w in 1 2; do
    for mode in udp tcp; do
      read -r v cpu < <(both $w $mode)
      echo "round $r: workers $w $mode $v (CPU $cpu%)" >&2
      if [ -z "${best[$w$mode]:-}" ] || [ "$(echo "$v > ${best[$w$mode]% *}" | bc -l)" = 1 ]; then best[$w$mode]="$v $cpu"; fi
    done
  done
done
echo "| workers | UDP 64B Mpps (2 flows) | CPU (of 200%) | TCP Gbit/s (2 flows) | CPU (of 200%) |"
echo "|---|---|---|---|---|"
for w in 1 2; do
  printf '| %s | %s | %s%% | %s | %s%% |\n' $w ${best[${w}udp]% *} ${best[${w}udp]#* } ${best[${w}tcp]% *} ${best[${w}tcp]#* }
done
printf 'ratio 2/1: UDP %.2f, TCP %.2f\n' "$(echo "${best[2udp]% *} / ${best[1udp]% *}" | bc -l)" "$(echo "${best[2tcp]% *} / ${best[1tcp]% *}" | bc -l)"
