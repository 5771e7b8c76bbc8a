#!/usr/bin/env bash
# Write .env for local development: a copy of .env.example with a random
# JWT_SECRET. Safe to run again: an existing .env keeps its values, and only
# gets a new JWT_SECRET if it has none, or one that appears in this
# repository (deploy/known-secrets.txt lists them; the API refuses those).
#
#   scripts/dev-secrets.sh            # writes ./.env
#   scripts/dev-secrets.sh path/.env  # another file
set -euo pipefail
cd "$(dirname "$0")/.."

env_file="${1:-.env}"
known="deploy/known-secrets.txt"

random_secret() {
  if command -v openssl >/dev/null 2>&1; then
    openssl rand -base64 48
  else
    head -c 48 /dev/urandom | base64 | tr -d '\n'
  fi
}

if [[ ! -f "$env_file" ]]; then
  cp .env.example "$env_file"
  chmod 600 "$env_file"
  echo "created $env_file from .env.example"
fi

current="$(sed -n 's/^JWT_SECRET=//p' "$env_file" | tail -n 1 | sed 's/^"\(.*\)"$/\1/')"
if [[ -n "$current" ]] && ! grep -qxF -- "$current" <(grep -v '^#' "$known" 2>/dev/null); then
  echo "$env_file already has a JWT_SECRET of its own: kept"
  exit 0
fi

secret="$(random_secret)"
# base64 uses only [A-Za-z0-9+/=]: no quoting needed in .env or compose.
tmp="$(mktemp "${env_file}.XXXXXX")"
if grep -q '^JWT_SECRET=' "$env_file"; then
  awk -v s="$secret" '/^JWT_SECRET=/ { print "JWT_SECRET=" s; next } { print }' "$env_file" > "$tmp"
else
  cat "$env_file" > "$tmp"
  printf 'JWT_SECRET=%s\n' "$secret" >> "$tmp"
fi
chmod 600 "$tmp"
mv "$tmp" "$env_file"
if [[ -n "$current" ]]; then
  echo "replaced the JWT_SECRET in $env_file: it is public (listed in $known)"
else
  echo "wrote a random JWT_SECRET to $env_file"
fi
