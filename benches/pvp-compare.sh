#!/usr/bin/env bash
# The design point side by side: two guests on vhost-user through a switch on one core.
#
# The guests are one dpdk-testpmd with two virtio_user ports (the guest side of vhost-user,
# no VM), forwarding in 5tswap mode with a loop topology: a frame that arrives on a port
# goes back out of the same port with MACs, IPs and ports swapped, so it is a valid frame
# of that guest (anti-spoof accepts it) and the population started with `tx_first`
# circulates between the two guests through the switch forever. The whole population starts
# from port 0 (vm1): testpmd's `tx_first` frames carry the same IP addresses on every port
# (198.18.0.1 -> 198.18.0.2), so those of port 1 would claim vm1's address from vm2. A
# security group rightly drops them (a switch without anti-spoofing does not), and the
# filtered setups then ran with half the frames of the others. The switches:
#   bf-filter   butterflyd, both NICs in one VNI with a security group allowing everything
#               (stateful: conntrack and anti-spoof on every frame)
#   bf-bypass   butterflyd, both NICs --bypass-filtering
#   ovs-ct      OVS-DPDK (Debian's openvswitch-switch-dpdk), netdev bridge: new IP flows
#               ct(commit), +est passes, then NORMAL
#   ovs-normal  OVS-DPDK, NORMAL
#   vhost-io    dpdk-testpmd's own vhost PMD forwarding between the two sockets (io): the
#               ceiling of a vhost-user switch on this core
#   base-filter, base-bypass  the same as bf-*, with the butterflyd binary BUTTERFLYD_BASE
#               (an older build, to compare two versions in the same run)
# VM -> switch -> VXLAN -> DPDK underlay and back (not in the default SETUPS: they build
# butterflyd with the dpdk feature, and add four switches to the rounds). The underlay is a
# DPDK `net_pcap` port whose RX replays (infinite_rx) a pcap file made here: VXLAN frames of a
# remote VTEP (REMOTE_VTEP, its MAC REMOTE_MAC) to the local one (LOCAL_VTEP, the port's MAC),
# VNI 1, each carrying a FRAME-byte UDP frame of a remote VM (MAC2, 198.18.0.2) to vm1, led by
# one ARP reply of the remote VTEP (once per replay of the file; butterflyd learns its
# neighbour from it, OVS is told with tnl/arp/set). TX is dropped by the PMD (net_pcap with no
# TX stream: counted, not written), the same for both switches. The guest is one testpmd with
# one virtio_user port (vm1), 5tswap, loop topology: each decapsulated frame goes back, swapped,
# and the switch encapsulates it to the remote VTEP. The figure is the guest's receive rate
# (frames decapsulated and delivered per second; it sends as many back).
#   bf-vxlan-filter   butterflyd --underlay dpdk:0 on the net_pcap port, vm1 in VNI 1 with the
#                     security group sg-all
#   bf-vxlan-bypass   the same, vm1 --bypass-filtering
#   ovs-vxlan-ct      OVS-DPDK userspace tunnel: br-int (vhost-user port, vxlan port key=1 to
#                     REMOTE_VTEP) with the ovs-ct flows, br-phy with the net_pcap port (type
#                     dpdk), LOCAL_VTEP on br-phy in OVS's namespace, its MAC the port's
#   ovs-vxlan-normal  the same, br-int NORMAL
# The switch runs on SWITCH_CPU (default 0), the guest's forwarding core on GUEST_CPU
# (default 1). Every setup is built first, then measured in interleaved rounds with the
# other switches stopped (SIGSTOP: OVS's PMD spins on the switch core even when idle).
# Figures: frames forwarded per second per direction (mean of the two guests' receive
# rates), median and range over the rounds; CPU of the switch process over the window;
# cycles per packet inside each switch over the window (butterflyd's per-brick counters, OVS's
# PMD stats since the last measurement).
#
# PINGPONG=N: latency instead of rate. The guests are then vhost-pingpong (benches/src/bin,
# built here in release): one process, pinned to GUEST_CPU, that is both guests itself (the
# vhost-user frontend on SOCK1 and SOCK2 of the setup), sends one frame from vm1 to vm2,
# busy-polls vm2 until it arrives, sends the reply back and busy-polls vm1: one frame in
# flight, and every round trip timed (no testpmd, no rate to derive a mean from). Each
# measurement is N round trips (after 1000 of warm-up) with the other switches stopped, as
# above; the table gives, per setup, the median over the rounds of the round trip's median
# (p50) and p99, their ranges, p99.9 and mean, and the frames lost (counted by the tool after
# a 1 s timeout, then sent anew). SECONDS is ignored (N sets the length), the idle CPU check
# is not run, and the VXLAN setups (one guest) are skipped. VHOST_PINGPONG names a prebuilt
# binary. E.g. PINGPONG=200000 SETUPS="bf-bypass ovs-normal bf-filter ovs-ct" benches/pvp-compare.sh 3 3
#
# FLOWS=N: many connections instead of one. The guests are then vhost-flows (benches/src/bin,
# built here in release): one process, pinned to GUEST_CPU, that is both guests itself. vm1
# sends a population of UDP frames to vm2, each guest answers what it receives (5tswap), and
# vm1 gives each frame it sends the source port of one of N connections at random, so the
# firewall (or OVS's conntrack) tracks N connections, each seen both ways, and looks one up
# for every frame (testpmd's modes keep a frame's flow). The table is as with testpmd: frames
# per second per direction, the tool's own count over its window. PER_SECOND is ignored, the
# idle check is not run, and the VXLAN setups (one guest) are skipped. VHOST_FLOWS names a
# prebuilt binary. E.g. FLOWS=60000 SETUPS="bf-filter ovs-ct" benches/pvp-compare.sh 5 3
#
# The cross-core probe. Guest and switch hand ring and buffer lines to each other on every
# frame, so the rate follows what one cache line costs between SWITCH_CPU and GUEST_CPU. On
# a virtual machine the host decides that by where it runs the two vCPUs, and it may change
# it for seconds at a time in the middle of a run (measured on the 2-vCPU development
# machine: 51-66 ns, then 330-340 ns for 18 s, then back; both switches slow down then).
# So every rate measurement is framed by two 200-ms runs of cross-core-probe (benches/src/
# bin, built here; CROSS_CORE_PROBE names a prebuilt one) with every switch stopped, and
# the table shows their range. PROBE_MAX_NS=N redoes (twice at most) a measurement framed
# by a round trip above N ns, so that interleaved setups are compared on the same placement.
# PROBE_CPUS=0 leaves the probe out.
#
# Usage (root): [FRAME=64|1518] [INFLIGHT=8] [BF_ARGS=...] benches/pvp-compare.sh [SECONDS [ROUNDS]]
#   FRAME    frame size including the 4-byte FCS, as in RFC 2544 (default 64)
#   INFLIGHT bursts of BURST frames in flight per guest port (default 8 of 32): port 0
#            sends 2 x INFLIGHT bursts, then both ports forward
#   BURST    the guest's burst size (default 32). BURST=1 INFLIGHT=1: two frames circulate,
#            and the table adds their mean round trip (2 / rate per direction)
#   SETUPS   which setups to run (default "bf-filter bf-bypass ovs-ct ovs-normal vhost-io"; also
#            base-filter base-bypass, and bf-vxlan-filter bf-vxlan-bypass ovs-vxlan-ct
#            ovs-vxlan-normal, e.g. SETUPS="bf-vxlan-filter ovs-vxlan-ct bf-vxlan-bypass
#            ovs-vxlan-normal" benches/pvp-compare.sh 3 3)
#   VXLAN_PCAP_FRAMES  frames in the replayed pcap file (default 1024: the ARP reply, then
#            1023 VXLAN frames); LOCAL_VTEP, REMOTE_VTEP, REMOTE_MAC (198.18.1.1, 198.18.1.2,
#            02:00:00:00:01:02)
#   BF_ARGS  extra butterflyd arguments (e.g. --busy-poll)
#   PINGPONG round trips per measurement: latency with vhost-pingpong (see above)
#   FLOWS    connections per measurement: many flows with vhost-flows (see above)
#   PER_SECOND=1  the guest reports its rate every second: each measurement prints that
#            series, and its Mpps is the series' mean (shows how steady a switch is); the
#            end adds each setup's mean per level of the machine, every second classed fast
#            or slow at LEVEL_FILTERED Mpps (default 2.3) for *-filter and *-ct setups and
#            LEVEL_UNFILTERED (3.3) for the others
#   WARMUP   seconds each setup forwards before round 1, not counted (default 3; 0: none).
#            A freshly built daemon's first windows were slow in every brick in three of
#            seven runs (docs/performance.md, "Session 13")
#   GUEST_MBUFS   mbufs in the guest's pool (default 32768)
#   SWITCH_CPU, GUEST_CPU, GUEST_MAIN_CPU  (default 0, 1, and the switch's CPU: testpmd's main
#            lcore only waits for commands). The switches' other threads (control, vhost-user
#            messages) may also run on GUEST_MAIN_CPU, the housekeeping CPU: OVS's main and
#            vhost threads starve behind a PMD that owns their only CPU.
#   DPDK_EXTRA   extra EAL arguments for every DPDK process (e.g. -d PLUGIN_DIR)
#   OVS_VSWITCHD, OVS_SCHEMA  where OVS-DPDK lives (Debian's paths by default)
# Each OVS takes 256 MiB of 2 MiB hugepages, 512 with a DPDK port (reserved if need be; OVS
# is skipped without).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}
ROUNDS=${2:-3}
FRAME=${FRAME:-64}
INFLIGHT=${INFLIGHT:-8}
BURST=${BURST:-32}
SWITCH_CPU=${SWITCH_CPU:-0}
GUEST_CPU=${GUEST_CPU:-1}
GUEST_MAIN_CPU=${GUEST_MAIN_CPU:-$SWITCH_CPU}
DPDK_EXTRA=${DPDK_EXTRA:-}
SETUPS=${SETUPS:-"bf-filter bf-bypass ovs-ct ovs-normal vhost-io"}
PINGPONG=${PINGPONG:-}
FLOWS=${FLOWS:-}
PER_SECOND=${PER_SECOND:-}
WARMUP=${WARMUP:-3}
LEVEL_FILTERED=${LEVEL_FILTERED:-2.3}
LEVEL_UNFILTERED=${LEVEL_UNFILTERED:-3.3}
PROBE_MAX_NS=${PROBE_MAX_NS:-}
GUEST_MBUFS=${GUEST_MBUFS:-32768}
BENCH_PACKAGES="dpdk openvswitch-switch-dpdk"
# butterflyd's VXLAN setups need its DPDK underlay.
case " $SETUPS " in *" bf-vxlan-"*) BENCH_FEATURES="${BENCH_FEATURES:+$BENCH_FEATURES,}butterflyd/dpdk" ;; esac
. benches/common.sh
if [ -n "$PINGPONG" ]; then
  [ -n "${VHOST_PINGPONG:-}" ] || cargo build -q --release -p butterfly-benches --bin vhost-pingpong
  PP=${VHOST_PINGPONG:-${CARGO_TARGET_DIR:-target}/release/vhost-pingpong}
