#!/usr/bin/env bash
# EVPN at scale with real FRR: how long until butterflyd's data plane has V remote VNIs and
# M remote MACs that a Linux kernel VTEP host advertises, what it costs in memory, and
# whether traffic between two VMs that already talk is disturbed meanwhile.
#
# Topology (namespaces): a router; butterflyd's host (AF_PACKET underlay, VTEP 198.19.1.2)
# with its FRR namespace (198.19.11.2, where butterflyd mirrors its EVPN VNIs); a kernel VTEP
# host (198.19.3.2) with FRR; the two FRRs peer iBGP directly (l2vpn evpn, advertise-all-vni).
# VNI 10: a TAP VM on butterflyd (10.10.0.1) and a VM behind the kernel's br10 (10.10.0.2).
#
#  1. butterflyd gets V vhost-user NICs (no guest attached), one per VNI 1000..1000+V-1 (each mirrored: a type-3
#     route); timed until the kernel host's zebra knows all V remote VTEP entries.
#  2. The kernel host creates its V VNIs (bridge + vxlan + a veth port each, `ip -batch`) and
#     M static FDB entries spread over them (`bridge -batch ... master static`; zebra
#     advertises each as a type-2 route); timed until butterflyd's data plane has every
#     VNI's flood list and every MAC: `butterfly status` shows the kernel host as a remote
#     VTEP of all V VNIs, and the agent's debug log has set M remote MACs.
#  3. The kernel host deletes the M entries (type-2 routes withdrawn); timed until
#     butterflyd's data plane has no MAC behind it in those VNIs.
#  Throughout, `ping -i 0.01` from the TAP VM to the kernel VM; the loss is printed.
#  butterflyd's RSS (VmRSS) is read before 1, after 1 and after 2.
#
# Usage (root, Debian's frr): benches/evpn-scale.sh [V] [M]   (default 1000 10000)
# Prints one line per phase and a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
V=${1:-1000}
M=${2:-10000}
LIMIT=${EVPN_SCALE_LIMIT:-600}   # seconds each phase may take
BENCH_PACKAGES="iputils-ping frr"
. benches/common.sh
FRR=/usr/lib/frr
chmod 0755 "$TMP"   # FRR drops its privileges to user frr
R=bfsr$T; H=bfsh$T; F=bfsf$T; K=bfsk$T; VA=bfsa$T; VK=bfsb$T
for n in $R $H $F $K $VA $VK; do
  mkns $n
  ip netns exec $n sysctl -qw net.ipv6.conf.all.disable_ipv6=1
  ip netns exec $n sysctl -qw net.ipv6.conf.default.disable_ipv6=1
done
ip netns exec $R sysctl -qw net.ipv4.ip_forward=1
attach() { # far-namespace net kernel-address(0|1)
  ip -n $R link add p$2 type veth peer name u netns $1
  ip -n $R addr add 198.19.$2.1/24 dev p$2; ip -n $R link set p$2 up; ip -n $1 link set u up
  if [ "$3" = 1 ]; then
    ip -n $1 addr add 198.19.$2.2/24 dev u; ip -n $1 route add default via 198.19.$2.1
  fi
}
attach $H 1 0; attach $K 3 1; attach $F 11 1
frr_start() { # namespace dir router-id peer
  local ns=$1 d=$2 rid=$3 peer=$4
  mkdir -p "$d"; chmod 0777 "$d"
  printf 'hostname zebra\nip nht resolve-via-default\n' >"$d/zebra.conf"
  cat >"$d/bgpd.conf" <<EOF
frr defaults datacenter
hostname bgpd
router bgp 65000
 bgp router-id $rid
 no bgp default ipv4-unicast
 neighbor $peer remote-as 65000
 neighbor $peer timers connect 1
 address-family l2vpn evpn
  neighbor $peer activate
  advertise-all-vni
 exit-address-family
EOF
  for dmn in zebra bgpd; do
    local extra=()
    [ $dmn = zebra ] && extra=(-s 90000000)   # netlink buffer, as Debian's /etc/frr/daemons
    ip netns exec "$ns" $FRR/$dmn -d -f "$d/$dmn.conf" -i "$d/$dmn.pid" -z "$d/zserv.api" \
      --vty_socket "$d/" -P 0 --log file:/dev/null "${extra[@]}"
    for k in $(seq 100); do [ -s "$d/$dmn.pid" ] && [ -e "$d/zserv.api" ] && break; sleep 0.1; done
    PIDS+=("$(cat "$d/$dmn.pid")")
  done
}
vty() { vtysh --vty_socket "$TMP/$1/" -c "$2"; }
# The kernel VTEP: VNI 10 and its VM.
ip -n $K link add br10 type bridge
ip -n $K link add vx10 type vxlan id 10 local 198.19.3.2 dstport 4789 nolearning
ip -n $K link set vx10 master br10 up; ip -n $K link set br10 up
ip -n $K link add kv10 type veth peer name eth0 netns $VK
ip -n $K link set kv10 master br10 up
ip -n $VK addr add 10.10.0.2/24 dev eth0; ip -n $VK link set eth0 mtu 1400 up
frr_start $K "$TMP/k" 198.19.3.2 198.19.11.2
frr_start $F "$TMP/f" 198.19.11.2 198.19.3.2
ip netns exec $H $BD --underlay af-packet:u -i 198.19.1.2 --gateway 198.19.1.1 --underlay-prefix 24 \
  --no-state --metrics off --no-syslog -l debug -e ipc://$TMP/api.sock -s $TMP \
  --bum-mode evpn --evpn-netns $F --evpn-frr-dir "$TMP/f" </dev/null 2>$TMP/bd.log &
