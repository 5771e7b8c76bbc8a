#!/usr/bin/env bash
# Create the role and the database of DATABASE_URL on a PostgreSQL you run
# yourself (the compose postgres creates them by itself). Safe to run again:
# it creates what is missing and resets the role's password to the URL's.
#
#   scripts/dev-db.sh                 # DATABASE_URL from the environment, else from .env
#   PG_ADMIN_URL=postgres://postgres@localhost:5432/postgres scripts/dev-db.sh
#
# It connects as a superuser: PG_ADMIN_URL if set; else as `postgres` over
# TCP to DATABASE_URL's host and port (trust auth or ~/.pgpass); else, as
# root, `runuser -u postgres -- psql` on the local socket; else
# `sudo -u postgres psql`. Equivalent by hand (psql as a superuser):
#   CREATE ROLE gatehouse LOGIN PASSWORD 'gatehouse';
#   CREATE DATABASE gatehouse OWNER gatehouse;
#   \c gatehouse
#   CREATE EXTENSION IF NOT EXISTS pg_trgm;
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "dev-db: $*" >&2; exit 1; }
command -v psql >/dev/null 2>&1 || die "psql not found (Debian: apt-get install postgresql-client)"

url="${DATABASE_URL:-}"
if [[ -z "$url" && -f .env ]]; then
  url="$(sed -n 's/^DATABASE_URL=//p' .env | tail -n 1 | sed 's/^"\(.*\)"$/\1/')"
fi
[[ -n "$url" ]] || die "DATABASE_URL is not set and not in .env (run scripts/dev-secrets.sh first)"

re='^postgres(ql)?://([^:@/]+)(:([^@/]*))?@([^:/?]+|\[[^]]+\])(:([0-9]+))?/([^?]+)'
[[ "$url" =~ $re ]] || die "cannot parse DATABASE_URL (want postgres://user:password@host:port/database)"
urldecode() { local s="${1//+/ }"; printf '%b' "${s//%/\\x}"; }
user="$(urldecode "${BASH_REMATCH[2]}")"
password="$(urldecode "${BASH_REMATCH[4]}")"
host="${BASH_REMATCH[5]#[}"; host="${host%]}"
port="${BASH_REMATCH[7]:-5432}"
db="$(urldecode "${BASH_REMATCH[8]}")"
[[ -n "$password" ]] || die "DATABASE_URL has no password for $user"

# Idempotent: psql substitutes :'x' (literal) and :"x" (identifier) safely.
sql() {
  cat <<'SQL'
SET client_min_messages = warning;
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'user', :'password')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'user') \gexec
SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', :'user', :'password') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user')
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
\connect :"db"
SET client_min_messages = warning;
-- Trusted since PostgreSQL 13 (the owner may create it); created here for older servers.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
SQL
}
run_psql() {
  sql | "$@" -X -q -v ON_ERROR_STOP=1 -v user="$user" -v password="$password" -v db="$db" -f -
}

if [[ -n "${PG_ADMIN_URL:-}" ]]; then
  how="PG_ADMIN_URL"; run_psql psql "$PG_ADMIN_URL"
elif psql -X -w -h "$host" -p "$port" -U postgres -d postgres -c 'SELECT 1' >/dev/null 2>&1; then
  how="postgres@$host:$port"; run_psql psql -w -h "$host" -p "$port" -U postgres -d postgres
elif [[ "$(id -u)" == 0 ]] && command -v runuser >/dev/null 2>&1; then
  how="runuser -u postgres (local socket, port $port)"; run_psql runuser -u postgres -- psql -p "$port" -d postgres
elif command -v sudo >/dev/null 2>&1; then
  how="sudo -u postgres (local socket, port $port)"; run_psql sudo -u postgres psql -p "$port" -d postgres
else
  die "no superuser connection: set PG_ADMIN_URL=postgres://postgres:...@$host:$port/postgres"
fi
echo "dev-db: role $user and database $db are ready on $host:$port (as $how)"
