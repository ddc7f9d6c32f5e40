# Shared by the namespace bench scripts (sourced, not run): installs the Debian packages
# named in BENCH_PACKAGES, builds butterflyd and the CLI in release mode, and sets up the
# clean-up of every namespace, process and temporary file the script makes (trap on exit).
# Gives: BD (butterflyd), CLI (butterfly), T (unique suffix), TMP, mkns NAME, PIDS+=(pid),
# cpu_busy (jiffies spent by all CPUs).
# BENCH_NO_INSTALL=1 skips the packages (a machine without apt, with the tools carried in);
# BUTTERFLYD and BUTTERFLY_CLI name prebuilt binaries (then nothing is built); BENCH_FEATURES
# adds cargo features to the build (e.g. butterflyd/dpdk); BENCH_KEEP=1 keeps the temporary
# directory (logs) and says where.
if [ -z "${BENCH_NO_INSTALL:-}" ]; then
  for p in $BENCH_PACKAGES; do
    dpkg -s "$p" >/dev/null 2>&1 || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$p"; }
  done
fi
[ -n "${BUTTERFLYD:-}" ] || cargo build -q --release -p butterflyd -p butterfly-cli ${BENCH_FEATURES:+--features "$BENCH_FEATURES"}
BD=${BUTTERFLYD:-${CARGO_TARGET_DIR:-target}/release/butterflyd}
CLI=${BUTTERFLY_CLI:-${CARGO_TARGET_DIR:-target}/release/butterfly}
T=$$
NS=(); PIDS=(); TMP=$(mktemp -d)
cleanup() {
  # CONT after TERM: a process stopped by a bench (SIGSTOP) must run to act on it.
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; kill -CONT "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for n in "${NS[@]}"; do ip netns del "$n" 2>/dev/null || true; done
  if [ -n "${BENCH_KEEP:-}" ]; then echo "logs kept in $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
mkns() { ip netns add "$1"; NS+=("$1"); ip -n "$1" link set lo up; }
cpu_busy() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }
