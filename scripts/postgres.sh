#!/usr/bin/env bash
# Start or stop a throwaway PostgreSQL 15 on a free loopback port, for tests and the full-stack check.
#   scripts/postgres.sh start DIR   -> prints the connection URL; the server lives in DIR
#   scripts/postgres.sh stop DIR
# As root, the cluster runs as the `postgres` user (initdb refuses root).
set -euo pipefail
cmd=${1:?start|stop}
dir=${2:?data folder}

find_bin() {
  local name=$1
  for candidate in /usr/lib/postgresql/15/bin/$name $(ls -d /usr/lib/postgresql/*/bin/$name 2>/dev/null | sort -r) "$(command -v "$name" 2>/dev/null || true)"; do
    [ -n "$candidate" ] && [ -x "$candidate" ] && { echo "$candidate"; return 0; }
  done
  return 1
}

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$cmd" in
  start)
    initdb=$(find_bin initdb) || { echo "PostgreSQL is not installed (apt-get install postgresql-15)" >&2; exit 3; }
    pg_ctl=$(find_bin pg_ctl)
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    as_owner "$initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1
    as_owner "$pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c fsync=off -c max_connections=200" start >/dev/null
    echo "$port" >"$dir/port"
    echo "postgresql://postgres@127.0.0.1:$port/postgres"
    ;;
  stop)
    pg_ctl=$(find_bin pg_ctl)
    [ -d "$dir/data" ] && as_owner "$pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
