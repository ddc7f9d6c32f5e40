#!/usr/bin/env bash
# One VNI over several cores: a vhost-user NIC's queue pairs served by T workers
# (`--vhost-spread`), side by side with all of them on one worker, in interleaved rounds.
#
# The guests are one dpdk-testpmd with two virtio_user ports (vm1, vm2), QUEUES queue pairs
# each, forwarding in 5tswap mode with a loop topology on the lcores GUEST_CPUS (as in
# benches/pvp-compare.sh: each frame goes back out of the queue it came in on, swapped, so
# a population circulates between the guests through the switch). The population: vm1's
# queues send 2 x INFLIGHT bursts first (testpmd's tx_first, one lcore), with
# --txonly-multi-flow, so the frames are 256 flows (testpmd 22.11 gives frame k the source
# 198.18.k.(2 + the sending lcore's id); vm1 is given those 256 addresses, the most a NIC
# holds), and the switch's spread brick hands each flow to one of the threads.
#   tT   butterflyd --workers T --vhost-queue-pairs QUEUES (--vhost-spread when T > 1), both
#        NICs in VNI 1; worker i on the i-th CPU from SWITCH_CPU (taskset's list)
# MODE=filter (default): a security group allowing everything (conntrack and anti-spoof on
# every frame, on the NICs' worker); MODE=bypass: --bypass-filtering.
# Figures: frames forwarded per second per direction (mean of the two ports' receive rates),
# median and range over the rounds; the switch process's CPU (% of one core) over the window;
# where vm2's spread brick sent frames (per thread).
#
# Usage (root): [THREADS="1 2 4"] [QUEUES=4] [MODE=filter|bypass] [SWITCH_CPU=1]
#   [GUEST_MAIN_CPU=0] [GUEST_CPUS=8,9,10,11] [KIT=target/device-kit] benches/spread-scaling.sh [SECONDS [ROUNDS]]
#   THREADS  the worker counts to compare (default "1 2"); QUEUES the pairs (default the most)
#   GUEST_CPUS  the guest's forwarding lcores, a comma list in ascending order (no ranges)
#   KIT      a directory from benches/device-kit.sh: its butterflyd, CLI, dpdk-testpmd and
#            libraries are used and nothing is installed or built (a machine without DPDK)
# On this project's 2-vCPU machine the defaults (switch from CPU 0, guest on CPU 1) only check
# that it runs: T workers and the guest then share two CPUs.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}
ROUNDS=${2:-3}
THREADS=${THREADS:-"1 2"}
QUEUES=${QUEUES:-$(printf '%s\n' $THREADS | sort -n | tail -1)}
MODE=${MODE:-filter}
SWITCH_CPU=${SWITCH_CPU:-0}
GUEST_MAIN_CPU=${GUEST_MAIN_CPU:-$SWITCH_CPU}
GUEST_CPUS=${GUEST_CPUS:-1}
INFLIGHT=${INFLIGHT:-8}
GUEST_MBUFS=${GUEST_MBUFS:-32768}
TESTPMD=dpdk-testpmd
DPDK_EXTRA=${DPDK_EXTRA:-}
if [ -n "${KIT:-}" ]; then
  KIT=$(cd "$KIT" && pwd)
  export LD_LIBRARY_PATH=$KIT/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export BUTTERFLYD=$KIT/bin/butterflyd BUTTERFLY_CLI=$KIT/bin/butterfly BENCH_NO_INSTALL=1
  TESTPMD=$KIT/bin/dpdk-testpmd
  DPDK_EXTRA="$DPDK_EXTRA -d $KIT/pmd"
fi
# Where DPDK is installed, its EAL loads every driver of its plugin directory too, which would
# clash with the kit's: the kit's testpmd then runs with that directory hidden.
testpmd() {
  local plugins=/usr/lib/x86_64-linux-gnu/dpdk
  if [ -n "${KIT:-}" ] && [ -d $plugins ]; then
    unshare -m sh -c "mount -t tmpfs none $plugins && exec \"\$0\" \"\$@\"" "$TESTPMD" "$@"
  else
    "$TESTPMD" "$@"
  fi
}
BENCH_PACKAGES="dpdk"
. benches/common.sh
MAC1=02:00:00:00:00:01
MAC2=02:00:00:00:00:02
[[ $GUEST_CPUS =~ ^[0-9]+(,[0-9]+)*$ ]] || { echo "GUEST_CPUS=$GUEST_CPUS: give a comma list of CPUs" >&2; exit 2; }
[ "$(tr ',' '\n' <<<"$GUEST_CPUS" | sort -n | paste -sd,)" = "$GUEST_CPUS" ] ||
  { echo "GUEST_CPUS=$GUEST_CPUS: give them in ascending order (the first sends the population)" >&2; exit 2; }
