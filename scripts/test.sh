#!/usr/bin/env bash
# The whole test suite: set-up (idempotent), formatting, lints, every crate's tests, and the
# suites behind cargo features. Prints "N passed, M failed" at the end.
#
#   scripts/test.sh            everything
#   QUICK=1 scripts/test.sh    skip set-up, fmt and clippy (for a fast local loop)
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
log=$(mktemp -t butterfly-test.XXXXXX)
trap 'rm -f "$log"' EXIT
failed_steps=()

step() {
  local name=$1; shift
  echo "==> $name: $*"
  local t0=$SECONDS
  if "$@" 2>&1 | tee -a "$log"; then
    echo "==> $name: ok ($((SECONDS - t0)) s)"
  else
    echo "==> $name: FAILED ($((SECONDS - t0)) s)"
    failed_steps+=("$name")
  fi
}

if [ -z "${QUICK:-}" ]; then
  bash scripts/setup.sh || { echo "set-up failed"; echo "0 passed, 1 failed"; exit 1; }
  step fmt cargo fmt --all -- --check
  step clippy cargo clippy --workspace --all-targets -- -D warnings
  # Public items are documented: the docs must build without a broken link or stray tag.
  step doc env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps
fi
step test cargo test --workspace --no-fail-fast
# Extra suites registered by crates (feature-gated builds such as DPDK).
for s in scripts/test-*.sh; do
  [ -e "$s" ] || continue
  step "$(basename "$s" .sh)" bash "$s"
done

passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed;' "$log" | awk '{s+=$1} END {print s+0}')
failed=$((failed + ${#failed_steps[@]}))
[ ${#failed_steps[@]} -eq 0 ] || echo "failed steps: ${failed_steps[*]}"
echo "${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
