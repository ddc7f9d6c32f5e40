#!/bin/sh
# /init of brick-vhost's test guest. Kernel command line parameters:
#   vmip=10.0.0.1/24 vmpeer=10.0.0.2 vmip6=fd00::1/64 vmpeer6=fd00::2 vmrole=server|client|idle
#   vmtxkb=256 (size of the blob each guest serves over HTTP), vmiperft=SECONDS (client runs iperf3)
#   vmmq=1 (several queue pairs: report how many the driver uses, ping from every vCPU so that
#   each sends through its own TX queue)
# Every result goes to the serial console as "VMTEST <WORD> ... t=<uptime>". The guest never
# powers off by itself: after its checks it keeps answering pings and reports reachability of
# its peer every second (ALIVE_OK / ALIVE_FAIL), so the host can reset it, restart the backend
# and watch traffic come back.
export PATH=/bin:/usr/bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
mkdir -p /tmp
say() { echo "VMTEST $* t=$(cut -d' ' -f1 /proc/uptime)" > /dev/ttyS0; }
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net; do
  insmod /lib/modules/$m.ko 2>/dev/null || say "INSMOD_FAIL $m"
done
for kv in $(cat /proc/cmdline); do case "$kv" in vm*=*) eval "${kv%%=*}='${kv#*=}'";; esac; done
i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
ip link set lo up; ip link set eth0 up
[ -n "$vmip" ] && ip addr add "$vmip" dev eth0
if [ -n "$vmip6" ]; then
  echo 0 > /proc/sys/net/ipv6/conf/eth0/accept_dad; ip -6 addr add "$vmip6" dev eth0
fi
say "NETUP $(cat /sys/class/net/eth0/address) features=$(cat /sys/class/net/eth0/device/features 2>/dev/null)"
waitping() { n=0; while [ $n -lt $3 ]; do $1 -c1 -W1 "$2" >/dev/null 2>&1 && return 0; n=$((n+1)); done; return 1; }
if [ -n "$vmpeer" ]; then
  if waitping ping "$vmpeer" ${vmpingtries:-90}; then say "PING_OK $vmpeer"; else say "PING_FAIL $vmpeer"; fi
fi
if [ -n "$vmmq" ]; then
  say "QUEUES rx=$(ls -d /sys/class/net/eth0/queues/rx-* | wc -l) tx=$(ls -d /sys/class/net/eth0/queues/tx-* | wc -l)"
  ok=1; c=0
  while [ $c -lt "$(nproc)" ]; do
    taskset $((1 << c)) ping -c3 -W1 "$vmpeer" >/dev/null 2>&1 || ok=0; c=$((c+1))
  done
  if [ $ok = 1 ]; then say "MQPING_OK cpus=$(nproc)"; else say "MQPING_FAIL cpus=$(nproc)"; fi
fi
if [ -n "$vmpeer6" ]; then
  if waitping ping6 "$vmpeer6" 30; then say "PING6_OK $vmpeer6"; else say "PING6_FAIL $vmpeer6"; fi
fi
# TCP transfer checked byte for byte: each guest serves a random blob over HTTP and fetches
# its peer's; the host compares the md5 each side prints.
mkdir -p /www
dd if=/dev/urandom of=/www/blob bs=1024 count=${vmtxkb:-256} 2>/dev/null
say "SRV_MD5 $(md5sum < /www/blob | cut -d' ' -f1) $(wc -c < /www/blob)"
httpd -p 8080 -h /www
n=0
while [ $n -lt 60 ]; do
  if wget -q -O /tmp/got "http://$vmpeer:8080/blob" 2>/dev/null; then
    say "GOT_MD5 $(md5sum < /tmp/got | cut -d' ' -f1) $(wc -c < /tmp/got)"; break
  fi
  n=$((n+1)); sleep 1
done
[ $n -ge 60 ] && say "GOT_FAIL"
case "$vmrole" in
  server)
    [ -x /usr/bin/iperf3 ] && iperf3 -s -D >/dev/null 2>&1 ;;
  client)
    if [ -x /usr/bin/iperf3 ] && [ -n "$vmiperft" ]; then
      sleep 1
      iperf3 -c "$vmpeer" -t "$vmiperft" -f m > /tmp/iperf.out 2>&1; say "IPERF_TCP rc=$?"
      grep -E 'sender|receiver' /tmp/iperf.out > /dev/ttyS0
      iperf3 -c "$vmpeer" -u -b 10G -l 1400 -t "$vmiperft" -f m > /tmp/iperfu.out 2>&1; say "IPERF_UDP rc=$?"
      grep -E 'sender|receiver' /tmp/iperfu.out > /dev/ttyS0
      say "IPERF_DONE"
    fi ;;
esac
say READY
n=0
while true; do
  if ping -c1 -W1 "$vmpeer" >/dev/null 2>&1; then say "ALIVE_OK $n"; else say "ALIVE_FAIL $n"; fi
  n=$((n+1)); sleep 1
done