fi
if [ -n "$FLOWS" ]; then
  [ -n "${VHOST_FLOWS:-}" ] || cargo build -q --release -p butterfly-benches --bin vhost-flows
  VF=${VHOST_FLOWS:-${CARGO_TARGET_DIR:-target}/release/vhost-flows}
  PER_SECOND=""
fi
[ -n "${CROSS_CORE_PROBE:-}" ] || cargo build -q --release -p butterfly-benches --bin cross-core-probe
PROBE=${CROSS_CORE_PROBE:-${CARGO_TARGET_DIR:-target}/release/cross-core-probe}
OVS_VSWITCHD=${OVS_VSWITCHD:-/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk}
OVS_SCHEMA=${OVS_SCHEMA:-/usr/share/openvswitch/vswitch.ovsschema}
MAC1=02:00:00:00:00:01
MAC2=02:00:00:00:00:02
LOCAL_VTEP=${LOCAL_VTEP:-198.18.1.1}
REMOTE_VTEP=${REMOTE_VTEP:-198.18.1.2}
REMOTE_MAC=${REMOTE_MAC:-02:00:00:00:01:02}
# The MAC of a process's first net_pcap port (DPDK's "pcap" MAC, 02:70:63:61:70:<index>):
# butterflyd's VTEP sends from it, OVS's br-phy is given it.
LOCAL_MAC=02:70:63:61:70:00
VXLAN_PCAP_FRAMES=${VXLAN_PCAP_FRAMES:-1024}

# OVS's DPDK takes its memory from 2 MiB hugepages (256 MiB per OVS); give the old count back
# at the end.
HP=/proc/sys/vm/nr_hugepages
HP_OLD=$(cat $HP)
# An OVS with a DPDK port (the VXLAN setups) grows past its 256 MiB: give it 512.
n_ovs=$(printf '%s\n' $SETUPS | grep -c '^ovs-' || true)
n_ovs_vx=$(printf '%s\n' $SETUPS | grep -c '^ovs-vxlan-' || true)
# Each OVS preallocates 256 MiB (dpdk-socket-mem) and fills it with its mbuf pool; DPDK's vhost
# library then allocates per queue as guests connect (SET_VRING_NUM), and with no free page
# left refused the second guest now and then ("failed to allocate memory for batching
# copy"): 128 MiB more per OVS for that.
HP_NEED=$((192 * n_ovs + 128 * n_ovs_vx))
[ $HP_NEED -ge 256 ] || HP_NEED=256
[ "$HP_OLD" -ge $HP_NEED ] || [ -n "${NO_HUGEPAGES:-}" ] || echo $HP_NEED >$HP 2>/dev/null || true
DPDK_RUNDIRS=()
trap 'cleanup; echo "$HP_OLD" >$HP 2>/dev/null || true; rm -rf "${DPDK_RUNDIRS[@]}"' EXIT
# OVS runs its EAL --in-memory, which DPDK refuses without hugepages (--no-huge implies
# legacy memory): with none to be had, the OVS setups are skipped with the reason.
OVS_MEM=(other_config:dpdk-socket-mem=256); OVS_EAL="--no-pci"

