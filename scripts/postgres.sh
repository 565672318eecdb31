#!/usr/bin/env bash
# A throwaway local PostgreSQL for the tests of vault-server's PostgreSQL backend and for a
# developer (docs/spec/storage.md).
#
#   scripts/postgres.sh [start] [DIR]   create (first time) and start a cluster in DIR;
#                                       the last line printed is its URL
#   scripts/postgres.sh stop [DIR]      stop it (the data stays in DIR)
#
# DIR defaults to target/postgres under the repository root. The cluster listens only on
# 127.0.0.1, port ${VAULT_PG_PORT:-54329}, with trust authentication for loopback and its
# Unix socket in DIR: anyone who can open a connection on this machine is a superuser of
# it, so it is for tests and development only. If the PostgreSQL server programs are
# missing they are installed from the distribution (apt-get, with sudo when not root).
# Run as root, the cluster belongs to the `postgres` system user (initdb refuses root).
#
# Typical use:
#   export VAULT_TEST_DATABASE_URL="$(scripts/postgres.sh | tail -n 1)"
#   CARGO_TARGET_DIR=... cargo test -p vault-server --features postgres --test store_contract_pg
set -euo pipefail

say() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
action=start
case "${1:-}" in
start | stop)
    action="$1"
    shift
    ;;
-h | --help)
    sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
esac
[ "$#" -le 1 ] || die "usage: $0 [start|stop] [DIR]"
dir="${1:-$root/target/postgres}"
port="${VAULT_PG_PORT:-54329}"
case "$port" in
'' | *[!0-9]*) die "VAULT_PG_PORT must be a port number, not '$port'" ;;
esac
if [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
    die "VAULT_PG_PORT out of range: $port"
fi

# Only an empty or missing directory, or one this script made: it is chmod-ed (and, as
# root, given to the postgres user), which must never happen to an unrelated directory.
if [ -d "$dir" ] && [ -n "$(ls -A "$dir" 2>/dev/null)" ] && [ ! -f "$dir/data/PG_VERSION" ]; then
    die "$dir is not empty and holds no cluster made by this script; give a new directory"
fi
# The directory as an absolute path (the server and pg_ctl may run as another user).
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
data="$dir/data"
log="$dir/postgres.log"
# Unix socket paths are limited to 107 bytes.
[ "${#dir}" -le 80 ] || die "directory path too long for a Unix socket (max 80 bytes): $dir"

# The server programs: the distribution's layout first (newest major version), then PATH.
find_bin() {
    local d
    d="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -type d -name bin 2>/dev/null |
        sort -V | tail -n 1 || true)"
    if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
        printf '%s\n' "$d"
        return 0
    fi
    local initdb pg_ctl
    initdb="$(command -v initdb || true)"
    pg_ctl="$(command -v pg_ctl || true)"
    if [ -n "$initdb" ] && [ -n "$pg_ctl" ]; then
        dirname "$(readlink -f "$pg_ctl")"
        return 0
    fi
    return 1
}

if ! bin="$(find_bin)"; then
    [ "$action" = start ] || die "PostgreSQL is not installed; nothing to stop"
    say "initdb/pg_ctl not found: installing the distribution's postgresql package"
    # apt's output goes to stderr: stdout carries only the URL.
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >&2
    elif command -v sudo >/dev/null; then
        sudo apt-get update >&2
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >&2
    else
        die "not root and no sudo: install the postgresql package, then run this again"
    fi
    bin="$(find_bin)" || die "postgresql installed but initdb/pg_ctl still not found"
fi

# Who runs the server: the current user, or `postgres` when we are root.
if [ "$(id -u)" -eq 0 ]; then
    owner=postgres
    if ! id -u "$owner" >/dev/null 2>&1; then
        say "creating the system user '$owner'"
        useradd --system --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin "$owner"
    fi
    as_owner() {
        if command -v runuser >/dev/null; then
            runuser -u "$owner" -- "$@"
        else
            su -s /bin/sh "$owner" -c "$(printf '%q ' "$@")"
        fi
    }
    chown "$owner:" "$dir"
    chmod 700 "$dir"
    # The server must be able to reach its directory through every parent.
    as_owner test -x "$dir" ||
        die "user '$owner' cannot reach $dir (a parent directory is not searchable)"
else
    owner="$(id -un)"
    as_owner() { "$@"; }
    chmod 700 "$dir"
fi

pg_ctl() { as_owner "$bin/pg_ctl" "$@"; }
running() { [ -f "$data/postmaster.pid" ] && pg_ctl status -D "$data" >/dev/null 2>&1; }
# The port of the running server: line 4 of postmaster.pid.
running_port() { sed -n '4p' "$data/postmaster.pid"; }
url() { printf 'postgres://postgres@127.0.0.1:%s/postgres\n' "$1"; }

if [ "$action" = stop ]; then
    if [ -d "$data" ] && running; then
        pg_ctl stop -D "$data" -m fast -w >&2
        say "stopped the cluster in $dir"
    else
        say "no cluster running in $dir"
    fi
    exit 0
fi

if [ -d "$data" ] && running; then
    say "already running in $dir"
    url "$(running_port)"
    exit 0
fi

if [ ! -f "$data/PG_VERSION" ]; then
    say "creating a cluster in $data (owner: $owner, PostgreSQL binaries: $bin)"
    as_owner "$bin/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 \
        --no-locale >"$dir/initdb.log" 2>&1 ||
        die "initdb failed, see $dir/initdb.log"
    # Only the superuser over the socket in $dir and over IPv4 loopback; nothing else.
    as_owner tee "$data/pg_hba.conf" >/dev/null <<'EOF'
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 trust
host    all       all   127.0.0.1/32  trust
EOF
    printf "\ninclude_if_exists = 'vault.conf'\n" | as_owner tee -a "$data/postgresql.conf" >/dev/null
fi

# Written on every start, so VAULT_PG_PORT takes effect on the next start.
as_owner tee "$data/vault.conf" >/dev/null <<EOF
# Written by scripts/postgres.sh on every start.
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
EOF

if ! pg_ctl start -D "$data" -l "$log" -w -t 60 >&2; then
    say "the server did not start; the end of $log:"
    tail -n 20 "$log" >&2 || true
    exit 1
fi
say "started in $dir (log: $log)"
url "$port"
