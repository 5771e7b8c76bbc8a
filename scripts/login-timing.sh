#!/usr/bin/env bash
# Login timing check: does POST /auth/login take as long for an unknown email
# as for a known email with a wrong password? (PRODUCT.md: "same body, same
# timing"; the unknown-email path verifies against a dummy argon2 hash.)
# Run by hand; not in CI. See docs/fuzzing.md.
#
#   scripts/login-timing.sh [TRIALS]      # TRIALS per case, default 50 (>= 30)
#
# 1. cargo build --release -p gatehouse-api (nice -n 10; honours
#    CARGO_TARGET_DIR, e.g. CARGO_TARGET_DIR=/var/tmp/gatehouse-target,
#    else the workspace's target/).
# 2. Creates a scratch database on the local PostgreSQL
#    (psql -h 127.0.0.1 -U postgres, trust auth) and picks a unique
#    REDIS_NAMESPACE on the local Redis (127.0.0.1:6379).
# 3. Starts the API on a free 127.0.0.1 port with RATE_LIMITS=off, a random
#    JWT_SECRET and BOOTSTRAP_ADMIN_EMAIL/BOOTSTRAP_ADMIN_PASSWORD (the
#    bootstrap admin is a verified user).
# 4. scripts/login_timing.py (Python 3 stdlib): after warm-up, TRIALS
#    interleaved logins each for (a) an unknown email and (b) the known email
#    with a wrong password; prints the medians and the ratio unknown/wrong.
# Exit status: 0 = PASS (0.9 <= ratio <= 1.1, both 401 with the same body),
# 1 = FAIL, 2 = setup error. On exit (trap) the API is stopped, the database
# dropped and the namespace's Redis keys deleted.
#
# Environment: PGHOST_TIMING (default 127.0.0.1), REDIS_URL_TIMING (default
# redis://127.0.0.1:6379/0), API_LOG (keep the API log at this path).
set -euo pipefail

TRIALS="${1:-50}"
if [[ "$TRIALS" == "-h" || "$TRIALS" == "--help" ]]; then
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0
fi
[[ "$TRIALS" =~ ^[0-9]+$ && "$TRIALS" -ge 30 ]] || { echo "usage: $0 [trials >= 30]" >&2; exit 2; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PGHOST_T="${PGHOST_TIMING:-127.0.0.1}"
REDIS_URL_T="${REDIS_URL_TIMING:-redis://127.0.0.1:6379/0}"
PSQL=(psql -h "$PGHOST_T" -U postgres -d postgres -v ON_ERROR_STOP=1 -q -X)

TAG="$(date +%s)_$$"
DB="gatehouse_timing_$TAG"
NS="gatehouse-timing-$TAG"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-timing.XXXXXX")"
API_PID=""
DB_CREATED=0

cleanup() {
  local rc=$?
  set +e
  if [[ -n "$API_PID" ]] && kill -0 "$API_PID" 2>/dev/null; then
    kill -TERM "$API_PID" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$API_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$API_PID" 2>/dev/null && kill -KILL "$API_PID" 2>/dev/null
    wait "$API_PID" 2>/dev/null
  fi
  if [[ "$DB_CREATED" == 1 ]]; then
    "${PSQL[@]}" -c "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null 2>&1 \
      && echo "cleanup: dropped database $DB" || echo "cleanup: could not drop database $DB" >&2
  fi
  if command -v redis-cli >/dev/null; then
    redis-cli -u "$REDIS_URL_T" --scan --pattern "${NS}*" 2>/dev/null \
      | xargs -r -n 100 redis-cli -u "$REDIS_URL_T" DEL >/dev/null 2>&1
  fi
  if [[ -n "${API_LOG:-}" ]]; then cp "$WORK/api.log" "$API_LOG" 2>/dev/null; fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== building the API (release)"
( cd "$ROOT" && nice -n 10 cargo build --release -p gatehouse-api )
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET_DIR/release/gatehouse-api"
[[ -x "$BIN" ]] || { echo "no binary at $BIN" >&2; exit 2; }

echo "== scratch database $DB, Redis namespace $NS"
"${PSQL[@]}" -c "CREATE DATABASE \"$DB\"" || exit 2
DB_CREATED=1

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
BASE="http://127.0.0.1:$PORT"
EMAIL="timing-admin-$TAG@example.com"
PASSWORD="$(python3 -c 'import secrets; print("tp-" + secrets.token_urlsafe(18))')"
JWT="$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"

echo "== starting the API on $BASE"
# Run from the scratch dir so no .env of the checkout is picked up.
(
  cd "$WORK"
  exec env \
    DATABASE_URL="postgres://postgres@$PGHOST_T:5432/$DB" \
    REDIS_URL="$REDIS_URL_T" \
    REDIS_NAMESPACE="$NS" \
    API_ADDR="127.0.0.1:$PORT" \
    JWT_SECRET="$JWT" \
    RATE_LIMITS=off \
    COOKIE_SECURE=false \
    LOG_FORMAT=json \
    RUST_LOG=warn \
    BOOTSTRAP_ADMIN_EMAIL="$EMAIL" \
    BOOTSTRAP_ADMIN_PASSWORD="$PASSWORD" \
    "$BIN"
) >"$WORK/api.log" 2>&1 &
API_PID=$!

ready=0
for _ in $(seq 1 600); do
  if ! kill -0 "$API_PID" 2>/dev/null; then
    echo "the API exited during start-up:" >&2; tail -n 20 "$WORK/api.log" >&2; exit 2
  fi
  if python3 - "$BASE" <<'EOF' 2>/dev/null; then ready=1; break; fi
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/health/ready", timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
EOF
  sleep 0.2
done
[[ "$ready" == 1 ]] || { echo "the API did not become ready in 120 s" >&2; tail -n 20 "$WORK/api.log" >&2; exit 2; }
echo "   ready (pid $API_PID); known account: $EMAIL (bootstrap admin, verified)"

echo "== measuring"
set +e
python3 "$ROOT/scripts/login_timing.py" --base-url "$BASE" --email "$EMAIL" --password "$PASSWORD" --trials "$TRIALS"
rc=$?
set -e
exit "$rc"