# Per setup: the two vhost-user socket paths, the switch's pids (stopped while others run).
declare -A SOCK1 SOCK2 SWPIDS METRICS BFVX_NIC
NBF=0

start_butterflyd() { # name binary extra-nic-args...
  local name=$1 bin=$2; shift 2
  local d=$TMP/$name; mkdir -p "$d/sock"
  NBF=$((NBF + 1)); METRICS[$name]=127.0.0.1:$((19900 + NBF))
  taskset -c "$SWITCH_CPU,$GUEST_MAIN_CPU" "$bin" --no-state --underlay none -u "$SWITCH_CPU" -e "ipc://$d/api" -s "$d/sock" \
    --metrics "${METRICS[$name]}" ${BF_ARGS:-} >"$d/log" 2>&1 &
  local pid=$!; PIDS+=("$pid")
  local cli=("$CLI" -e "ipc://$d/api") i
  for i in $(seq 50); do "${cli[@]}" nic list >/dev/null 2>&1 && break; sleep 0.1; done
  "${cli[@]}" sg add sg-all >/dev/null
  "${cli[@]}" sg rule add sg-all --dir in --ip-proto all --cidr 0.0.0.0/0 >/dev/null
  "${cli[@]}" nic add --id vm1 --mac $MAC1 --vni 1 --ip 198.18.0.1 "$@" >/dev/null
  "${cli[@]}" nic add --id vm2 --mac $MAC2 --vni 1 --ip 198.18.0.2 "$@" >/dev/null
  SOCK1[$name]=$d/sock/qemu-vhost-vm1; SOCK2[$name]=$d/sock/qemu-vhost-vm2; SWPIDS[$name]=$pid
}

# The underlay's pcap file (see the header): the remote VTEP's ARP reply to the local VTEP,
# then VXLAN frames, each a FRAME-byte UDP frame of the remote VM (MAC2, 198.18.0.2, port 9)
# to vm1 (port 9). Checksums as a real peer sends them: inner IPv4 and UDP, outer IPv4 right,
# outer UDP 0 (Linux's and OVS's default for VXLAN over IPv4); one flow, so one entropy port.
make_vxlan_pcap() { # file
  python3 - "$1" "$FRAME" "$VXLAN_PCAP_FRAMES" $LOCAL_MAC $REMOTE_MAC $LOCAL_VTEP $REMOTE_VTEP <<'EOF'
import struct, sys
out, frame, n, lmac, rmac, lip, rip = sys.argv[1:8]
frame, n = int(frame), int(n)
mac = lambda s: bytes(int(x, 16) for x in s.split(':'))
ip4 = lambda s: bytes(int(x) for x in s.split('.'))
def csum(b):
    b += b'\0' * (len(b) % 2)
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
def ipv4(src, dst, payload):
    h = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(payload), 1, 0x4000, 64, 17, 0, ip4(src), ip4(dst))
    return h[:10] + struct.pack('!H', csum(h)) + h[12:] + payload
def udp(src, dst, sport, dport, data, with_csum):
    u = struct.pack('!HHHH', sport, dport, 8 + len(data), 0) + data
    if with_csum:
        c = csum(ip4(src) + ip4(dst) + struct.pack('!BBH', 0, 17, len(u)) + u) or 0xffff
        u = u[:6] + struct.pack('!H', c) + u[8:]
    return u
vm, peer = '198.18.0.1', '198.18.0.2'
pad = max(frame - 4 - 14 - 20 - 8, 0)
inner = mac('02:00:00:00:00:01') + mac('02:00:00:00:00:02') + b'\x08\x00' + \
    ipv4(peer, vm, udp(peer, vm, 9, 9, bytes(pad), True))
vxlan = struct.pack('!II', 0x08000000, 1 << 8) + inner
outer = mac(lmac) + mac(rmac) + b'\x08\x00' + ipv4(rip, lip, udp(rip, lip, 49153, 4789, vxlan, False))
arp = mac(lmac) + mac(rmac) + b'\x08\x06' + struct.pack('!HHBBH', 1, 0x0800, 6, 4, 2) + \
    mac(rmac) + ip4(rip) + mac(lmac) + ip4(lip)
