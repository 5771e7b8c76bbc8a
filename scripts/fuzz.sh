#!/usr/bin/env bash
# Fuzz every cargo-fuzz target in fuzz/ for a fixed time. Run by hand; not in
# CI (too slow). See docs/fuzzing.md.
#
#   scripts/fuzz.sh [SECONDS]        # SECONDS per target, default 30
#
# Environment:
#   FUZZ_TARGETS="email_parse token_decode"   only these targets (default: all)
#   FUZZ_SANITIZER=address|none               default address (ASan)
#   FUZZ_CODEGEN_UNITS=16                     faster builds, slower fuzzing
#                                             (cargo-fuzz's default is 1)
#   FUZZ_ARGS="-max_len=4096"                 extra libFuzzer flags
#
# Works on stable Rust: cargo-fuzz's instrumentation flags (-Cpasses=sancov-
# module, -Cllvm-args=...) are stable; only the sanitizer flag
# (-Zsanitizer=address) is not, and RUSTC_BOOTSTRAP=1 unlocks it. With
# FUZZ_SANITIZER=none even that is not needed (RUSTC_BOOTSTRAP stays set,
# harmless). No nightly toolchain is used or downloaded.
#
# Steps: install cargo-fuzz if missing (pinned, from crates.io); build all
# targets once with `cargo fuzz build` into fuzz/target (nice -n 10); then run
# the built binaries directly (as `cargo fuzz run` would, minus its rebuild,
# so every target tests the same snapshot even while the tree is being
# edited): replay fuzz/regressions/<target>/ (crashes found before must stay
# fixed), fuzz each target for SECONDS with fuzz/corpus/<target> (git-ignored,
# grows across runs) plus the committed seeds in fuzz/seeds/<target>, print
# executions per target. On a crash the input is in
# fuzz/artifacts/<target>/, a minimised copy (minimized-from-<name>) is made
# next to it, and the script exits 1.
# Exit status: 0 if no target crashed, 1 if one did, 2 on a usage/setup error.
set -euo pipefail

CARGO_FUZZ_VERSION="0.13.2"
SECS="${1:-30}"
if [[ "$SECS" == "-h" || "$SECS" == "--help" ]]; then
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0
fi
[[ "$SECS" =~ ^[0-9]+$ && "$SECS" -gt 0 ]] || { echo "usage: $0 [seconds-per-target]" >&2; exit 2; }
SANITIZER="${FUZZ_SANITIZER:-address}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
FUZZ_TARGET_DIR="$ROOT/fuzz/target"
unset CARGO_TARGET_DIR          # the fuzz crate always builds into fuzz/target
export RUSTC_BOOTSTRAP=1        # lets stable rustc accept -Zsanitizer=...

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION from crates.io"
  nice -n 10 cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi
echo "== $(cargo fuzz --version), $(rustc --version), sanitizer: $SANITIZER"

BUILD_ARGS=(--sanitizer "$SANITIZER" --target-dir "$FUZZ_TARGET_DIR")
[[ -n "${FUZZ_CODEGEN_UNITS:-}" ]] && BUILD_ARGS+=(--codegen-units "$FUZZ_CODEGEN_UNITS")

if [[ -n "${FUZZ_TARGETS:-}" ]]; then
  read -r -a TARGETS <<<"$FUZZ_TARGETS"
else
  mapfile -t TARGETS < <(cargo fuzz list)