FIRST_GUEST_CPU=${GUEST_CPUS%%,*}
NCORES=$(tr ',' '\n' <<<"$GUEST_CPUS" | wc -l)
declare -A SOCK1 SOCK2 SWPIDS APIS

# The CPUs worker 0..T-1 run on: T consecutive ones from SWITCH_CPU.
switch_cpus() { seq -s, "$SWITCH_CPU" $((SWITCH_CPU + $1 - 1)); }

start_butterflyd() { # threads
  local t=$1 name=t$1 d=$TMP/t$1; mkdir -p "$d/sock"
  local args=(--no-state --underlay none -u "$SWITCH_CPU" -e "ipc://$d/api" -s "$d/sock" --metrics off
    --workers "$t" --vhost-queue-pairs "$QUEUES")
  [ "$t" -eq 1 ] || args+=(--vhost-spread)
  taskset -c "$(switch_cpus "$t"),$GUEST_MAIN_CPU" "$BD" "${args[@]}" >"$d/log" 2>&1 &
  local pid=$! i; PIDS+=("$pid")
  local cli=("$CLI" -e "ipc://$d/api")
  for i in $(seq 50); do "${cli[@]}" nic list >/dev/null 2>&1 && break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null || { echo "$name: butterflyd did not start:" >&2; tail -5 "$d/log" >&2; exit 1; }
  local nic=(--bypass-filtering) ips=()
  if [ "$MODE" = filter ]; then
    "${cli[@]}" sg add sg-all >/dev/null
    "${cli[@]}" sg rule add sg-all --dir in --ip-proto all --cidr 0.0.0.0/0 >/dev/null
    nic=(--sg sg-all)
    for i in $(seq 0 255); do ips+=(--ip "198.18.$i.$((2 + FIRST_GUEST_CPU))"); done
  fi
  "${cli[@]}" nic add --id vm1 --mac $MAC1 --vni 1 "${ips[@]}" "${nic[@]}" >/dev/null
  "${cli[@]}" nic add --id vm2 --mac $MAC2 --vni 1 --ip 198.18.0.2 "${nic[@]}" >/dev/null
  SOCK1[$name]=$d/sock/qemu-vhost-vm1; SOCK2[$name]=$d/sock/qemu-vhost-vm2; SWPIDS[$name]=$pid
  APIS[$name]=ipc://$d/api
}

# Lets setup $1's switch run and stops the others (they share CPUs).
switch_only() {
  local other
  for other in "${!SWPIDS[@]}"; do
    if [ "$other" = "$1" ]; then kill -CONT "${SWPIDS[$other]}"; else kill -STOP "${SWPIDS[$other]}"; fi
  done
}