arp += bytes(60 - len(arp))
with open(out, 'wb') as f:
    f.write(struct.pack('<IHHiIII', 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
    for i, p in enumerate([arp] + [outer] * (n - 1)):
        f.write(struct.pack('<IIII', 0, i, len(p), len(p)) + p)
EOF
}

# The underlay port's EAL device: RX replays the pcap file for ever, TX (no TX stream given)
# is dropped and counted by the PMD.
vxlan_vdev() { echo "net_pcap0,rx_pcap=$TMP/vxlan.pcap,infinite_rx=1"; }

start_bf_vxlan() { # name extra-nic-args...
  local name=$1; shift
  local d=$TMP/$name; mkdir -p "$d/sock"
  NBF=$((NBF + 1)); METRICS[$name]=127.0.0.1:$((19900 + NBF))
  # The EAL's main lcore (the thread that starts it) on the housekeeping CPU; the graph thread
  # on the switch CPU (-u) registers itself with the EAL when its DPDK brick first runs.
  taskset -c "$SWITCH_CPU,$GUEST_MAIN_CPU" "$BD" --no-state -u "$SWITCH_CPU" -e "ipc://$d/api" -s "$d/sock" \
    --metrics "${METRICS[$name]}" --ip "$LOCAL_VTEP" --underlay-prefix 24 --underlay dpdk:0 \
    --dpdk-args "--no-pci --no-huge -m 256 --file-prefix bf$T$name -l $GUEST_MAIN_CPU $DPDK_EXTRA --vdev $(vxlan_vdev)" \
    ${BF_ARGS:-} >"$d/log" 2>&1 &
  local pid=$!; PIDS+=("$pid"); DPDK_RUNDIRS+=("/var/run/dpdk/bf$T$name")
  local cli=("$CLI" -e "ipc://$d/api") i
  for i in $(seq 100); do "${cli[@]}" nic list >/dev/null 2>&1 && break; sleep 0.1; done
  kill -0 $pid 2>/dev/null || { echo "$name: butterflyd did not start:" >&2; grep -E 'ERROR|EAL:' "$d/log" | tail -5 >&2; return 1; }
  "${cli[@]}" sg add sg-all >/dev/null
  "${cli[@]}" sg rule add sg-all --dir in --ip-proto all --cidr 0.0.0.0/0 >/dev/null
  "${cli[@]}" nic add --id vm1 --mac $MAC1 --vni 1 --ip 198.18.0.1 "$@" >/dev/null
  SOCK1[$name]=$d/sock/qemu-vhost-vm1; SOCK2[$name]=""; SWPIDS[$name]=$pid
}

start_ovs() { # name normal|ct|vxlan-normal|vxlan-ct; returns 1 (and says why) when OVS cannot run here
  # Each instance runs in a network namespace of its own: the netdev datapath and a bridge's
  # local port are TAP devices with fixed names ("ovs-netdev"), which two OVS processes in one
  # namespace would both claim. The vhost-user and control sockets are files, unaffected.
  local name=$1 d=$TMP/$1 br=br-${2#vxlan-}; mkdir -p "$d"
  export OVS_RUNDIR=$d OVS_DBDIR=$d OVS_LOGDIR=$d
  ovsdb-tool create "$d/conf.db" "$OVS_SCHEMA" || return 1
  ovsdb-server "$d/conf.db" --remote="punix:$d/db.sock" --pidfile="$d/ovsdb-server.pid" --detach \
    --log-file="$d/ovsdb.log" -vconsole:off 2>>"$d/ovsdb.log" || return 1
  PIDS+=("$(cat "$d/ovsdb-server.pid")")
  local vs=(ovs-vsctl --timeout=30 --db="unix:$d/db.sock") mem_limit=()
  # OVS sizes a DPDK port's mbuf pool for a big NIC (262,144 mbufs) and grows its memory to
  # fit, which would leave none to the next OVS: a limit makes it halve the pool until it fits.
  [ "${2#vxlan-}" = "$2" ] || mem_limit=(other_config:dpdk-socket-limit=512)
  "${vs[@]}" --no-wait init
  "${vs[@]}" --no-wait set Open_vSwitch . other_config:dpdk-init=true \
    "other_config:dpdk-extra=$OVS_EAL $DPDK_EXTRA --file-prefix ovs$T$name" "${OVS_MEM[@]}" "${mem_limit[@]}" \
    other_config:pmd-cpu-mask=$(printf '0x%x' $((1 << SWITCH_CPU))) \
    other_config:dpdk-lcore-mask=$(printf '0x%x' $((1 << GUEST_MAIN_CPU)))
  if ! unshare --net taskset -c "$SWITCH_CPU,$GUEST_MAIN_CPU" $OVS_VSWITCHD "unix:$d/db.sock" --pidfile="$d/ovs-vswitchd.pid" --detach \
    --log-file="$d/vs.log" -vconsole:off 2>>"$d/vs.log"; then
    echo "$name: ovs-vswitchd did not start:" >&2
    grep -E 'EAL ARGS|ERR|EMER' "$d/vs.log" | tail -5 >&2
    unset OVS_RUNDIR OVS_DBDIR OVS_LOGDIR
    return 1
  fi
  local vspid; vspid=$(cat "$d/ovs-vswitchd.pid"); PIDS+=("$vspid")
  local ctl=$d/ovs-vswitchd-dpdk.$vspid.ctl
  if [ "${2#vxlan-}" != "$2" ]; then
    # The userspace tunnel: br-int holds the guest and the VXLAN port; br-phy the DPDK port,
    # with the local VTEP's address (in OVS's namespace) and the MAC the underlay sends to.
    br=br-int
    "${vs[@]}" add-br br-int -- set bridge br-int datapath_type=netdev &&
      "${vs[@]}" add-port br-int vh1 -- set Interface vh1 type=dpdkvhostuser &&
      "${vs[@]}" add-port br-int vx1 -- set Interface vx1 type=vxlan \
        options:remote_ip=$REMOTE_VTEP options:key=1 &&
      "${vs[@]}" add-br br-phy -- set bridge br-phy datapath_type=netdev other-config:hwaddr=$LOCAL_MAC &&
      "${vs[@]}" add-port br-phy dpdk0 -- set Interface dpdk0 type=dpdk "options:dpdk-devargs=$(vxlan_vdev)" &&
      nsenter --net=/proc/$vspid/ns/net ip addr add $LOCAL_VTEP/24 dev br-phy &&
      nsenter --net=/proc/$vspid/ns/net ip link set br-phy up &&
      { ovs-appctl -t "$ctl" ovs/route/add $REMOTE_VTEP/32 br-phy >/dev/null 2>&1 ||
        ovs-appctl -t "$ctl" ovs/route/show | grep -q "${LOCAL_VTEP%.*}.0/24"; } &&
      ovs-appctl -t "$ctl" tnl/arp/set br-phy $REMOTE_VTEP $REMOTE_MAC >/dev/null || {
      echo "$name: OVS could not set up its tunnel:" >&2
      grep -E 'ERR|EMER' "$d/vs.log" | tail -5 >&2
      unset OVS_RUNDIR OVS_DBDIR OVS_LOGDIR
      return 1
    }
    SOCK2[$name]=""
  else
    "${vs[@]}" add-br $br -- set bridge $br datapath_type=netdev &&
      "${vs[@]}" add-port $br vh1 -- set Interface vh1 type=dpdkvhostuser &&
      "${vs[@]}" add-port $br vh2 -- set Interface vh2 type=dpdkvhostuser || {
      echo "$name: OVS could not set up its bridge:" >&2
      grep -E 'ERR|EMER' "$d/vs.log" | tail -5 >&2
      unset OVS_RUNDIR OVS_DBDIR OVS_LOGDIR
      return 1
    }
    SOCK2[$name]=$d/vh2
  fi
  if [ "${2#vxlan-}" = ct ]; then
    ovs-ofctl del-flows $br
    ovs-ofctl add-flow $br "table=0,priority=100,ip,ct_state=-trk,actions=ct(table=1)"
    ovs-ofctl add-flow $br "table=0,priority=1,actions=NORMAL"
    ovs-ofctl add-flow $br "table=1,priority=100,ip,ct_state=+trk+new,actions=ct(commit),NORMAL"
    ovs-ofctl add-flow $br "table=1,priority=100,ip,ct_state=+trk+est,actions=NORMAL"
    ovs-ofctl add-flow $br "table=1,priority=1,actions=drop"
  fi
  unset OVS_RUNDIR OVS_DBDIR OVS_LOGDIR
  SOCK1[$name]=$d/vh1; SWPIDS[$name]=$vspid
}

start_vhost_io() { # name
  local name=$1 d=$TMP/$1; mkdir -p "$d"
  # Forwarding lcore on the switch CPU, the main one (it only sleeps) on the housekeeping CPU.
  dpdk-testpmd --lcores "0@$GUEST_MAIN_CPU,1@$SWITCH_CPU" --no-pci --no-huge -m 512 $DPDK_EXTRA --file-prefix "vio$T" \
    --vdev "net_vhost0,iface=$d/vh1" --vdev "net_vhost1,iface=$d/vh2" -- \
    --forward-mode=io --port-topology=paired --nb-cores=1 --txd=1024 --rxd=1024 --total-num-mbufs=16384 \
    --stats-period 3600 </dev/null >"$d/log" 2>&1 &
  local pid=$!; PIDS+=("$pid")
  local i; for i in $(seq 50); do [ -S "$d/vh2" ] && break; sleep 0.1; done
  SOCK1[$name]=$d/vh1; SOCK2[$name]=$d/vh2; SWPIDS[$name]=$pid
}

# Jiffies the host took from this VM's CPU $1 (steal time, /proc/stat): the one sign of the
# host's other work that a guest without hardware counters can read.
steal() { awk -v c="cpu$1" '$1 == c {print $9}' /proc/stat; }

jiffies() { # pids... : utime+stime of these processes (all threads)
  local t=0 p
  for p in "$@"; do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done
  echo $t
}

# Lets setup $1's switch run and stops all the others.
switch_only() {
  local name=$1 other
  for other in "${!SWPIDS[@]}"; do
    # (A butterflyd of a VXLAN setup may have been stopped for good: see measure.)
    if [ "$other" = "$name" ]; then kill -CONT ${SWPIDS[$other]}; else kill -STOP ${SWPIDS[$other]} 2>/dev/null || true; fi
  done
}

# testpmd as run_guests' guests (its locals: mode, log, warm, nports, ports): 5tswap, the
# population sent by port 0 with tx_first, the port statistics at the window's ends.
start_testpmd_guests() {
  (
    sleep "$warm"
    echo "set txpkts $((FRAME - 4))"
    if [ "$mode" = idle ] || [ $nports = 1 ]; then
      # (The underlay's frames arrive by themselves: the guest only forwards.)
      echo "start"
    else
      # Port 0 alone sends the population (its frames are vm1's own); what reaches port 1
      # meanwhile waits in its RX ring (--no-flush-rx) until both ports forward.
      echo "set portlist 0"
      echo "start tx_first $((2 * INFLIGHT))"
      sleep 0.5
      echo "stop"
      echo "set portlist 0,1"
      echo "start"
    fi
    sleep 2
    echo "show port stats all"
    if [ -n "$PER_SECOND" ]; then
      for _ in $(seq "$SECS"); do sleep 1; echo "show port stats all"; done
    else
      sleep "$SECS"
      echo "show port stats all"
    fi
    echo "stop"
    sleep 1
    echo "quit"
  ) | taskset -c "$GUEST_MAIN_CPU,$GUEST_CPU" dpdk-testpmd -l "$GUEST_MAIN_CPU,$GUEST_CPU" \
    --main-lcore "$GUEST_MAIN_CPU" --no-pci --no-huge -m 1024 $DPDK_EXTRA --file-prefix "g$T" \
    "${ports[@]}" -- \
    -i --forward-mode=5tswap --port-topology=loop --eth-peer=0,$MAC2 --eth-peer=1,$MAC1 \
    --no-flush-rx --nb-cores=1 --txd=1024 --rxd=1024 --burst="$BURST" --total-num-mbufs="$GUEST_MBUFS" >"$log" 2>&1 &
}

# Sets pps and txpps from testpmd's log in run_guests (its locals: name, mode, log, nports):
# the "show port stats all" after the first, Rx-pps and Tx-pps of each port over the window
# (with PER_SECOND, over each second: the mean of those is the window's).
testpmd_rates() {
  local shows=1; [ -z "$PER_SECOND" ] || shows=$SECS
  pps=$(grep -E '^\s*Rx-pps:' "$log" | tail -$((shows * nports)) | awk -v n=$((shows * nports)) '{s+=$2} END {printf "%.3f", s/n/1e6}')
  txpps=$(grep -E '^\s*Tx-pps:' "$log" | tail -$((shows * nports)) | awk -v n=$((shows * nports)) '{s+=$2} END {printf "%.3f", s/n/1e6}')
  if [ -n "$PER_SECOND" ] && [ "$mode" != idle ]; then
    local series; series=$(grep -E '^\s*Rx-pps:' "$log" | tail -$((shows * nports)) |
      awk -v n=$nports '{s+=$2} NR % n == 0 {printf "%.2f ", s/n/1e6; s=0}')
    echo "$series" >>"$TMP/persec.$name"
    echo "$name per second, Mpps: $series" >&2
  fi
}

# Runs the guests against setup $1 for a window of SECS seconds after a warm-up, with the
# other switches stopped: with traffic (tx_first) or, with $2 = idle, connected and polling
# but sending nothing. Sets pps (the guests' mean receive rate over the window, Mpps) and
# cpu (the switch process's CPU over the window, %).
run_guests() {
  local name=$1 mode=${2:-traffic} d=$TMP/$1
  switch_only "$name"
  local log=$d/guest.log warm=4 nports=2
  # Two guest ports, or one (vm1) where the other end is the VXLAN underlay.
  local ports=(--vdev "virtio_user0,path=${SOCK1[$name]},mac=$MAC1,queue_size=1024")
  if [ -n "${SOCK2[$name]}" ]; then
    ports+=(--vdev "virtio_user1,path=${SOCK2[$name]},mac=$MAC2,queue_size=1024")
  else
    nports=1
  fi
  if [ -n "$FLOWS" ] && [ "$mode" != idle ]; then
    # vhost-flows: its window starts about when ours does (after it connects and warms up).
    timeout 600 "$VF" --sock1 "${SOCK1[$name]}" --sock2 "${SOCK2[$name]}" --mac1 $MAC1 --mac2 $MAC2 \
      --flows "$FLOWS" --frame "$FRAME" --cpu "$GUEST_CPU" --warmup $((warm + 2)) --seconds "$SECS" >"$log" 2>&1 &
  else
    start_testpmd_guests
  fi
  local g=$!
  sleep $((warm + 2))
  local j0 t0 j1 t1 sw0 gu0 sw1 gu1; j0=$(jiffies ${SWPIDS[$name]}); t0=$(date +%s.%N)
  sw0=$(steal "$SWITCH_CPU"); gu0=$(steal "$GUEST_CPU")
  [ -z "${METRICS[$name]:-}" ] || metrics "$name" >"$d/metrics.0"
  case $name in ovs-vxlan-*) ovs-appctl -t "$d/ovs-vswitchd-dpdk.${SWPIDS[$name]}.ctl" dpif-netdev/pmd-stats-clear >/dev/null ;; esac
  sleep "$SECS"
  j1=$(jiffies ${SWPIDS[$name]}); t1=$(date +%s.%N)
  sw1=$(steal "$SWITCH_CPU"); gu1=$(steal "$GUEST_CPU")
  [ -z "${METRICS[$name]:-}" ] || metrics "$name" >"$d/metrics.1"
  case $name in ovs-vxlan-*) ovs-appctl -t "$d/ovs-vswitchd-dpdk.${SWPIDS[$name]}.ctl" dpif-netdev/pmd-stats-show >"$d/pmd-stats" ;; esac
  wait $g || true
  if [ -n "$FLOWS" ] && [ "$mode" != idle ]; then
    pps=$(sed -n 's/.*per_direction_pps=\([0-9]*\).*/\1/p' "$log" | awk '{printf "%.3f", $1 / 1e6} END {if (!NR) printf "0.000"}')
    txpps=$pps
    echo "$name: $(grep -h '^flows=\|vhost-flows:' "$log" | tail -2 | paste -sd' ')" >&2
  else
    testpmd_rates
  fi
  cpu=$(awk -v j="$((j1 - j0))" -v hz="$(getconf CLK_TCK)" -v t0="$t0" -v t1="$t1" 'BEGIN {printf "%.1f", 100 * j / (hz * (t1 - t0))}')
  stolen=$(awk -v a="$((sw1 - sw0))" -v b="$((gu1 - gu0))" \
    -v hz="$(getconf CLK_TCK)" -v t0="$t0" -v t1="$t1" 'BEGIN {printf "%.1f/%.1f", 100 * a / (hz * (t1 - t0)), 100 * b / (hz * (t1 - t0))}')
}