BDPID=$!; PIDS+=($BDPID)
A="$CLI -e ipc://$TMP/api.sock"
for k in $(seq 100); do $A -t 500 nic list >/dev/null 2>&1 && break; sleep 0.1; done
$A sg add open >/dev/null
$A sg rule add open --dir in --ip-proto all --cidr 0.0.0.0/0 >/dev/null
$A nic add --id va --type TAP --mac 52:54:00:5c:00:01 --vni 10 --ip 10.10.0.1 --sg open >/dev/null
ip -n $H link set va netns $VA
ip -n $VA addr add 10.10.0.1/24 dev va; ip -n $VA link set va mtu 1400 up
t=$(date +%s.%N)
for k in $(seq 600); do ip netns exec $VA ping -c 1 -W 1 10.10.0.2 >/dev/null 2>&1 && break; sleep 0.1; done
ip netns exec $VA ping -c 1 -W 1 10.10.0.2 >/dev/null || { echo "VNI 10 never converged"; tail $TMP/bd.log; exit 1; }
printf 'converged (BGP up, VNI 10 both ways) in %.1f s\n' "$(echo "$(date +%s.%N) - $t" | bc)"
rss() { awk '/VmRSS/{print $2}' /proc/$BDPID/status; }
RSS0=$(rss)
cpu0=$(cpu_busy)
ip netns exec $VA ping -q -i 0.01 10.10.0.2 >$TMP/ping.log 2>&1 &
PING=$!; PIDS+=($PING)
since() { echo "$(date +%s.%N) - $1" | bc; }
wait_until() { # what command...: polls every 0.5 s up to LIMIT
  local what=$1; shift
  local s=$(date +%s.%N)
  until "$@"; do
    if [ "$(echo "$(since "$s") > $LIMIT" | bc)" = 1 ]; then echo "$what: not reached in $LIMIT s"; return 1; fi
    sleep 0.5
  done
}

# 1. V local VNIs on butterflyd.
t1=$(date +%s.%N)
for j in $(seq 0 $((V - 1))); do
  vni=$((1000 + j))
  echo "nic add --id bn$j --type VHOST_USER_SERVER --mac 52:54:01:00:$(printf %02x:%02x $((j / 256)) $((j % 256))) --vni $vni --ip 10.20.$((j / 250)).$((j % 250 + 1)) --bypass-filtering"
done | while read -r line; do $A $line >/dev/null; done
tapi=$(since "$t1")
# butterflyd's type-3 routes (one per VNI, VNI 10's too) in the kernel host's BGP table.
krem() { [ "$(vty k 'show bgp l2vpn evpn route type multicast' | grep -c '\[3\]:\[0\]:\[32\]:\[198.19.1.2\]')" -ge "$((V + 1))" ]; }
# Where the time goes: butterflyd's agent (mirror devices made), zebra on its side (VNIs
# known), bgpd (routes at the kernel host).
mirrored() { [ "$(ip -n $F -o link show type vxlan 2>/dev/null | grep -c bfvx)" -ge "$((V + 1))" ]; }
fzebra() { [ "$(vty f 'show evpn vni' | grep -c '^[0-9]')" -ge "$((V + 1))" ]; }
tm1=; tz1=
phase1() {
  [ -n "$tm1" ] || { mirrored && tm1=$(since "$t1"); } || true
  [ -n "$tz1" ] || { fzebra && tz1=$(since "$t1"); } || true
  [ -n "$tm1" ] && [ -n "$tz1" ] && krem
}
wait_until "phase 1" phase1
tp1=$(since "$t1")
RSS1=$(rss)
printf 'phase 1: %d VNIs with a NIC on butterflyd: API %.1f s, mirrored by %.1f s, known to its zebra by %.1f s, all %d type-3 routes at the kernel host by %.1f s; RSS %d -> %d KiB\n' \
  "$V" "$tapi" "$tm1" "$tz1" "$V" "$tp1" "$RSS0" "$RSS1"

