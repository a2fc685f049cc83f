#!/usr/bin/env bash
# pgvault vs pg_dump/pg_restore on a private PostgreSQL 15.
#
# Starts a throwaway cluster (as the postgres OS user, on a free loopback
# port, in a temporary directory, tuned for bulk loads: the same server for
# every tool), builds the data sets, then times (median of --runs):
#   backup:  pgvault  vs  pg_dump -Fd -j 2  and  pg_dump -Fd -j 2 -Z0
#   restore: pgvault  vs  pg_restore -j 2 (of the default pg_dump -Fd dump)
# plus stored bytes and pgvault's peak RSS (/usr/bin/time -v), on
#   "main":   pgbench scale 50×S, a 3M×S-row orders table, 500 small tables
#   "orders": the orders table alone
# and prints a table with the ratios against the targets.
#
# Usage: bench/run.sh [--scale S] [--runs N] [--connections N] [--zstd-level L]
#                     [--only main|orders] [--keep] [--workdir DIR]
# --workdir keeps the cluster and data sets in DIR and reuses them next time
# (for tuning runs; the data sets are built once, whatever --scale says);
# otherwise everything lives in a temporary directory removed at the end.
# Run from anywhere inside the repository; needs root (runs the server as
# postgres) and the PostgreSQL 15 binaries (apt install postgresql-15).
set -euo pipefail

SCALE=1
RUNS=3
ONLY=""
KEEP=0
WORKDIR=""
ENGINE_ARGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --scale) SCALE="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --connections) ENGINE_ARGS+=(--connections "$2"); shift 2 ;;
    --zstd-level) ENGINE_ARGS+=(--zstd-level "$2"); shift 2 ;;
    --only) ONLY="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --workdir) WORKDIR="$2"; KEEP=1; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

REPO=$(cd "$(dirname "$0")/.." && pwd)
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
for tool in initdb pg_ctl pg_dump pg_restore psql pgbench createdb dropdb; do
  [[ -x "$PGBIN/$tool" ]] || { echo "missing $PGBIN/$tool: apt-get install postgresql-15" >&2; exit 1; }
done
if [[ ! -x /usr/bin/time ]]; then
  echo "installing GNU time (for peak RSS)" >&2
  apt-get update -qq && apt-get install -y -qq time >/dev/null
fi

