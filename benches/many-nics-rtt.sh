#!/usr/bin/env bash
# Round trip between two TAP "VMs" of one butterflyd (one VNI, --underlay none) with N idle
# TAP NICs beside them (another VNI): what every wake-up of the data-plane thread costs
# when it has many sources. 400 pings, 5 ms apart; prints mean, median, p99 and max.
# Usage (root): benches/many-nics-rtt.sh [N] [BUTTERFLYD]   (N default 200)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200}
BENCH_PACKAGES="iputils-ping"
. benches/common.sh
[ -n "${2:-}" ] && BD=$2
H=bfmh$T
mkns $H
ip netns exec $H sysctl -qw net.ipv6.conf.default.disable_ipv6=1
ip netns exec $H sysctl -qw net.ipv6.conf.all.disable_ipv6=1
ip netns exec $H $BD --underlay none --no-state --metrics off -l error -e ipc://$TMP/a.sock -s $TMP </dev/null 2>$TMP/log &
PIDS+=($!)
A="$CLI -e ipc://$TMP/a.sock"
for k in $(seq 50); do $A -t 500 nic list >/dev/null 2>&1 && break; sleep 0.1; done
$A sg add open >/dev/null
$A sg rule add open --dir in --ip-proto all --cidr 0.0.0.0/0 >/dev/null
for i in 1 2; do
  $A nic add --id mv$i --type TAP --mac 52:54:00:77:00:0$i --vni 1 --ip 10.77.0.$i --sg open >/dev/null
  mkns bfmv$i$T
  ip -n $H link set mv$i address 52:54:00:77:00:0$i
  ip -n $H link set mv$i netns bfmv$i$T
  ip -n bfmv$i$T addr add 10.77.0.$i/24 dev mv$i; ip -n bfmv$i$T link set mv$i up
done
for j in $(seq "$N"); do
  $A nic add --id idle$j --type TAP --mac 52:54:00:78:$(printf %02x $((j / 256))):$(printf %02x $((j % 256))) --vni 2 >/dev/null
done
sleep 1
ip netns exec bfmv1$T ping -c 3 -W 2 10.77.0.2 >/dev/null
ip netns exec bfmv1$T ping -c 400 -i 0.005 10.77.0.2 | grep -o 'time=[0-9.]*' | cut -d= -f2 | sort -n |
  awk -v n="$N" '{a[NR]=$1; s+=$1} END{printf "%s idle NICs: RTT mean %.3f median %.3f p99 %.3f max %.3f ms\n",
    n, s/NR, (a[int((NR+1)/2)]+a[int(NR/2)+1])/2, a[int(NR*0.99)], a[NR]}'