# The cross-core round trip between SWITCH_CPU and GUEST_CPU in ns ("-" if it cannot be
# taken), with every switch stopped (the next run_guests lets its own switch run again).
probe() {
  local p
  [ "${PROBE_CPUS:-1}" = 1 ] || { echo -; return; }
  for p in "${SWPIDS[@]}"; do kill -STOP "$p" 2>/dev/null || true; done
  "$PROBE" "$SWITCH_CPU" "$GUEST_CPU" 200 2>/dev/null | sed -n 's/^rtt_ns=//p' | grep . || echo -
}

# True when the last measurement of setup $1 was framed by round trips under PROBE_MAX_NS.
near_enough() {
  [ -n "$PROBE_MAX_NS" ] || return 0
  # (A probe not taken, "-", does not count against it.)
  tail -1 "$TMP/res.$1" | awk -v m="$PROBE_MAX_NS" '{exit !(($4 == "-" || $4 <= m) && ($5 == "-" || $5 <= m))}'
}

# True when the last measurement of setup $1 forwarded frames. OVS-DPDK now and then refuses
# a guest's vhost-user queue at its start ("failed to allocate memory for vq internal data"),
# and testpmd's virtio_user does not connect again: that window reads 0.000, a failed start
# rather than a rate, and is redone (twice at most) with a fresh guest.
forwarded() { awk 'END {exit !($1 > 0)}' "$TMP/res.$1"; }