fi
[[ ${#TARGETS[@]} -gt 0 ]] || { echo "no fuzz targets found" >&2; exit 2; }

echo "== building ${TARGETS[*]} (nice -n 10; the first build takes a while)"
nice -n 10 cargo fuzz build "${BUILD_ARGS[@]}"
TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
BIN_DIR="$FUZZ_TARGET_DIR/$TRIPLE/release"
# cargo-fuzz sets this for ASan runs too.
[[ "$SANITIZER" == address ]] && export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_odr_violation=0"

LOG_DIR="$FUZZ_TARGET_DIR/logs"
mkdir -p "$LOG_DIR"
read -r -a EXTRA <<<"${FUZZ_ARGS:-}"
# -timeout: one input running longer than 10 s is a hang and fails the run.
LIBFUZZER_ARGS=(-max_total_time="$SECS" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 "${EXTRA[@]}")

declare -A EXECS RATE COV STATUS
CRASHED=()
for t in "${TARGETS[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"

  if compgen -G "fuzz/regressions/$t/*" >/dev/null; then
    echo "== $t: replaying fuzz/regressions/$t"
    mapfile -t REG < <(find "fuzz/regressions/$t" -type f ! -name '*.md' | sort)
    if [[ ${#REG[@]} -gt 0 ]] && ! nice -n 10 "$BIN_DIR/$t" -runs=1 "${REG[@]}" >"$LOG_DIR/$t.regressions.log" 2>&1; then
      echo "   FAIL: a known crash input crashes again; see $LOG_DIR/$t.regressions.log"
      tail -n 30 "$LOG_DIR/$t.regressions.log" | sed 's/^/   | /'
      STATUS[$t]="regression"; CRASHED+=("$t"); continue
    fi
  fi

  CORPORA=("fuzz/corpus/$t")
  [[ -d "fuzz/seeds/$t" ]] && CORPORA+=("fuzz/seeds/$t")
  echo "== $t: fuzzing for ${SECS}s (corpus: ${CORPORA[*]})"
  before="$(mktemp)"; ls -1 "fuzz/artifacts/$t" >"$before"
  set +e
  nice -n 10 "$BIN_DIR/$t" -artifact_prefix="fuzz/artifacts/$t/" "${LIBFUZZER_ARGS[@]}" "${CORPORA[@]}" >"$LOG_DIR/$t.log" 2>&1
  rc=$?
  set -e
  EXECS[$t]="$(sed -n 's/^stat::number_of_executed_units: *//p' "$LOG_DIR/$t.log" | tail -n 1)"
  RATE[$t]="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$LOG_DIR/$t.log" | tail -n 1)"
  COV[$t]="$(grep -Eo 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*' "$LOG_DIR/$t.log" | tail -n 1)"
  grep -E '^#[0-9]+[[:space:]]+DONE' "$LOG_DIR/$t.log" | tail -n 1 | sed 's/^/   /' || true
  if [[ $rc -eq 0 ]]; then
    STATUS[$t]="ok"
  else
    STATUS[$t]="CRASH (rc $rc)"; CRASHED+=("$t")
    echo "   CRASH in $t (exit $rc); log: $LOG_DIR/$t.log"
    grep -E 'panicked at|ERROR: libFuzzer|SUMMARY|Test unit written' "$LOG_DIR/$t.log" | head -n 10 | sed 's/^/   | /'
    mapfile -t NEW < <(ls -1 "fuzz/artifacts/$t" | grep -vxFf "$before" | grep -v '^minimized-' || true)
    for a in "${NEW[@]}"; do
      echo "   minimising fuzz/artifacts/$t/$a"
      nice -n 10 "$BIN_DIR/$t" -minimize_crash=1 -max_total_time=60 \
        -exact_artifact_path="fuzz/artifacts/$t/minimized-from-$a" "fuzz/artifacts/$t/$a" \
        >"$LOG_DIR/$t.tmin.log" 2>&1 || true
      grep -E 'CRASH_MIN: failed to minimize|CRASH_MIN: minimizing crash input' "$LOG_DIR/$t.tmin.log" | tail -n 2 | sed 's/^/   | /' || true
      if [[ -f "fuzz/artifacts/$t/minimized-from-$a" ]]; then
        echo "   minimised: fuzz/artifacts/$t/minimized-from-$a ($(wc -c <"fuzz/artifacts/$t/minimized-from-$a") bytes)"
      fi
    done
    echo "   reproduce: $BIN_DIR/$t fuzz/artifacts/$t/<file>"
    echo "         or: RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer $SANITIZER --target-dir fuzz/target $t fuzz/artifacts/$t/<file>"
    echo "   then copy the minimised input to fuzz/regressions/$t/ and add a unit test (fuzz/regressions/README.md)"
  fi
  rm -f "$before"
done

echo
echo "== summary (${SECS}s per target, sanitizer $SANITIZER)"
printf '%-16s %-14s %14s %10s  %s\n' target status executions "exec/s" coverage
for t in "${TARGETS[@]}"; do
  printf '%-16s %-14s %14s %10s  %s\n' "$t" "${STATUS[$t]:-?}" "${EXECS[$t]:--}" "${RATE[$t]:--}" "${COV[$t]:-}"
done
if [[ ${#CRASHED[@]} -gt 0 ]]; then
  echo "FAIL: crashes in ${CRASHED[*]} (logs in $LOG_DIR)"
  exit 1
fi
echo "OK: no crashes"
