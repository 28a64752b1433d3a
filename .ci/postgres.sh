#!/usr/bin/env bash
# Start a throw-away PostgreSQL server for the storage tests and print its URL.
#
#   eval "$(.ci/postgres.sh)"        # installs (apt, Debian/Ubuntu) if needed, starts, exports
#   .ci/postgres.sh stop             # stops the server (data stays for the next start)
#   .ci/postgres.sh destroy          # stops it and deletes its data directory
#
# Idempotent: re-running reuses the cluster and server if they already exist and run.
# Only the `export FEDNODE_TEST_PG_URL=...` line goes to stdout (progress goes to stderr);
# under GitHub Actions the variable is also appended to $GITHUB_ENV.
#
# Settings (environment): FEDNODE_PG_DIR (default /var/tmp/fednode-pg), FEDNODE_PG_PORT
# (default 54329), FEDNODE_PG_USER / FEDNODE_PG_PASSWORD (default fednode / fednode),
# FEDNODE_PG_DB (default fednode_test). The server listens on 127.0.0.1 only and
# authenticates TCP clients with scram-sha-256.
set -euo pipefail

PG_DIR="${FEDNODE_PG_DIR:-/var/tmp/fednode-pg}"
PG_PORT="${FEDNODE_PG_PORT:-54329}"
PG_USER="${FEDNODE_PG_USER:-fednode}"
PG_PASSWORD="${FEDNODE_PG_PASSWORD:-fednode}"
PG_DB="${FEDNODE_PG_DB:-fednode_test}"
DATA="$PG_DIR/data"
SOCK="$PG_DIR/run"
LOG="$PG_DIR/server.log"

log() { echo "postgres.sh: $*" >&2; }

find_bindir() {
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x "$d/initdb" && -x "$d/pg_ctl" ]]; then echo "$d"; return 0; fi
    done
    if command -v pg_config >/dev/null 2>&1 && [[ -x "$(pg_config --bindir)/initdb" ]]; then
        pg_config --bindir; return 0
    fi
    return 1
}

# Run a command as the cluster owner: initdb and postgres refuse to run as root.
if [[ "$(id -u)" == 0 ]]; then
    OWNER=postgres
    as_owner() { runuser -u "$OWNER" -- "$@"; }
else
    OWNER="$(id -un)"
    as_owner() { "$@"; }
fi

BIN="$(find_bindir || true)"

case "${1:-start}" in
    stop|destroy)
        if [[ -n "$BIN" && -f "$DATA/PG_VERSION" ]] && as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
            as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >&2
        fi
        if [[ "$1" == destroy ]]; then rm -rf "$PG_DIR"; log "removed $PG_DIR"; fi
        exit 0
        ;;
    start) ;;
    *) log "unknown command '$1' (use start, stop or destroy)"; exit 2 ;;
esac

if [[ -z "$BIN" ]]; then
    if [[ "$(id -u)" != 0 ]]; then
        log "PostgreSQL is not installed and installing it needs root (apt-get install postgresql)"
        exit 1
    fi
    log "installing PostgreSQL with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
    BIN="$(find_bindir)" || { log "postgresql installed but initdb not found"; exit 1; }
fi

if [[ "$(id -u)" == 0 ]] && ! id postgres >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi

mkdir -p "$PG_DIR" "$SOCK"
chown -R "$OWNER" "$PG_DIR"
chmod 0700 "$PG_DIR"

if [[ ! -f "$DATA/PG_VERSION" ]]; then
    log "initialising a cluster in $DATA"
    pwfile="$(mktemp)"
    # The superuser password only matters for TCP; local socket access uses peer auth.
    head -c 24 /dev/urandom | base64 > "$pwfile"
    chown "$OWNER" "$pwfile"
    as_owner "$BIN/initdb" -D "$DATA" -U postgres --pwfile="$pwfile" \
        --auth-local=peer --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >&2 \
        || { rm -rf "$DATA"; as_owner "$BIN/initdb" -D "$DATA" -U postgres --pwfile="$pwfile" \
            --auth-local=peer --auth-host=scram-sha-256 -E UTF8 --locale=C >&2; }
    rm -f "$pwfile"
    # peer auth maps the OS user; let the cluster owner act as the postgres superuser.
    if [[ "$OWNER" != postgres ]]; then
        echo "local all all trust" > "$DATA/pg_hba.conf.local"
        { cat "$DATA/pg_hba.conf.local"; grep -v '^local' "$DATA/pg_hba.conf"; } > "$DATA/pg_hba.tmp"
        mv "$DATA/pg_hba.tmp" "$DATA/pg_hba.conf"
        rm -f "$DATA/pg_hba.conf.local"
        chown "$OWNER" "$DATA/pg_hba.conf"
    fi
fi

if as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    log "server already running in $DATA"
else
    log "starting the server on 127.0.0.1:$PG_PORT (log: $LOG)"
    as_owner "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start \
        -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$SOCK" >&2
fi

psql_admin() {
    as_owner "$BIN/psql" -h "$SOCK" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA "$@"
}

for _ in $(seq 1 30); do
    if psql_admin -c "SELECT 1" >/dev/null 2>&1; then break; fi
    sleep 1
done

# Quote once for SQL string literals (double any single quote).
sql_pw="${PG_PASSWORD//\'/\'\'}"
if [[ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER'")" != 1 ]]; then
    log "creating role $PG_USER"
    psql_admin -c "CREATE ROLE \"$PG_USER\" LOGIN CREATEDB PASSWORD '$sql_pw'"
else
    psql_admin -c "ALTER ROLE \"$PG_USER\" LOGIN CREATEDB PASSWORD '$sql_pw'"
fi
if [[ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != 1 ]]; then
    log "creating database $PG_DB"
    psql_admin -c "CREATE DATABASE \"$PG_DB\" OWNER \"$PG_USER\""
fi

url_pw="$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$PG_PASSWORD")"
URL="postgresql+psycopg://$PG_USER:$url_pw@127.0.0.1:$PG_PORT/$PG_DB"
if [[ -n "${GITHUB_ENV:-}" ]]; then
    echo "FEDNODE_TEST_PG_URL=$URL" >> "$GITHUB_ENV"
fi
log "ready: $URL"
echo "export FEDNODE_TEST_PG_URL='$URL'"