# Takes setup $1's last measurement out of the results (and of the per-second series, so
# that the per-level means count the same windows as the table), and counts it as redone.
discard_last() {
  sed -i '$d' "$TMP/res.$1"
  [ ! -e "$TMP/persec.$1" ] || sed -i '$d' "$TMP/persec.$1"
  echo "$1" >>"$TMP/redone"
}

# Each brick's cycles per packet over the window, "brick=N,...": the differences of its raw
# counters between the snapshots $1 (before) and $2 (after). A daemon's lifetime average
# would carry a slow start into every later round. Empty for a build without the counters.
window_cycles() {
  awk '/^butterfly_brick_(cycles|cycle_packets)_total\{/ {
      split($0, q, "\""); k = ($0 ~ /^butterfly_brick_cycles_total/) ? "c" : "p"
      v[FILENAME == ARGV[1] ? 0 : 1, k, q[2]] = $NF
      if (!(q[2] in seen)) { seen[q[2]]; order[++n] = q[2] } }
    END { for (i = 1; i <= n; i++) { b = order[i]; dp = v[1, "p", b] - v[0, "p", b]
      if (dp > 0) printf "%s%s=%d", (o++ ? "," : ""), b, (v[1, "c", b] - v[0, "c", b]) / dp } }' "$1" "$2"
}

metrics() { # setup: butterflyd's /metrics
  python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())' \
    "http://${METRICS[$1]}/metrics"
}

# One measurement of setup $1 with traffic: appends "Mpps-per-direction switch-cpu-%
# cycles/packet cross-core-ns-before after steal-%-switch/guest" to $TMP/res.$1.
measure() {
  local name=$1 d=$TMP/$1 pps cpu stolen
  # A switch with a VXLAN underlay is never idle: a SIGSTOP lands inside a brick, and the
  # seconds it stays stopped count in that brick's cycles (the underlay's poll is timed on
  # every call). So butterflyd is started afresh for each measurement and ended after it:
  # its counters cover that one process. (OVS's PMD statistics are taken over the window.)
  case $name in
    bf-vxlan-*)
      kill "${SWPIDS[$name]}" 2>/dev/null || true; kill -CONT "${SWPIDS[$name]}" 2>/dev/null || true
      while kill -0 "${SWPIDS[$name]}" 2>/dev/null; do sleep 0.1; done
      # (Probed before it starts: a stop would land inside its never-idle underlay poll.)
      local before; before=$(probe)
      start_bf_vxlan "$name" ${BFVX_NIC[$name]} ;;
    *)
      # (Not before a setup's first measurement: OVS stopped between its set-up and its
      # first guest forwarded nothing in that round, three times in four.)
      local before=-; [ ! -e "$TMP/res.$name" ] || before=$(probe) ;;
  esac
  run_guests "$name"
  local cyc=-
  case $name in
    bf-* | base-*)
      metrics "$name" >"$d/metrics"
      cyc=$(window_cycles "$d/metrics.0" "$d/metrics.1")
      # (A build without the raw counters: its lifetime averages, marked.)
      [ -n "$cyc" ] || cyc=life:$(sed -n 's/^butterfly_brick_cycles_per_packet{brick="\([^"]*\)".* \([0-9]*\)[.0-9]*$/\1=\2/p' "$d/metrics" | paste -sd, -)
      local drops='s/^butterfly_brick_drops_total{brick="\([^"]*\)",kind="[^"]*",reason="\([^"]*\)".* \([1-9][0-9]*\)$/\1: \2 \3/p'
      case $name in
        bf-vxlan-*)
          # The underlay never stops: drops over the window (the ARP reply of each replay of
          # the pcap file is the VTEP's one expected "control" drop).
          awk 'NR == FNR {a[$1] = $2; next} $2 > a[$1] {print $1 ": " $2 - a[$1]}' FS='|' \
            <(sed -n "$drops" "$d/metrics.0" | sed 's/ \([0-9]*\)$/|\1/') <(sed -n "$drops" "$d/metrics.1" | sed 's/ \([0-9]*\)$/|\1/') |
            sed "s/^/$name drops in the window: /" >&2 || true
          echo "$name: guest Tx $txpps Mpps; underlay: $("$CLI" -e "ipc://$d/api" status | grep -o 'dpdk port[^}]*' | head -1)" >&2 ;;
        *)
          # Mean burst per call of each vhost-user NIC over the window (frames taken from the
          # guest and given to it, over polls that found frames and RX bursts).
          echo "$name window bursts: $(awk '
            /^butterfly_brick_packets_total\{brick="vm-/ { split($1, a, "\""); p[FILENAME, a[2]] += $2; n[a[2]] = 1 }
            /^butterfly_brick_calls_total\{brick="vm-/ { split($1, a, "\""); c[FILENAME, a[2]] = $2 }
            END { for (b in n) { dc = c[f1, b] - c[f0, b]; if (dc > 0) printf "%s=%.1f ", b, (p[f1, b] - p[f0, b]) / dc } }
          ' f0="$d/metrics.0" f1="$d/metrics.1" "$d/metrics.0" "$d/metrics.1")" >&2
          # A frame dropped on the way is a frame less in flight: say so (the VTEP's own IGMP
          # and ARP, with no underlay, are the only expected drops).
          sed -n "$drops" "$d/metrics" | sed 's/ \([0-9]*\)$/: \1/' |
            grep -v '^vtep: ' | sed "s/^/$name drops: /" >&2 || true ;;
      esac ;;
    ovs-*) cyc=$(ovs-appctl -t "$d/ovs-vswitchd-dpdk.${SWPIDS[$name]}.ctl" dpif-netdev/pmd-stats-show |
      awk '/processing cycles per packet/ {print int($6)}' | head -1 || true)
      # (Over the window with a VXLAN underlay.)
      [ ! -e "$d/pmd-stats" ] || cyc=$(awk '/processing cycles per packet/ {print int($6)}' "$d/pmd-stats" | head -1)
      case $name in
        ovs-vxlan-*)
          # Live port counters (the database's are refreshed every 5 s), and whether the
          # datapath flows decapsulate and encapsulate.
          local ctl=$d/ovs-vswitchd-dpdk.${SWPIDS[$name]}.ctl
          echo "$name: guest Tx $txpps Mpps; underlay: $(ovs-appctl -t "$ctl" dpctl/show -s |
            awk '/port [0-9]+: dpdk0/ {p = 1; next} /port [0-9]+:/ {p = 0} p && /[RT]X packets/ {printf "%s ", $0}' | tr -s ' ');" \
            "datapath flows with tnl_pop: $(ovs-appctl -t "$ctl" dpctl/dump-flows | grep -c 'tnl_pop(' || true)," \
            "tnl_push: $(ovs-appctl -t "$ctl" dpctl/dump-flows | grep -c 'tnl_push(' || true)" >&2 ;;
      esac ;;
  esac
  [ ! -e "$d/vs.log" ] || ovs-appctl -t "$d/ovs-vswitchd-dpdk.${SWPIDS[$name]}.ctl" dpif-netdev/pmd-stats-clear >/dev/null 2>&1 || true
  echo "$pps $cpu ${cyc:--} $before $(probe) $stolen" >>"$TMP/res.$name"
}

