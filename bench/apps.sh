#!/usr/bin/env bash
# Benchmarks of the example apps (issue 15), beside bench/run.sh:
#
#   bench/apps.sh                                       # full run
#   BENCH_DURATION=5 BENCH_WARMUP=1 BENCH_ROOMS=2 BENCH_RATE=100 bench/apps.sh   # smoke run
#
#   (o) chat fan-out: 2 replicas, BENCH_ROOMS rooms (10) of BENCH_ROOM_SIZE
#       sockets (50), BENCH_RATE messages/s in total (1000); latency from send
#       to receipt on every socket of the room. Budget: p99 < 50 ms, every
#       delivery made.
#   (p) BotFactory GET /bots/me against Gatehouse's own GET /me (scenario (a)
#       of bench/run.sh), the same closed-loop client, BENCH_CONNS (64)
#       connections: throughput and the ratio.
#
# Not run in CI. Like bench/run.sh it wants a quiet machine: run it last.
# Builds the release binaries (BENCH_PROFILE=dev uses the debug ones, for a
# quick smoke run), then runs examples/testkit's `apps-bench` driver, which
# starts everything on 127.0.0.1 (local PostgreSQL, Redis), prints the
# figures and writes JSON to bench/results/. Exit status 1 when a budget fails.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/gatehouse-target}"
profile="${BENCH_PROFILE:-release}"
flags=(--locked -p gatehouse-api -p botfactory -p chat -p example-testkit --features example-testkit/bench --bin gatehouse-api --bin botfactory --bin chat --bin apps-bench)
if [ "$profile" = release ]; then
  cargo build --release "${flags[@]}"
  dir="$CARGO_TARGET_DIR/release"
else
  cargo build "${flags[@]}"
  dir="$CARGO_TARGET_DIR/debug"
fi
mkdir -p bench/results
export BENCH_BIN="$dir"
export BENCH_OUT="${BENCH_OUT:-bench/results/apps-$(date -u +%Y%m%dT%H%M%SZ).json}"
exec "$dir/apps-bench"