echo "== building pgvault-bench (release)" >&2
(cd "$REPO" && cargo build --release -q -p pgvault-bench)
TARGET_DIR=$(cd "$REPO" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BENCH="$TARGET_DIR/release/pgvault-bench"

if [[ -n $WORKDIR ]]; then
  WORK=$(mkdir -p "$WORKDIR" && cd "$WORKDIR" && pwd)
else
  WORK=$(mktemp -d /tmp/pgvault-bench.XXXXXX)
fi
chmod 755 "$WORK"
rm -rf "$WORK/store" "$WORK/dumps"
mkdir -p "$WORK/store" "$WORK/dumps"
chown postgres: "$WORK"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres PGOPTIONS="-c client_min_messages=warning"
unset PGPASSWORD PGDATABASE
as_pg() { runuser -u postgres -- "$@"; }

cleanup() {
  as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -m fast stop >/dev/null 2>&1 || true
  if [[ $KEEP == 0 ]]; then rm -rf "$WORK"; else echo "kept $WORK" >&2; fi
}
trap cleanup EXIT

echo "== starting PostgreSQL 15 on 127.0.0.1:$PORT in $WORK" >&2
if [[ ! -f $WORK/data/PG_VERSION ]]; then
as_pg "$PGBIN/initdb" -D "$WORK/data" -U postgres -E UTF8 --locale=C.UTF-8 --auth=trust >/dev/null
cat >>"$WORK/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK'
max_connections = 100
shared_buffers = 2GB
maintenance_work_mem = 1GB
work_mem = 64MB
max_wal_size = 16GB
min_wal_size = 2GB
checkpoint_timeout = 60min
checkpoint_completion_target = 0.9
wal_buffers = 64MB
max_parallel_maintenance_workers = 2
autovacuum = off
jit = off
EOF
fi
as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/server.log" -o "-p $PORT" -w start >/dev/null

psql_q() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
RESULTS="$WORK/results.tsv"
: >"$RESULTS"
# record <set> <measure> <value>
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RESULTS"; }
du_bytes() { du -sb "$1" | cut -f1; }
rss_kib() { awk -F': ' '/Maximum resident set size/ {print $2}' "$1"; }
quiet_server() { psql_q -d postgres -c 'CHECKPOINT' >/dev/null; sync; }

have_db() { [[ $(psql_q -d postgres -Atc "SELECT count(*) FROM pg_database WHERE datname = '$1'") == 1 ]]; }

build_main() {
  local accounts_scale=$((50 * SCALE)) orders=$((3000000 * SCALE))
  if have_db main; then echo "== reusing data set main" >&2; return; fi
  echo "== building data set main (pgbench -s $accounts_scale, $orders orders, 500 small tables)" >&2
  "$PGBIN/createdb" main
  "$PGBIN/pgbench" -i -q -s "$accounts_scale" main 2>&1 | tail -1 >&2
  psql_q -d main <<SQL
DO \$\$ BEGIN PERFORM setseed(0.42); END \$\$;
CREATE TABLE orders (
  id bigint PRIMARY KEY, customer_id int NOT NULL, status text NOT NULL, note text,
  amount numeric(12,2) NOT NULL, tax numeric(10,4), created_at timestamptz NOT NULL,
  shipped_at timestamptz, attrs jsonb
);
INSERT INTO orders
SELECT g, (random() * 200000)::int,
       (ARRAY['new', 'paid', 'shipped', 'returned', 'cancelled'])[1 + floor(random() * 5)::int],
       substr(md5(random()::text) || ' ' || md5(random()::text) || ' ' || md5(random()::text), 1, 10 + (random() * 80)::int),
       round((random() * 100000)::numeric, 2), round((random() * 100)::numeric, 4),
       timestamptz '2021-01-01' + random() * interval '1200 days',
       CASE WHEN random() < 0.7 THEN timestamptz '2021-01-01' + random() * interval '1300 days' END,
       jsonb_build_object('sku', 'SKU-' || (random() * 50000)::int, 'qty', 1 + (random() * 9)::int,
                          'gift', random() < 0.1, 'channel', (ARRAY['web', 'shop', 'phone'])[1 + floor(random() * 3)::int],
                          'ref', md5(g::text))
FROM generate_series(1, $orders) g;
CREATE INDEX orders_customer ON orders (customer_id);
CREATE INDEX orders_created ON orders (created_at);
DO \$\$
BEGIN
  FOR i IN 1..500 LOOP
    EXECUTE format('CREATE TABLE small_%s (id int PRIMARY KEY, name text NOT NULL, v numeric, at timestamptz DEFAULT now())', i);
    EXECUTE format('INSERT INTO small_%s (id, name, v) SELECT g, md5((g * %s)::text), g * 1.5 FROM generate_series(1, 100) g', i, i);
  END LOOP;
END
\$\$;
VACUUM (FREEZE, ANALYZE);
SQL
}

build_orders() {
  if have_db orders; then echo "== reusing data set orders" >&2; return; fi
  echo "== building data set orders (the orders table alone)" >&2
  psql_q -d postgres -c 'CREATE DATABASE orders TEMPLATE main'
  psql_q -d orders <<'SQL'
DROP TABLE pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history;
DO $$ BEGIN FOR i IN 1..500 LOOP EXECUTE format('DROP TABLE small_%s', i); END LOOP; END $$;
VACUUM (FREEZE, ANALYZE);
SQL
}

bench_set() {
  local set=$1 run t0 t1 dir db
  echo "== data set $set: $(psql_q -d "$set" -Atc "SELECT pg_size_pretty(pg_database_size(current_database()))")" >&2
  record "$set" db_bytes "$(psql_q -d "$set" -Atc 'SELECT pg_database_size(current_database())')"
  for run in $(seq 1 "$RUNS"); do
    dir="$WORK/store/$set-$run"
    quiet_server
    t0=$(now)
    /usr/bin/time -v -o "$WORK/time.txt" "$BENCH" backup --source "dbname=$set" \
      --datastore "file://$WORK/store" --prefix "$set-$run" "${ENGINE_ARGS[@]}" >"$WORK/backup.json"
    t1=$(now)
    record "$set" pgvault_backup_s "$(elapsed "$t0" "$t1")"
    record "$set" pgvault_backup_rss_kib "$(rss_kib "$WORK/time.txt")"
    record "$set" pgvault_bytes "$(du_bytes "$dir")"
    echo "   pgvault backup run $run: $(cat "$WORK/backup.json")" >&2

    for z in default Z0; do
      rm -rf "$WORK/dumps/$set-$z"
      quiet_server
      t0=$(now)
      if [[ $z == default ]]; then
        "$PGBIN/pg_dump" -Fd -j 2 -f "$WORK/dumps/$set-$z" "$set"
      else
        "$PGBIN/pg_dump" -Fd -j 2 -Z0 -f "$WORK/dumps/$set-$z" "$set"
      fi
      t1=$(now)
      record "$set" "pg_dump_${z}_s" "$(elapsed "$t0" "$t1")"
      record "$set" "pg_dump_${z}_bytes" "$(du_bytes "$WORK/dumps/$set-$z")"
      echo "   pg_dump -Fd -j2 ($z) run $run: $(elapsed "$t0" "$t1") s" >&2
    done
    if [[ $run -lt $RUNS ]]; then rm -rf "$dir"; fi
  done
  rm -rf "$WORK/dumps/$set-Z0"

  for run in $(seq 1 "$RUNS"); do
    db="${set}_pgvault_$run"
    psql_q -d postgres -c "DROP DATABASE IF EXISTS $db"
    quiet_server
    t0=$(now)
    /usr/bin/time -v -o "$WORK/time.txt" "$BENCH" restore --source "dbname=postgres" \
      --datastore "file://$WORK/store" --prefix "$set-$RUNS" --target-database "$db" "${ENGINE_ARGS[@]}" >"$WORK/restore.json"
    t1=$(now)
    record "$set" pgvault_restore_s "$(elapsed "$t0" "$t1")"
    record "$set" pgvault_restore_rss_kib "$(rss_kib "$WORK/time.txt")"
    echo "   pgvault restore run $run: $(cat "$WORK/restore.json")" >&2
    psql_q -d postgres -c "DROP DATABASE $db"

    db="${set}_pg_restore_$run"
    psql_q -d postgres -c "DROP DATABASE IF EXISTS $db"
    quiet_server
    t0=$(now)
    "$PGBIN/createdb" "$db"
    "$PGBIN/pg_restore" -j 2 -d "$db" "$WORK/dumps/$set-default"
    t1=$(now)
    record "$set" pg_restore_s "$(elapsed "$t0" "$t1")"
    echo "   pg_restore -j2 run $run: $(elapsed "$t0" "$t1") s" >&2
    psql_q -d postgres -c "DROP DATABASE $db"
  done
  rm -rf "$WORK/dumps/$set-default" "$WORK/store/$set-$RUNS"
}

START=$(now)
build_main
if [[ $ONLY != main ]]; then build_orders; fi
if [[ $ONLY != orders ]]; then bench_set main; fi
if [[ $ONLY != main ]]; then bench_set orders; fi
ELAPSED=$(elapsed "$START" "$(now)")

echo
echo "pgvault bench: scale $SCALE, $RUNS runs each (median), engine args: ${ENGINE_ARGS[*]:-defaults}"
echo "host: $(nproc) cores, load average at end: $(cut -d' ' -f1-3 /proc/loadavg), total $(printf '%.0f' "$ELAPSED") s"
python3 - "$RESULTS" <<'PY'
import statistics, sys
from collections import defaultdict
values = defaultdict(list)
for line in open(sys.argv[1]):
    s, m, v = line.rstrip("\n").split("\t")
    values[(s, m)].append(float(v))
def med(s, m):
    v = values.get((s, m))
    return statistics.median(v) if v else None
def peak(s, m):
    v = values.get((s, m))
    return max(v) if v else None
rows = []
def ratio(name, s, num, den, target, fmt="{:.2f}x"):
    a, b = med(s, num), med(s, den)
    if a is None or b is None:
        return
    r = a / b
    rows.append((s, name, f"{a:.2f}", f"{b:.2f}", fmt.format(r), f"<= {target:.2f}x", "ok" if r <= target else "MISSED"))
for s in ("main", "orders"):
    if med(s, "pgvault_backup_s") is None:
        continue
    ratio("backup vs pg_dump -j2 (gzip)", s, "pgvault_backup_s", "pg_dump_default_s", 0.35)
    ratio("backup vs pg_dump -j2 -Z0", s, "pgvault_backup_s", "pg_dump_Z0_s", 1.15)
    ratio("restore vs pg_restore -j2", s, "pgvault_restore_s", "pg_restore_s", 0.9 if s == "main" else 0.75)
    a, b = med(s, "pgvault_bytes"), med(s, "pg_dump_default_bytes")
    rows.append((s, "stored bytes vs pg_dump -Fd (MiB)", f"{a/2**20:.1f}", f"{b/2**20:.1f}", f"{a/b:.2f}x", "<= 1.00x", "ok" if a <= b else "MISSED"))
    for op in ("backup", "restore"):
        r = peak(s, f"pgvault_{op}_rss_kib") / 1024
        rows.append((s, f"pgvault {op} peak RSS (MiB)", f"{r:.1f}", "-", "-", "<= 256 MiB", "ok" if r <= 256 else "MISSED"))
print()
print("| set | measure (seconds unless noted) | pgvault | baseline | ratio | target | |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    print("| " + " | ".join(r) + " |")
print()
print("| set | database size (MiB) | pgvault backup s | pg_dump gzip s | pg_dump -Z0 s | pgvault restore s | pg_restore s |")
print("|---|---|---|---|---|---|---|")
for s in ("main", "orders"):
    if med(s, "pgvault_backup_s") is None:
        continue
    cells = [f"{med(s, 'db_bytes')/2**20:.0f}"] + [f"{med(s, m):.2f}" for m in ("pgvault_backup_s", "pg_dump_default_s", "pg_dump_Z0_s", "pgvault_restore_s", "pg_restore_s")]
    print(f"| {s} | " + " | ".join(cells) + " |")
PY