# PINGPONG: one vhost-pingpong run of PINGPONG round trips against setup $1, the other
# switches stopped. Appends the round trip's "p50 p99 p99.9 mean lost" (µs, frames) to
# $TMP/pp.$1, or a line to $TMP/ppfail.$1 when the tool fails (its error is shown).
measure_pingpong() {
  local name=$1 log=$TMP/$1/pingpong.log
  switch_only "$name"
  # (The tool never waits on a frame for more than its timeout; `timeout` covers a switch
  # that hangs during the vhost-user handshake.)
  if ! timeout 600 "$PP" --sock1 "${SOCK1[$name]}" --sock2 "${SOCK2[$name]}" --mac1 $MAC1 --mac2 $MAC2 \
    --count "$PINGPONG" --frame "$FRAME" --cpu "$GUEST_CPU" >"$log" 2>&1; then
    echo "$name: vhost-pingpong failed: $(tail -3 "$log")" >&2
    echo "$name: the switch's log ends with:" >&2
    tail -8 "$TMP/$name/log" "$TMP/$name/vs.log" >&2 2>/dev/null || true
    echo fail >>"$TMP/ppfail.$name"
    return 0
  fi
  # (A device the switch refused for a moment: the tool connected again.)
  grep 'trying again' "$log" | sed "s/^/$name: /" >&2 || true
  awk '/^rtt_us / {for (i = 2; i <= NF; i++) {split($i, kv, "="); v[kv[1]] = kv[2]}
    print v["p50"], v["p99"], v["p999"], v["mean"], v["lost"]}' "$log" >>"$TMP/pp.$name"
}

RUNNING=""
for s in $SETUPS; do
  case $PINGPONG$FLOWS:$s in
    ?*:*vxlan*) echo "$s: skipped (PINGPONG and FLOWS need two guests)" >&2; continue ;;
  esac
  case $s in
    bf-filter) start_butterflyd "$s" "$BD" --sg sg-all ;;
    bf-bypass) start_butterflyd "$s" "$BD" --bypass-filtering ;;
    base-filter) start_butterflyd "$s" "${BUTTERFLYD_BASE:?base-* setups need BUTTERFLYD_BASE}" --sg sg-all ;;
    base-bypass) start_butterflyd "$s" "${BUTTERFLYD_BASE:?base-* setups need BUTTERFLYD_BASE}" --bypass-filtering ;;
    ovs-ct | ovs-normal | ovs-vxlan-ct | ovs-vxlan-normal)
      [ "${s#ovs-vxlan}" = "$s" ] || [ -e "$TMP/vxlan.pcap" ] || make_vxlan_pcap "$TMP/vxlan.pcap"
      start_ovs "$s" "${s#ovs-}" || { echo "$s: skipped" >&2; continue; } ;;
    bf-vxlan-filter | bf-vxlan-bypass)
      [ -e "$TMP/vxlan.pcap" ] || make_vxlan_pcap "$TMP/vxlan.pcap"
      if [ "$s" = bf-vxlan-filter ]; then BFVX_NIC[$s]="--sg sg-all"; else BFVX_NIC[$s]=--bypass-filtering; fi
      start_bf_vxlan "$s" ${BFVX_NIC[$s]} || { echo "$s: skipped" >&2; continue; } ;;
    vhost-io) start_vhost_io "$s" ;;
    *) echo "unknown setup $s" >&2; exit 2 ;;
  esac
  RUNNING="$RUNNING $s"
done
SETUPS=$RUNNING
sleep 2
for s in $SETUPS; do
  for p in ${SWPIDS[$s]}; do
    kill -0 "$p" 2>/dev/null && continue
    echo "$s: the switch (pid $p) is not running; its log:" >&2
    tail -20 "$TMP/$s/log" "$TMP/$s/vs.log" 2>/dev/null >&2
    exit 1
  done
done
# The warm-up window: measured like a round, then taken out of the results (not counted as
# redone). Round 1 then probes before its window as every later round does.
if [ -z "$PINGPONG" ] && [ "$WARMUP" -gt 0 ]; then
  for s in $SETUPS; do
    SECS=$WARMUP measure "$s"
    echo "warm-up $s: $(tail -1 "$TMP/res.$s") (not counted)" >&2
    sed -i '$d' "$TMP/res.$s"
    [ ! -e "$TMP/persec.$s" ] || sed -i '$d' "$TMP/persec.$s"
  done
