#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server to try pgvault on, so the README's
# walkthrough works on a machine with no database at hand:
#   127.0.0.1:54329, user postgres, password demo-password, database "shop"
#   (pgbench data, ~75 MB).
#
#   scripts/demo-source.sh          # start (creates it on first run)
#   scripts/demo-source.sh stop     # stop
#
# PGVAULT_DEMO_DIR (default /tmp/pgvault-demo-source) and PGVAULT_DEMO_PORT
# change where and on which port.
set -euo pipefail
dir=${PGVAULT_DEMO_DIR:-/tmp/pgvault-demo-source}
port=${PGVAULT_DEMO_PORT:-54329}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$bin" ]; then
  echo "error: PostgreSQL server binaries not found under /usr/lib/postgresql; install postgresql-15" >&2
  exit 1
fi
# PostgreSQL refuses to run as root: use the postgres OS user then.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

if [ "${1:-start}" = stop ]; then
  as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop
  exit 0
fi

if [ ! -f "$dir/data/PG_VERSION" ]; then
  mkdir -p "$dir"
  chmod 755 "$dir"
  echo demo-password > "$dir/pwfile"
  if [ "$(id -u)" = 0 ]; then chown postgres "$dir" "$dir/pwfile"; fi
  as_pg "$bin/initdb" -D "$dir/data" -U postgres -E UTF8 --locale=C.UTF-8 \
    --auth=scram-sha-256 --pwfile="$dir/pwfile" >/dev/null
  rm -f "$dir/pwfile"
fi
if ! as_pg "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
  as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=''" start >/dev/null
fi
export PGPASSWORD=demo-password
if ! "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -Atqc "SELECT 1 FROM pg_database WHERE datname = 'shop'" | grep -q 1; then
  "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -qc "CREATE DATABASE shop"
  "$bin/pgbench" -i -q -s 5 -h 127.0.0.1 -p "$port" -U postgres shop 2>/dev/null
fi
echo "demo PostgreSQL running on 127.0.0.1:$port (user postgres, password demo-password, database shop)"
