#!/usr/bin/env bash
# Make a PostgreSQL server reachable for the test suite and print its URL on stdout.
# Uses PREWARM_TEST_POSTGRES_URL when it already answers; otherwise installs Debian's PostgreSQL
# (when missing), starts a throwaway cluster on a loopback port as the postgres user, and prints its URL.
set -euo pipefail

log() { echo "ensure_postgres: $*" >&2; }

if [[ -n "${PREWARM_TEST_POSTGRES_URL:-}" ]]; then
  if psql "${PREWARM_TEST_POSTGRES_URL/+psycopg/}" -qAtc 'select 1' >/dev/null 2>&1; then
    echo "$PREWARM_TEST_POSTGRES_URL"; exit 0
  fi
  log "PREWARM_TEST_POSTGRES_URL is set but does not answer; starting a local server instead"
fi

PORT="${PREWARM_TEST_POSTGRES_PORT:-55432}"
DATA="${PREWARM_TEST_POSTGRES_DIR:-/tmp/prewarm-pg-$PORT}"
URL="postgresql+psycopg://postgres@127.0.0.1:$PORT/postgres"

bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

if [[ -z "$(bindir)" || ! -x "$(bindir)/postgres" ]]; then
  if [[ $(id -u) -ne 0 ]]; then
    log "PostgreSQL is not installed and this user cannot install it: apt-get install postgresql, or set PREWARM_TEST_POSTGRES_URL"
    exit 1
  fi
  log "installing PostgreSQL from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
fi
BIN="$(bindir)"

as_pg() {
  if [[ $(id -u) -eq 0 ]]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi
}

if as_pg "'$BIN/pg_ctl' -D '$DATA' status" >/dev/null 2>&1; then
  echo "$URL"; exit 0
fi

if [[ ! -f "$DATA/PG_VERSION" ]]; then
  mkdir -p "$DATA"
  [[ $(id -u) -eq 0 ]] && chown postgres:postgres "$DATA"
  as_pg "'$BIN/initdb' -D '$DATA' -U postgres --auth=trust -E UTF8 >/dev/null"
fi
# Throwaway test cluster: durability off makes CREATE DATABASE and COPY fast.
as_pg "'$BIN/pg_ctl' -D '$DATA' -l '$DATA/server.log' -w -o \"-p $PORT -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 -c max_wal_size=4GB\" start" >&2
log "PostgreSQL is up on 127.0.0.1:$PORT"
echo "$URL"
