#!/bin/bash
# iperf-compare.sh [SECONDS] : guest-to-guest iperf3 (TCP, then UDP 1400 B) between two TCG
# guests, (1) through our graph (vhost-user — hub — vhost-user, examples/vhost_hub, with and
# without TSO) and (2) through QEMU tap devices on a Linux bridge in a private netns, with
# vhost-net when /dev/vhost-net exists (it does not on this machine kind: plain tap then).
# Needs scripts/setup-brick-vhost.sh; run as root. Prints one line per path.
set -u
T=${1:-5}
HERE=$(dirname "$(realpath "$0")"); CRATE=$(dirname "$HERE")
W=$(mktemp -d /tmp/iperf-compare.XXXX); NS=ipcmp$$
IMG=${BRICK_VHOST_GUEST_DIR:-/var/cache/butterfly-rs/guest}
sh "$CRATE/tests/guest/build-guest.sh" "$IMG" || exit 1
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-vhost}
(cd "$CRATE" && cargo build -q --release --example vhost_hub) || exit 1
HUB=$CARGO_TARGET_DIR/release/examples/vhost_hub
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; ip netns del $NS 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT

guest() { # $1=index $2=netdev args $3=role $4=extra qemu prefix
  local i=$1 peer=$((3-$1)); rm -f "$W/vm$i.log"
  $4 qemu-system-x86_64 -accel tcg -m 256M -smp 1 -nodefaults -no-user-config -display none -no-reboot \
    -object memory-backend-memfd,id=mem,size=256M,share=on -numa node,memdev=mem \
    -kernel "$IMG/vmlinuz" -initrd "$IMG/initrd.gz" -serial file:"$W/vm$i.log" \
    -append "console=ttyS0 quiet panic=-1 vmip=10.0.0.$i/24 vmpeer=10.0.0.$peer vmip6=fd00::$i/64 vmpeer6=fd00::$peer vmrole=$3 vmtxkb=16 vmiperft=$T" \
    $2 -device virtio-net-pci,netdev=n0,mac=52:54:00:00:00:0$i,vectors=0 > "$W/qemu$i.err" 2>&1 &
  pids+=($!)
}
result() { # $1=label
  for k in $(seq 1200); do grep -q 'IPERF_DONE' "$W/vm1.log" 2>/dev/null && break; sleep 0.25; done
  tcp=$(grep -a -A2 'IPERF_TCP' "$W/vm1.log" | grep -a receiver | grep -o '[0-9.]* Mbits/sec' | head -1)
  udp=$(grep -a -A2 'IPERF_UDP' "$W/vm1.log" | grep -a receiver | grep -o '[0-9.]* Mbits/sec' | head -1)
  echo "$1: TCP ${tcp:-FAILED}, UDP(1400B) ${udp:-FAILED}"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; pids=()
}

for mode in notso tso; do
  $HUB "$W/v1.sock" "$W/v2.sock" $mode > "$W/hub.log" 2>&1 & pids+=($!)
  for k in $(seq 50); do [ -S "$W/v2.sock" ] && break; sleep 0.1; done
  for i in 1 2; do
    guest $i "-chardev socket,id=c0,path=$W/v$i.sock,reconnect=1 -netdev vhost-user,id=n0,chardev=c0" \
      $([ $i = 1 ] && echo client || echo server) ""
  done
  result "brick-vhost graph ($mode)"
done

ip netns add $NS; ip -n $NS link set lo up
ip -n $NS link add br0 type bridge; ip -n $NS link set br0 up
for i in 1 2; do ip -n $NS tuntap add tap$i mode tap; ip -n $NS link set tap$i master br0 up; done
if [ -e /dev/vhost-net ]; then VH=",vhost=on"; LABEL="tap + vhost-net + bridge"; else VH=""; LABEL="tap + bridge (no /dev/vhost-net here: plain tap)"; fi
for i in 1 2; do
  guest $i "-netdev tap,id=n0,ifname=tap$i,script=no,downscript=no$VH" $([ $i = 1 ] && echo client || echo server) "ip netns exec $NS"
done
result "$LABEL"