fi
for r in $(seq "$ROUNDS"); do
  for s in $SETUPS; do
    if [ -n "$PINGPONG" ]; then
      measure_pingpong "$s"
      echo "round $r $s: $(grep -h '^rtt_us\|^info' "$TMP/$s/pingpong.log" | paste -sd' ')" >&2
    else
      for try in 1 2 3; do
        measure "$s"
        echo "round $r $s: $(tail -1 "$TMP/res.$s") (Mpps, CPU %, cycles, cross-core ns before and after, steal % of the switch/guest CPU)" >&2
        forwarded "$s" || [ $try = 3 ] || {
          echo "round $r $s: redone: nothing forwarded (a guest refused at its start)" >&2
          discard_last "$s"; continue; }
        near_enough "$s" || [ $try = 3 ] || {
          echo "round $r $s: redone: the cross-core round trip was over $PROBE_MAX_NS ns" >&2
          discard_last "$s"; continue; }
        break
      done
    fi
  done
done

if [ -n "$PINGPONG" ]; then
  # Column $1 of a result file: the median, and the range.
  median() { awk -v c="$1" '{print $c}' "$2" | sort -n | awk '{a[NR]=$1} END {if (NR) printf "%.2f", (a[int((NR+1)/2)]+a[int(NR/2)+1])/2; else printf "-"}'; }
  range() { awk -v c="$1" '{print $c}' "$2" | sort -n | awk 'NR==1{lo=$1} {hi=$1} END {if (NR) printf "%.2f–%.2f", lo, hi; else printf "-"}'; }
  echo
  echo "Round trip vm1 -> switch -> vm2 -> switch -> vm1 (vhost-pingpong, one frame in flight), $FRAME-byte frames,"
  echo "$PINGPONG round trips per measurement, switch on CPU $SWITCH_CPU, guests on CPU $GUEST_CPU, $ROUNDS interleaved rounds;"
  echo "µs, median over the rounds (range)"
  echo
  echo "| setup | p50 | p50 range | p99 | p99 range | p99.9 | mean | lost frames (all rounds) | failed rounds |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for s in $SETUPS; do
    f=$TMP/pp.$s; touch "$f"
    lost=$(awk '{n += $5} END {print n + 0}' "$f")
    fails=0; [ ! -e "$TMP/ppfail.$s" ] || fails=$(wc -l <"$TMP/ppfail.$s")
    echo "| $s | $(median 1 "$f") | $(range 1 "$f") | $(median 2 "$f") | $(range 2 "$f") | $(median 3 "$f") | $(median 4 "$f") | $lost | $fails |"
  done
  exit 0
fi

# With no traffic (guests connected, polling, sending nothing): the switch's CPU. OVS and
# testpmd poll by design; butterflyd must sleep.
IDLE=""
for s in $SETUPS; do
  # (Not with a VXLAN underlay: its frames never stop; nor with FLOWS: its guests have no
  # idle mode.)
  [ -z "$FLOWS" ] || break
  case $s in bf-vxlan-*) ;; bf-*) run_guests "$s" idle; IDLE="$IDLE, $s $cpu %" ;; esac
done

echo
if [ -n "$FLOWS" ]; then
  echo "PVP, $FRAME-byte frames, $FLOWS connections (vhost-flows), switch on CPU $SWITCH_CPU, guests on CPU $GUEST_CPU, ${SECS}s x $ROUNDS interleaved rounds"
else
  echo "PVP, $FRAME-byte frames, $INFLIGHT bursts of $BURST in flight per guest port, switch on CPU $SWITCH_CPU, guest on CPU $GUEST_CPU, ${SECS}s x $ROUNDS interleaved rounds"
fi
echo
rtt_col=""; [ "$BURST$INFLIGHT" != 11 ] || [ -n "$FLOWS" ] || rtt_col=" mean round trip µs |"
echo "| setup | Mpps per direction (median) | range | switch CPU % |$rtt_col cycles/packet in the switch (last window) | cross-core ns (range) | steal % switch/guest CPU (max) |"
echo "|---|---|---|---|${rtt_col:+---|}---|---|---|"
for s in $SETUPS; do
  f=$TMP/res.$s
  med=$(awk '{print $1}' "$f" | sort -n | awk '{a[NR]=$1} END {printf "%.3f", (a[int((NR+1)/2)]+a[int(NR/2)+1])/2}')
  rng=$(awk '{print $1}' "$f" | sort -n | awk 'NR==1{lo=$1} {hi=$1} END {printf "%.3f–%.3f", lo, hi}')
  cpu=$(awk '{print $2}' "$f" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  rtt=""; [ -z "$rtt_col" ] || rtt=" $(awk -v m="$med" 'BEGIN {printf "%.1f", (m > 0 ? 2 / m : 0)}') |"
  xc=$(awk '{print $4; print $5}' "$f" | grep -v -- - | sort -n | awk 'NR==1{lo=$1} {hi=$1} END {if (NR) printf "%d–%d", lo, hi; else printf "-"}')
  redone=$(grep -cx -- "$s" "$TMP/redone" 2>/dev/null || true); [ "$redone" != 0 ] || redone=""
  st=$(awk -F'[ /]' 'NF >= 7 {if ($6 > a) a = $6; if ($7 > b) b = $7; n++} END {if (n) printf "%.1f/%.1f", a, b; else printf "-"}' "$f")
  echo "| $s | $med | $rng | $cpu |$rtt $(tail -1 "$f" | cut -d' ' -f3) | $xc${redone:+ ($redone redone)} | $st |"
done
case " $SETUPS " in
  *" bf-vxlan-"* | *" ovs-vxlan-"*)
    echo
    echo "VXLAN rows: the guest's receive rate (frames decapsulated and delivered; it sends them back, encapsulated);"
    echo "butterflyd is restarted for each round (its underlay never idles)." ;;
esac
if [ -n "$PER_SECOND" ] && [ -z "$PINGPONG" ]; then
  echo
  echo "Per level: every second of the windows classed fast or slow, at $LEVEL_FILTERED Mpps for the filtered"
  echo "setups and $LEVEL_UNFILTERED for the others (docs/performance.md, \"Two states of the machine\"); windows"
  echo "that forwarded nothing left out. Mean Mpps per direction (seconds):"
  for s in $SETUPS; do
    [ -e "$TMP/persec.$s" ] || continue
    case $s in *-filter | *-ct) th=$LEVEL_FILTERED ;; *) th=$LEVEL_UNFILTERED ;; esac
    awk -v s="$s" -v th="$th" '
      { z = 1; for (i = 1; i <= NF; i++) if ($i > 0) z = 0; if (z) next
        for (i = 1; i <= NF; i++) if ($i >= th) { f += $i; nf++ } else { w += $i; nw++ } }
      END { printf "%s: fast %s (%d s), slow %s (%d s)\n", s, nf ? sprintf("%.2f", f / nf) : "-", nf,
            nw ? sprintf("%.2f", w / nw) : "-", nw }' "$TMP/persec.$s"
  done
fi
if [ -n "$IDLE" ]; then
  echo
  echo "Idle (guests connected, no traffic), switch CPU:${IDLE#,}"
fi
