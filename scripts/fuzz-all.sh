#!/usr/bin/env bash
# Runs the workspace's cargo-fuzz targets (crates/*/fuzz) under libFuzzer and reports, per
# target: outcome, executions, exec/s, coverage (libFuzzer's cov: and ft:), corpus size and
# RSS (once the corpus is loaded, halfway through the executions, and at its peak: memory
# that stays flat keeps the last two close).
# Outcomes: ok; crash (panic, sanitizer report, deadly signal); leak; oom (RSS or malloc
# limit); timeout (one input ran longer than --timeout); hang (the whole run overran its
# time by a minute and was killed); error (the binary would not start, or no report).
#
#   scripts/fuzz-all.sh [OPTIONS] [SECONDS]       build, then run every target SECONDS
#                                                 (default 60), then minimise the corpora
#                                                 into the committed seeds
#   scripts/fuzz-all.sh --build-only DIR          build and pack a bundle into DIR: the
#                                                 binaries, their seed corpora and this
#                                                 script (nightly + cargo-fuzz needed here)
#   DIR/fuzz-all.sh --bundle DIR [OPTIONS] SECS   run a bundle: bash, coreutils and python3
#                                                 only, no Rust toolchain
#   scripts/fuzz-all.sh --take-seeds OUT          copy the minimised corpora of a bundle run
#                                                 (OUT/seeds-min) into the committed seeds
#
# Options:
#   -j N            targets run at once (default 1, or $FUZZ_JOBS)
#   -t NAME         only targets whose name contains NAME (repeatable)
#   --out DIR       where logs, corpora, crash inputs and the report go (default
#                   target/fuzz-runs/DATE, or DIR/runs/DATE for a bundle)
#   --rss-mb N      libFuzzer's memory limit per target, MB (default 2048)
#   --timeout S     longest run of one input, seconds (default 20)
#   --no-leaks      turn LeakSanitizer off (if it cannot run on the machine)
#   --no-seed-update  keep the committed seeds as they are after a local run
#   -- ARGS         more libFuzzer flags for every target
#
# Seeds live in crates/<crate>/fuzz/corpus-seed/<target>/ (committed, kept small by
# libFuzzer's -set_cover_merge=1, a tighter `cargo fuzz cmin`). Each run starts from them and
# grows its own corpus under OUT. Exit status: 0 all ok, 1 a crash or leak, 2 oom, timeout
# or hang only, 3 usage, build or start-up error.
set -uo pipefail

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 3; }

here=$(cd "$(dirname "$0")" && pwd)
secs=60 jobs=${FUZZ_JOBS:-1} out="" rss=2048 per_input=20 leaks=1 update_seeds=1
mode=local bundle="" filters=() extra=()
while [ $# -gt 0 ]; do
  case $1 in
    -j) jobs=$2; shift ;;
    -t) filters+=("$2"); shift ;;
    --out) out=$2; shift ;;
    --rss-mb) rss=$2; shift ;;
    --timeout) per_input=$2; shift ;;
    --no-leaks) leaks=0 ;;
    --no-seed-update) update_seeds=0 ;;
    --build-only) mode=build; bundle=$2; shift ;;
    --bundle) mode=bundle; bundle=$2; shift ;;
    --take-seeds) mode=take; out=$2; shift ;;
    -h|--help) usage ;;
    --) shift; extra=("$@"); break ;;
    -*) echo "fuzz: unknown option $1" >&2; usage ;;
    *) secs=$1 ;;
  esac
  shift
done
[[ "$jobs" =~ ^[1-9][0-9]*$ && "$secs" =~ ^[1-9][0-9]*$ ]] || { echo "fuzz: -j and SECONDS are positive integers" >&2; exit 3; }

