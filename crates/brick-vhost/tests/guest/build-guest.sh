#!/bin/sh
# build-guest.sh [OUTDIR] -> OUTDIR/vmlinuz, OUTDIR/initrd.gz (Debian kernel + busybox initramfs
# with iperf3). Idempotent: reuses the downloaded kernel package and rebuilds the initramfs only
# when guest-init.sh or the tools changed. Default OUTDIR: /var/cache/butterfly-rs/guest.
# Needs: busybox-static cpio gzip iperf3 (scripts/setup-brick-vhost.sh installs them).
set -eu
HERE=$(dirname "$(realpath "$0")")
OUT=${1:-${BRICK_VHOST_GUEST_DIR:-/var/cache/butterfly-rs/guest}}
mkdir -p "$OUT"; OUT=$(realpath "$OUT"); cd "$OUT"
# linux-image-amd64 is a metapackage: its Depends names the real, versioned kernel package
KPKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$KPKG" ] || { echo "cannot resolve linux-image-amd64 (apt-get update?)" >&2; exit 1; }
if [ ! -f "$KPKG.deb" ]; then
  rm -f linux-image-*.deb
  apt-get download "$KPKG" 2>/dev/null
  mv "${KPKG}"_*.deb "$KPKG.deb"
fi
STAMP=$( (echo "$KPKG"; cat "$HERE/guest-init.sh"; md5sum /bin/busybox; [ -x /usr/bin/iperf3 ] && md5sum /usr/bin/iperf3) | md5sum | cut -d' ' -f1)
if [ -f vmlinuz ] && [ -f initrd.gz ] && [ "$(cat stamp 2>/dev/null)" = "$STAMP" ]; then
  exit 0
fi
rm -rf kpkg; mkdir kpkg
dpkg -x "$KPKG.deb" kpkg
cp kpkg/boot/vmlinuz-* vmlinuz
KVER=$(ls kpkg/lib/modules)
R=$(mktemp -d)
mkdir -p $R/bin $R/usr/bin $R/proc $R/sys $R/dev $R/tmp $R/lib/modules
cp /bin/busybox $R/bin/busybox
for a in $(/bin/busybox --list); do [ -e $R/bin/$a ] || ln -s busybox $R/bin/$a; done
# virtio-net is modular in Debian's kernel; these are its dependencies in load order
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net; do
  f=$(find kpkg/lib/modules/$KVER -name "$m.ko*" | head -1)
  case "$f" in *.xz) xz -dc "$f";; *.zst) zstd -dc "$f";; *) cat "$f";; esac > $R/lib/modules/$m.ko
done
if [ -x /usr/bin/iperf3 ]; then   # Debian's iperf3 is dynamic: copy the libraries ldd lists
  cp /usr/bin/iperf3 $R/usr/bin/
  for l in $(ldd /usr/bin/iperf3 | grep -o '/[^ ]*'); do mkdir -p $R$(dirname $l); cp -L $l $R$l; done
fi
cp "$HERE/guest-init.sh" $R/init; chmod +x $R/init
(cd $R && find . | cpio -o -H newc --quiet | gzip -1) > initrd.gz.tmp
mv initrd.gz.tmp initrd.gz
rm -rf $R kpkg
echo "$STAMP" > stamp