jiffies() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# One window against setup $1: appends "Mpps cpu%" to $TMP/res.$1.
measure() {
  local name=$1 d=$TMP/$1 log=$TMP/$1/guest.log warm=4 q=""
  switch_only "$name"
  [ "$QUEUES" -eq 1 ] || q=",cq=1"
  (
    sleep "$warm"
    # The population from vm1 alone, on one lcore (its frames' sources are vm1's addresses).
    echo "set nbcore 1"
    echo "set portlist 0"
    echo "start tx_first $((2 * INFLIGHT))"
    sleep 0.5
    echo "stop"
    echo "set nbcore $NCORES"
    echo "set portlist 0,1"
    echo "start"
    sleep 2
    echo "show port stats all"
    sleep "$SECS"
    echo "show port stats all"
    echo "stop"
    sleep 1
    echo "quit"
  ) | testpmd -l "$GUEST_MAIN_CPU,$GUEST_CPUS" --main-lcore "$GUEST_MAIN_CPU" --no-pci --no-huge -m 1024 \
    $DPDK_EXTRA --file-prefix "ss$T$name" \
    --vdev "virtio_user0,path=${SOCK1[$name]},mac=$MAC1,queues=$QUEUES,queue_size=1024$q" \
    --vdev "virtio_user1,path=${SOCK2[$name]},mac=$MAC2,queues=$QUEUES,queue_size=1024$q" -- \
    -i --forward-mode=5tswap --port-topology=loop --eth-peer=0,$MAC2 --eth-peer=1,$MAC1 \
    --txonly-multi-flow --no-flush-rx --nb-cores="$NCORES" --rxq="$QUEUES" --txq="$QUEUES" \
    --txd=1024 --rxd=1024 --total-num-mbufs="$GUEST_MBUFS" >"$log" 2>&1 &
  local g=$!
  sleep $((warm + 3))
  local j0 t0 j1 t1; j0=$(jiffies "${SWPIDS[$name]}"); t0=$(date +%s.%N)
  sleep "$SECS"
  j1=$(jiffies "${SWPIDS[$name]}"); t1=$(date +%s.%N)
  wait $g || true
  rm -rf "/var/run/dpdk/ss$T$name"
  local pps cpu
  # The last "show port stats all": both ports' receive rates (none: testpmd failed).
  pps=$(grep -E '^\s*Rx-pps:' "$log" | tail -2 | awk '{s += $2; n++} END {if (n == 2) printf "%.3f", s / 2 / 1e6}' || true)
  if [ -z "$pps" ]; then
    echo "$name: the guest gave no rates; its log ends:" >&2; tail -15 "$log" >&2; pps=0
  fi
  cpu=$(awk -v j="$((j1 - j0))" -v hz="$(getconf CLK_TCK)" -v t0="$t0" -v t1="$t1" 'BEGIN {printf "%.0f", 100 * j / (hz * (t1 - t0))}')
  echo "$pps $cpu" >>"$TMP/res.$name"
}

SETUPS=""
for t in $THREADS; do
  [ "$t" -le "$QUEUES" ] || { echo "t$t: more threads than QUEUES=$QUEUES" >&2; exit 2; }
  start_butterflyd "$t"; SETUPS="$SETUPS t$t"
done
for r in $(seq "$ROUNDS"); do
  for s in $SETUPS; do
    measure "$s"
    echo "round $r $s: $(tail -1 "$TMP/res.$s") (Mpps per direction, switch CPU %)" >&2
  done
done

echo
echo "vhost-user VM<->VM, one VNI, $MODE, 64-byte frames, $QUEUES queue pairs per guest port, guest lcores $GUEST_CPUS,"
echo "switch from CPU $SWITCH_CPU, ${SECS}s x $ROUNDS interleaved rounds"
echo
echo "| workers | Mpps per direction (median) | range | speed-up | switch CPU % | vm2's frames per thread (spread brick) | drops (all rounds) |"
echo "|---|---|---|---|---|---|---|"
base=""
for s in $SETUPS; do
  f=$TMP/res.$s
  med=$(awk '{print $1}' "$f" | sort -n | awk '{a[NR]=$1} END {printf "%.3f", (a[int((NR+1)/2)]+a[int(NR/2)+1])/2}')
  rng=$(awk '{print $1}' "$f" | sort -n | awk 'NR==1{lo=$1} {hi=$1} END {printf "%.3f–%.3f", lo, hi}')
  cpu=$(awk '{print $2}' "$f" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  [ -n "$base" ] || base=$med
  kill -CONT "${SWPIDS[$s]}"
  status=$("$CLI" -e "${APIS[$s]}" status)
  spread=$(grep -o 'spread-vm2|[^"]*to threads=[0-9,]*' <<<"$status" | grep -o 'to threads=[0-9,]*' || true)
  # Every brick's drops by reason, but the VTEP's (with no underlay it drops its own IGMP).
  drops=$(grep -o '{[a-z0-9.-]*|[^"]*' <<<"$status" | grep -v '^{vtep' |
    grep -o 'drop [^|}]*: [0-9]*' | awk -F': ' '{n[$1] += $2} END {for (r in n) printf "%s %d, ", substr(r, 6), n[r]}' || true)
  echo "| ${s#t} | $med | $rng | $(awk -v a="$med" -v b="$base" 'BEGIN {printf "%.2f×", (b > 0 ? a / b : 0)}') | $cpu | ${spread:-one worker} | ${drops:-none} |"
done
