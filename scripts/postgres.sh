#!/usr/bin/env bash
# A throw-away PostgreSQL for tests and local scale-out trials: initdb into a folder, run as the
# unprivileged user `postgres` on 127.0.0.1, trust auth on loopback.
#   scripts/postgres.sh start [DIR] [PORT]   prints the DSN (also written to DIR/dsn)
#   scripts/postgres.sh stop [DIR]
set -euo pipefail
cmd=${1:?start or stop}
dir=${2:-${TMPDIR:-/tmp}/ocinest-pg}
port=${3:-55432}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [[ -z $bin ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql >/dev/null
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case $cmd in
start)
    [[ -f $dir/data/postmaster.pid ]] && as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    mkdir -p "$dir"
    [[ $(id -u) == 0 ]] && chown postgres "$dir"
    as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log"
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=400" start >/dev/null
    dsn="postgresql://postgres@127.0.0.1:$port/postgres"
    echo "$dsn" >"$dir/dsn"
    echo "$dsn"
    ;;
stop)
    [[ -f $dir/data/postmaster.pid ]] && as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    rm -rf "$dir"
    ;;
*) echo "usage: $0 start|stop [DIR] [PORT]" >&2; exit 2 ;;
esac