# 2. The kernel host's V VNIs and M MACs.
: >$TMP/links; : >$TMP/fdb
for j in $(seq 0 $((V - 1))); do
  vni=$((1000 + j))
  cat >>$TMP/links <<EOF
link add br$vni type bridge mcast_snooping 0
link add vx$vni type vxlan id $vni local 198.19.3.2 dstport 4789 nolearning
link add dm$vni type veth peer name dn$vni
link set dn$vni up
link set vx$vni master br$vni up
link set dm$vni master br$vni up
link set br$vni up
EOF
done
for i in $(seq 0 $((M - 1))); do
  vni=$((1000 + i % V))
  echo "fdb add 52:55:00:$(printf %02x:%02x:%02x $((i >> 16)) $(((i >> 8) & 255)) $((i & 255))) dev dm$vni master static" >>$TMP/fdb
done
set_macs() { grep -o '[0-9]* remote MACs set' $TMP/bd.log | awk '{s+=$1} END{print s+0}'; }
MACS0=$(set_macs)
t2=$(date +%s.%N)
ip -n $K -batch $TMP/links
tlinks=$(since "$t2")
bridge -n $K -batch $TMP/fdb
tfdb=$(since "$t2")
vnis_in() { [ "$($A status | grep -c 'remote vteps: 198.19.3.2')" -ge "$((V + 1))" ]; }
macs_in() { [ "$(($(set_macs) - MACS0))" -ge "$M" ]; }
# And where the time goes: zebra on butterflyd's side installs the remote MACs in the mirror
# (`extern_learn` entries on the VXLAN devices), the agent hands them to the data plane.
installed() { [ "$(bridge -n $F fdb show 2>/dev/null | grep -c 'dst 198.19.3.2 self extern_learn')" -ge "$((M + 1))" ]; }
ti=
phase2() {
  [ -n "$ti" ] || { installed && ti=$(since "$t2"); } || true
  [ -n "$ti" ] && vnis_in
}
wait_until "phase 2 VNIs" phase2
tv=$(since "$t2")
wait_until "phase 2 MACs" macs_in
tm=$(since "$t2")
RSS2=$(rss)
cpu2=$(cpu_busy)
fmacs=$(vty f "show evpn mac vni all" | grep -c ' remote ' || true)
printf 'phase 2: kernel host: %d VNIs created in %.1f s, %d FDB entries written by %.1f s; in the mirror (zebra) by %.1f s; butterflyd data plane: all %d VNIs by %.1f s, all %d MACs by %.1f s (FRR on its side: %d remote MACs); RSS %d -> %d KiB\n' \
  "$V" "$tlinks" "$M" "$tfdb" "$ti" "$V" "$tv" "$M" "$tm" "$fmacs" "$RSS1" "$RSS2"

# 3. The kernel host deletes its M FDB entries (withdrawn): until no VNI but 10 has a MAC
# behind it in butterflyd's data plane (its VNIs and so the flood lists stay).
sed 's/^fdb add/fdb del/' $TMP/fdb >$TMP/fdb-del
t3=$(date +%s.%N)
bridge -n $K -batch $TMP/fdb-del
tdel=$(since "$t3")
gone() { [ "$($A status | grep -c 'remote vteps: 198.19.3.2')" -le 1 ]; }
wait_until "phase 3" gone
tg=$(since "$t3")
printf 'phase 3: %d FDB entries deleted on the kernel host in %.1f s; gone from butterflyd'"'"'s data plane by %.1f s; RSS %d KiB\n' \
  "$M" "$tdel" "$tg" "$(rss)"
kill -INT $PING; wait $PING 2>/dev/null || true
loss=$(grep -o '[0-9]* packets transmitted, [0-9]* received, [0-9.]*% packet loss' $TMP/ping.log || true)
echo "ping -i 0.01 10.10.0.1 -> 10.10.0.2 throughout: $loss"
printf 'CPU busy (all cores) during phases 1+2: %.1f s\n' "$(echo "($cpu2 - $cpu0) / $(getconf CLK_TCK)" | bc -l)"
echo "butterflyd warnings/errors: $(grep -c 'WARN\|ERROR' $TMP/bd.log || true)"
grep 'WARN\|ERROR' $TMP/bd.log | head -5 || true
