#!/usr/bin/env bash
# Lint the OpenAPI document with Redocly CLI's `recommended` ruleset
# (redocly.yaml): any error or warning fails. The document comes from the
# binary itself (`gatehouse-api openapi`), so no service is needed. Redocly
# is installed once from the npm registry into the tools cache (no CDN).
# Used by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION="2.77.0"
TOOLS="${GATEHOUSE_TOOLS_DIR:-${HOME:-/root}/.cache/gatehouse}/redocly-$VERSION"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/gatehouse-target}"

if [ ! -x "$TOOLS/node_modules/.bin/redocly" ]; then
  mkdir -p "$TOOLS"
  npm install --prefix "$TOOLS" --no-audit --no-fund --silent "@redocly/cli@$VERSION"
fi
REDOCLY="$TOOLS/node_modules/.bin/redocly"

cargo build --locked -q -p gatehouse-api --bin gatehouse-api
DOC="$(mktemp --suffix=.json)"
REPORT="$(mktemp)"
trap 'rm -f "$DOC" "$REPORT"' EXIT
"$CARGO_TARGET_DIR/debug/gatehouse-api" openapi >"$DOC"

# Human-readable report first, then the count from the JSON report:
# Redocly exits 0 on warnings, and warnings must fail too.
"$REDOCLY" lint --config redocly.yaml --format stylish "$DOC" 2>/dev/null || true
"$REDOCLY" lint --config redocly.yaml --format json "$DOC" >"$REPORT" 2>/dev/null || true
python3 - "$REPORT" <<'PY'
import json, sys
problems = json.load(open(sys.argv[1]))["problems"]
for p in problems:
    where = ", ".join(l.get("pointer", "") for l in p.get("location", []))
    print(f"{p['severity']}: {p['ruleId']}: {where}: {p['message']}")
print(f"redocly recommended: {len(problems)} problem(s)")
sys.exit(1 if problems else 0)
PY
