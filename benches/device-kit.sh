#!/usr/bin/env bash
# Packs what a vhost-user bench needs onto a machine that has neither DPDK nor this build
# (the lent many-core machine: Ubuntu, no dpdk-testpmd, no libzmq): butterflyd and the CLI
# (release, stripped), the in-memory workers bench, dpdk-testpmd, the shared libraries they
# need beyond glibc, and the DPDK drivers testpmd loads as plugins (virtio_user, ring
# mempools).
#
# Usage: benches/device-kit.sh [DIR]   (default target/device-kit; carried as it is)
# There: KIT=DIR benches/spread-scaling.sh ... (or LD_LIBRARY_PATH=DIR/lib DIR/bin/...).
# Prints the kit's size: the device tool carries at most 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
KIT=${1:-target/device-kit}
cargo build -q --release -p butterflyd -p butterfly-cli
rm -rf "$KIT"; mkdir -p "$KIT/bin" "$KIT/lib" "$KIT/pmd"
for b in butterflyd butterfly; do
  strip -o "$KIT/bin/$b" "${CARGO_TARGET_DIR:-target}/release/$b"
done
# The in-memory workers bench too (WORKERS_BENCH_COUNTS=1,2,4,8 DIR/bin/workers-bench).
workers=$(cargo bench -q -p butterfly-benches --bench workers --no-run --message-format=json |
  awk -F'"executable":"' 'NF > 1 {split($2, a, "\""); print a[1]}' | tail -1 || true)
if [ -n "$workers" ]; then strip -o "$KIT/bin/workers-bench" "$workers"; else echo "no workers bench in the kit" >&2; fi
cp "$(command -v dpdk-testpmd)" "$KIT/bin/"
PMD_DIR=$(ls -d /usr/lib/x86_64-linux-gnu/dpdk/pmds-* | head -1)
# Drivers testpmd does not link but loads (EAL -d): virtio_user and ring mempools.
for d in net_virtio mempool_ring; do cp -L "$PMD_DIR/librte_$d.so" "$KIT/pmd/"; done
# Every library the binaries and those drivers link, under the name they ask for
# (librte_bus_vdev.so.23), but the C library's own: the machine's glibc is newer and serves
# binaries built against this one. Plain files (no links), so that the kit travels as it is.
for f in "$KIT"/bin/* "$KIT"/pmd/*; do
  ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}'
done | sort -u | grep -vE '^(libc|libm|libpthread|libdl|librt|libresolv|ld-linux[^ ]*)\.so' |
  while read -r name path; do cp -L "$path" "$KIT/lib/$name"; done
du -sh "$KIT"
