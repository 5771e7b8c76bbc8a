#!/usr/bin/env bash
# `promtool check metrics` against the /metrics of both binaries (issue 16
# item 11). promtool comes from Debian's `prometheus` package, unpacked
# (never installed, no daemon) under the cargo target directory. The check
# itself is the worker integration test `promtool_accepts_the_metrics_of_both_binaries`,
# which starts both real binaries and pipes each /metrics page to promtool.
set -euo pipefail
cd "$(dirname "$0")/.."

dir="${CARGO_TARGET_DIR:-target}/promtool"
promtool="$dir/root/usr/bin/promtool"
if [ ! -x "$promtool" ]; then
  mkdir -p "$dir"
  (
    cd "$dir"
    apt-get download prometheus >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null && apt-get download prometheus >/dev/null 2>&1; }
    dpkg -x prometheus_*.deb root
    rm -f prometheus_*.deb
  )
fi
PROMTOOL="$(cd "$(dirname "$promtool")" && pwd)/promtool"
export PROMTOOL
"$PROMTOOL" --version 2>&1 | head -n 1

cargo build --locked -p gatehouse-api -p gatehouse-worker --bins
cargo test --locked -p gatehouse-worker --test integration promtool_ -- --nocapture
