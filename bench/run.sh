#!/usr/bin/env bash
# Gatehouse benchmark: one command from a clean checkout to the table.
#
#   bench/run.sh                                   # full run (~10 min)
#   BENCH_DURATION=3 BENCH_WARMUP=1 BENCH_STALE=20000 BENCH_VERIFIED=20000 bench/run.sh   # smoke run
#
# Builds the release binaries and the argon2 helper, waits until no other
# cargo/rustc/test process shares the cores, then runs bench/bench.py, which
# starts PostgreSQL databases, API, worker and an SMTP sink on 127.0.0.1,
# runs scenarios (a)-(n), prints the table and PASS/FAIL per budget, writes
# JSON to bench/results/, and removes everything it created. Settings are
# listed at the top of bench/bench.py. Exit status 1 when a budget fails.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/gatehouse-target}"
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"

say() { printf '== %s\n' "$*"; }

if ! command -v wrk >/dev/null; then
  say "installing wrk (Debian package)"
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk; }
  else
    sudo apt-get install -y -qq wrk
  fi
fi
for tool in psql pgbench pg_isready redis-cli python3 cargo; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is required" >&2; exit 2; }
done
pg_isready -h "$PGHOST" -p "$PGPORT" -q || { echo "bench: PostgreSQL is not answering on $PGHOST:$PGPORT" >&2; exit 2; }
redis-cli -u "$REDIS_URL" ping >/dev/null || { echo "bench: Redis is not answering at $REDIS_URL" >&2; exit 2; }

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  say "cargo build --release -p gatehouse-api -p gatehouse-worker"
  cargo build --release --locked -p gatehouse-api -p gatehouse-worker
  say "cargo build --release (bench/argon2-bound)"
  cargo build --release --locked --manifest-path bench/argon2-bound/Cargo.toml
  say "cargo build --release (bench/verify-app)"
  cargo build --release --locked --manifest-path bench/verify-app/Cargo.toml
fi

export BENCH_BIN="${BENCH_BIN:-$CARGO_TARGET_DIR/release}"
export BENCH_ARGON2="${BENCH_ARGON2:-$CARGO_TARGET_DIR/release/gatehouse-argon2-bound}"
export BENCH_VERIFY_APP="${BENCH_VERIFY_APP:-$CARGO_TARGET_DIR/release/gatehouse-verify-app}"
exec python3 bench/bench.py "$@"