wanted() {  # wanted TARGET: whether the -t filters let it through
  [ ${#filters[@]} -eq 0 ] && return 0
  local f; for f in "${filters[@]}"; do [[ "$1" == *"$f"* ]] && return 0; done
  return 1
}

# --- Building (needs the repository, nightly and cargo-fuzz) ------------------------------

repo_targets() {  # prints "target<TAB>crate directory, from the repository root" for each target
  local f
  for f in "$repo"/crates/*/fuzz/fuzz_targets/*.rs; do
    f=${f#"$repo"/}
    printf '%s\t%s\n' "$(basename "$f" .rs)" "${f%/fuzz/fuzz_targets/*}"
  done
}

build_bundle() {  # build_bundle DIR: release binaries + seeds + this script into DIR
  local dir=$1 t crate
  command -v cargo >/dev/null && cargo +nightly fuzz --version >/dev/null 2>&1 || {
    echo "fuzz: needs nightly and cargo-fuzz (rustup toolchain install nightly; cargo install cargo-fuzz)" >&2
    return 3
  }
  mkdir -p "$dir/bin" "$dir/seeds" || return 3
  : > "$dir/targets.tsv"
  local crates=()
  while IFS=$'\t' read -r t crate; do
    wanted "$t" || continue
    printf '%s\t%s\n' "$t" "$crate" >> "$dir/targets.tsv"
    [[ " ${crates[*]} " == *" $crate "* ]] || crates+=("$crate")
  done < <(repo_targets)
  for crate in "${crates[@]}"; do
    echo "fuzz: building the targets of $crate"
    # One target dir for all the fuzz crates: they share brick-core and the rest.
    (cd "$repo/$crate" && cargo +nightly fuzz build -O --target-dir "$repo/target/fuzz") || return 3
  done
  while IFS=$'\t' read -r t crate; do
    local built=$repo/target/fuzz/x86_64-unknown-linux-gnu/release/$t
    rm -f "$dir/bin/$t"
    cp -l "$built" "$dir/bin/" 2>/dev/null || cp "$built" "$dir/bin/" || return 3
    rm -rf "${dir:?}/seeds/$t"; mkdir -p "$dir/seeds/$t"
    if [ -d "$repo/$crate/fuzz/corpus-seed/$t" ]; then cp -r "$repo/$crate/fuzz/corpus-seed/$t/." "$dir/seeds/$t/"; fi
  done < "$dir/targets.tsv"
  cp "$here/fuzz-all.sh" "$dir/fuzz-all.sh"
  { echo "built: $(date -u +%FT%TZ) from $(git -C "$repo" describe --always --dirty 2>/dev/null)"
    rustc +nightly -V; } > "$dir/BUILD"
  echo "fuzz: bundle ready in $dir ($(wc -l < "$dir/targets.tsv") targets, $(du -sh "$dir" | cut -f1))"
}

# --- Running (bash, coreutils, python3) ---------------------------------------------------

run_one() {  # run_one TARGET: fuzz it for $secs, writing under $out
  local t=$1 bin=$bundle/bin/$1
  mkdir -p "$out/corpus/$t" "$out/artifacts/$t"
  local asan="detect_leaks=$leaks:symbolize=1:handle_abort=1"
  # The first corpus directory receives new inputs; the seeds are only read.
  ASAN_OPTIONS=$asan RUST_BACKTRACE=1 timeout -k 10 $((secs + 60)) "$bin" \
    "$out/corpus/$t" "$bundle/seeds/$t" \
    -max_total_time="$secs" -rss_limit_mb="$rss" -timeout="$per_input" -detect_leaks="$leaks" \
    -error_exitcode=77 -timeout_exitcode=70 -print_final_stats=1 \
    -artifact_prefix="$out/artifacts/$t/" "${extra[@]}" > "$out/logs/$t.log" 2>&1
  echo $? > "$out/logs/$t.rc"
}

merge_one() {  # merge_one TARGET: small corpus covering seeds + new inputs → OUT/seeds-min
  local t=$1
  rm -rf "${out:?}/seeds-min/$t"; mkdir -p "$out/seeds-min/$t"
  # -set_cover_merge: what `cargo fuzz cmin` does (-merge), with a third fewer files.
  ASAN_OPTIONS="detect_leaks=0" timeout 600 "$bundle/bin/$t" -set_cover_merge=1 -rss_limit_mb="$rss" \
    -timeout="$per_input" "$out/seeds-min/$t" "$bundle/seeds/$t" "$out/corpus/$t" \
    > "$out/logs/$t.merge.log" 2>&1 || echo "fuzz: merging the corpus of $t failed (see $out/logs/$t.merge.log)"
}

report() {  # report: reads $out/logs, writes $out/report.txt and .tsv, returns the exit status
  python3 - "$out" "$secs" "$jobs" "$bundle" <<'PY'
import os, re, sys
out, secs, jobs, bundle = sys.argv[1:5]
logs = os.path.join(out, "logs")
status_re = re.compile(r"^#(\d+)\s+\S+\s+cov: (\d+) ft: (\d+) corp: (\d+)/(\S+).*?exec/s: (\d+) rss: (\d+)Mb")
rows = []
for name in sorted(f[:-4] for f in os.listdir(logs) if f.endswith(".log") and not f.endswith(".merge.log")):
    text = open(os.path.join(logs, name + ".log"), errors="replace").read()
    try:
        rc = int(open(os.path.join(logs, name + ".rc")).read())
    except (OSError, ValueError):
        rc = -1
    seen = [m for m in map(status_re.match, text.splitlines()) if m]
    first, last = (seen[0], seen[-1]) if seen else (None, None)
    # RSS halfway through the executions: with the peak, it shows whether memory grows.
    mid = min(seen, key=lambda m: abs(2 * int(m.group(1)) - int(last.group(1)))) if seen else None
    stats = dict(re.findall(r"^stat::(\w+):\s+(\d+)", text, re.M))
    if rc == 124 or rc == 137:
        outcome = "hang"
    elif "ERROR: libFuzzer: out-of-memory" in text:
        outcome = "oom"
    elif "ERROR: libFuzzer: timeout" in text:
        outcome = "timeout"
    elif "ERROR: LeakSanitizer: detected memory leaks" in text:
        outcome = "leak"
    elif ("panicked at" in text or "ERROR: AddressSanitizer" in text or "ERROR: libFuzzer:" in text
          or "ERROR: LeakSanitizer" in text):
        outcome = "crash"
    elif rc == 0 and re.search(r"^Done \d+ runs", text, re.M):
        outcome = "ok"
    else:
        outcome = "error"
    # Why, in one line: the panic's place and message, else the first sanitizer error.
    m = re.search(r"panicked at (\S+?):?\n(.*)", text) or re.search(r"ERROR: (\w+: .*)", text)
    why = " ".join(g.strip() for g in m.groups())[:160] if m and outcome != "ok" else ""
    if outcome == "error":
        why = (text.strip().splitlines() or ["(empty log)"])[-1][:100]
    art = re.findall(r"Test unit written to (\S+)", text)
    execs = stats.get("number_of_executed_units") or (last and last.group(1)) or "0"
    rows.append(dict(target=name, outcome=outcome, rc=rc, execs=int(execs),
                     eps=int(stats.get("average_exec_per_sec") or (last and last.group(6)) or 0),
                     cov=last.group(2) if last else "-", ft=last.group(3) if last else "-",
                     corpus=last.group(4) if last else "-",
                     rss="/".join([first.group(7) if first else "?", mid.group(7) if mid else "?",
                                   stats.get("peak_rss_mb") or (last and last.group(7)) or "?"]),
                     artifact=art[-1] if art else "", why=why))
cols = ["target", "outcome", "execs", "eps", "cov", "ft", "corpus", "rss"]
heads = ["target", "outcome", "executions", "exec/s", "cov", "ft", "corpus", "RSS MB start/mid/peak"]
table = [heads] + [[str(r[c]) for c in cols] for r in rows]
widths = [max(len(x[i]) for x in table) for i in range(len(heads))]
lines = [f"fuzz report: {len(rows)} targets, {secs} s each, {jobs} at once, {os.uname().nodename}, "
         f"{os.cpu_count()} CPUs", ""]
lines += ["  ".join(x[i].ljust(widths[i]) for i in range(len(heads))).rstrip() for x in table]
bad = [r for r in rows if r["outcome"] != "ok"]
if bad:
    lines.append("")
for r in bad:
    lines.append(f"{r['target']}: {r['outcome']} (exit {r['rc']}) {r['why']}")
    if r["artifact"]:
        lines.append(f"    input: {r['artifact']}")
        lines.append(f"    reproduce: {os.path.join(bundle, 'bin', r['target'])} {r['artifact']}")
    lines.append(f"    log: {os.path.join(logs, r['target'] + '.log')}")
text = "\n".join(lines) + "\n"
open(os.path.join(out, "report.txt"), "w").write(text)
with open(os.path.join(out, "report.tsv"), "w") as f:
    f.write("\t".join(cols + ["artifact"]) + "\n")
    for r in rows:
        f.write("\t".join(str(r[c]) for c in cols + ["artifact"]) + "\n")
sys.stdout.write(text)
outcomes = {r["outcome"] for r in rows}
sys.exit(1 if outcomes & {"crash", "leak"} else 3 if "error" in outcomes or not rows
         else 2 if outcomes - {"ok"} else 0)
PY
}

run_bundle() {
  [ -f "$bundle/targets.tsv" ] || { echo "fuzz: $bundle is not a bundle (no targets.tsv)" >&2; return 3; }
  bundle=$(cd "$bundle" && pwd)
  [ -n "$out" ] || out=$bundle/runs/$(date +%Y%m%d-%H%M%S)
  mkdir -p "$out/logs" && out=$(cd "$out" && pwd)
  local targets=() t crate running=0
  while IFS=$'\t' read -r t crate; do wanted "$t" && targets+=("$t"); done < "$bundle/targets.tsv"
  [ ${#targets[@]} -gt 0 ] || { echo "fuzz: no target matches" >&2; return 3; }
  echo "fuzz: ${#targets[@]} targets, ${secs} s each, $jobs at once; output in $out"
  for t in "${targets[@]}"; do
    if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
    echo "fuzz: start $t"
    run_one "$t" &
    running=$((running + 1))
  done
  wait
  echo "fuzz: minimising corpora into $out/seeds-min"
  running=0
  for t in "${targets[@]}"; do
    if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
    merge_one "$t" &
    running=$((running + 1))
  done
  wait
  report
}

take_seeds() {  # take_seeds: OUT/seeds-min/<target> → crates/<crate>/fuzz/corpus-seed/<target>
  local t crate n=0 f seeds
  [ -d "$out/seeds-min" ] || { echo "fuzz: no $out/seeds-min" >&2; return 3; }
  while IFS=$'\t' read -r t crate; do
    [ -d "$out/seeds-min/$t" ] && wanted "$t" || continue
    seeds=$repo/$crate/fuzz/corpus-seed/$t
    mkdir -p "$seeds"
    # Inputs found by libFuzzer are named by their SHA-1 and replaced; hand-written seeds
    # (any other name) stay, and their copy under a SHA-1 name is not added again.
    find "$seeds" -maxdepth 1 -type f -regextype posix-extended -regex '.*/[0-9a-f]{40}' -delete
    cp -r "$out/seeds-min/$t/." "$seeds/"
    for f in "$seeds"/*; do
      [[ "$(basename "$f")" =~ ^[0-9a-f]{40}$ ]] || rm -f "$seeds/$(sha1sum < "$f" | cut -c1-40)"
    done
    echo "fuzz: $t: $(ls "$seeds" | wc -l) seeds"
    n=$((n + 1))
  done < <(repo_targets)
  echo "fuzz: updated the seeds of $n targets (review and commit them)"
}

case $mode in
  bundle) run_bundle; exit $? ;;
esac
repo=$(cd "$here/.." && pwd)
case $mode in
  build) build_bundle "$bundle"; exit $? ;;
  take) take_seeds; exit $? ;;
  local)
    bundle=$repo/target/fuzz-bundle
    rm -rf "$bundle"
    build_bundle "$bundle" || exit 3
    [ -n "$out" ] || out=$repo/target/fuzz-runs/$(date +%Y%m%d-%H%M%S)
    run_bundle; status=$?
    if [ "$update_seeds" = 1 ]; then take_seeds; fi
    exit $status ;;
esac
