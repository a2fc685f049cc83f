#!/usr/bin/env bash
# pgvault vs pg_dump/pg_restore on a private PostgreSQL 15.
#
# Starts a throwaway cluster (as the postgres OS user, on a free loopback
# port, in a temporary directory, tuned for bulk loads: the same server for
# every tool), builds the data sets, then times (median of --runs):
#   backup:  pgvault  vs  pg_dump -Fd -j 2  and  pg_dump -Fd -j 2 -Z0
#   restore: pgvault (ANALYZE included)  vs  pg_restore -j 2 (of the default
#            pg_dump -Fd dump; it does no ANALYZE)
# plus stored bytes, pgvault's peak RSS (/usr/bin/time -v) and CPU seconds
# (user + system of the pgvault process) per GB of COPY data, on
#   "main":   pgbench scale 50×S, a 3M×S-row orders table, 500 small tables
#   "orders": the orders table alone
#   "jsonb":  pgbench scale 20×S and a 2M×S-row jsonb-heavy events table
#             (btree indexes only: a GIN build is single-threaded in PG 15 and
#             took ~7 minutes for either tool, hiding everything else)
#   "small":  5,000 tables of a few rows each (250 schemas × 20 tables)
# and prints a table with the ratios against the targets, and the stage
# split of every pgvault run (where its connections' time went).
#
# --sweep 1,2,4,8,16 instead runs only pgvault's backup and restore of each
# set at each connection count and prints wall time, client CPU seconds per
# GB and the stage split per count: on a machine with fewer cores than
# connections, CPU/GB and the per-connection split must stay flat.
#
# Usage: bench/run.sh [--scale S] [--runs N] [--connections N] [--zstd-level L]
#                     [--only SET[,SET…]] [--sweep N,N,…] [--keep] [--workdir DIR]
# --workdir keeps the cluster and data sets in DIR and reuses them next time
# (for tuning runs; the data sets are built once, whatever --scale says);
# otherwise everything lives in a temporary directory removed at the end.
# Every run's JSON (engine summary, stages, CPU, RSS) is kept in
# <workdir>/runs.jsonl. Run from anywhere inside the repository; needs root
# (runs the server as postgres) and the PostgreSQL 15 binaries (apt install
# postgresql-15). PGVAULT_BENCH=/path/to/pgvault-bench uses that binary
# instead of building one.
set -euo pipefail

SCALE=1
RUNS=3
ONLY=""
SWEEP=""
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
    --sweep) SWEEP="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --workdir) WORKDIR="$2"; KEEP=1; shift 2 ;;
    -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
if [[ -z $ONLY ]]; then
  if [[ -n $SWEEP ]]; then ONLY=main; else ONLY=main,orders,jsonb,small; fi
fi
IFS=, read -r -a SETS <<<"$ONLY"
for set in "${SETS[@]}"; do
  case "$set" in main|orders|jsonb|small) ;; *) echo "unknown set $set (main, orders, jsonb, small)" >&2; exit 2 ;; esac
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

if [[ -n ${PGVAULT_BENCH:-} ]]; then
  BENCH=$PGVAULT_BENCH # a pgvault-bench built elsewhere (e.g. an older commit, for before/after)
else
  echo "== building pgvault-bench (release)" >&2
  (cd "$REPO" && cargo build --release -q -p pgvault-bench)
  TARGET_DIR=$(cd "$REPO" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  BENCH="$TARGET_DIR/release/pgvault-bench"
fi

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
# The "small" set's 5,000 tables are locked by one transaction of each tool.
if ! grep -q '^max_locks_per_transaction' "$WORK/data/postgresql.conf"; then
  echo "max_locks_per_transaction = 256" >>"$WORK/data/postgresql.conf"
fi
as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/server.log" -o "-p $PORT" -w start >/dev/null

psql_q() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
RESULTS="$WORK/results.tsv"
RUNS_JSON="$WORK/runs.jsonl"
: >"$RESULTS"
: >"$RUNS_JSON"
# record <set> <measure> <value>
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RESULTS"; }
du_bytes() { du -sb "$1" | cut -f1; }
rss_kib() { awk -F': ' '/Maximum resident set size/ {print $2}' "$1"; }
quiet_server() { psql_q -d postgres -c 'CHECKPOINT' >/dev/null; sync; }
# keep_run <set> <mode> <json file>: appends the run's JSON with its set,
# mode (ratios or sweep) and peak RSS to runs.jsonl.
keep_run() {
  python3 - "$1" "$2" "$3" "$(rss_kib "$WORK/time.txt")" >>"$RUNS_JSON" <<'PY'
import json, sys
s, mode, path, rss = sys.argv[1:5]
run = json.load(open(path))
run.update({"set": s, "mode": mode, "peak_rss_kib": int(rss)})
print(json.dumps(run))
PY
}

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
  build_main
  echo "== building data set orders (the orders table alone)" >&2
  psql_q -d postgres -c 'CREATE DATABASE orders TEMPLATE main'
  psql_q -d orders <<'SQL'
DROP TABLE pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history;
DO $$ BEGIN FOR i IN 1..500 LOOP EXECUTE format('DROP TABLE small_%s', i); END LOOP; END $$;
VACUUM (FREEZE, ANALYZE);
SQL
}

build_jsonb() {
  local accounts_scale=$((20 * SCALE)) events=$((2000000 * SCALE))
  if have_db jsonb; then echo "== reusing data set jsonb" >&2; return; fi
  echo "== building data set jsonb (pgbench -s $accounts_scale, $events jsonb events)" >&2
  "$PGBIN/createdb" jsonb
  "$PGBIN/pgbench" -i -q -s "$accounts_scale" jsonb 2>&1 | tail -1 >&2
  psql_q -d jsonb <<SQL
DO \$\$ BEGIN PERFORM setseed(0.17); END \$\$;
CREATE TABLE events (
  id bigint PRIMARY KEY, tenant_id int NOT NULL, kind text NOT NULL,
  created_at timestamptz NOT NULL, doc jsonb NOT NULL
);
INSERT INTO events
SELECT g, (random() * 5000)::int,
       (ARRAY['view', 'click', 'cart', 'order', 'refund'])[1 + floor(random() * 5)::int],
       timestamptz '2022-01-01' + random() * interval '900 days',
       jsonb_build_object(
         'user', jsonb_build_object('id', (random() * 1000000)::int, 'name', md5(g::text),
                                    'email', substr(md5((g * 7)::text), 1, 12) || '@example.com',
                                    'tags', jsonb_build_array('t' || (random() * 100)::int, 't' || (random() * 100)::int)),
         'items', jsonb_build_array(
                    jsonb_build_object('sku', 'SKU-' || (random() * 50000)::int, 'qty', 1 + (random() * 9)::int,
                                       'price', round((random() * 500)::numeric, 2)),
                    jsonb_build_object('sku', 'SKU-' || (random() * 50000)::int, 'qty', 1 + (random() * 9)::int,
                                       'price', round((random() * 500)::numeric, 2))),
         'session', jsonb_build_object('id', md5((g * 13)::text), 'ip', '10.' || (g % 256) || '.' || (g % 199) || '.' || (g % 97),
                                       'agent', (ARRAY['firefox', 'chrome', 'safari', 'curl'])[1 + floor(random() * 4)::int]),
         'amount', round((random() * 1000)::numeric, 2), 'gift', random() < 0.1,
         'note', substr(md5(random()::text) || md5(random()::text), 1, 10 + (random() * 50)::int))
FROM generate_series(1, $events) g;
CREATE INDEX events_tenant_created ON events (tenant_id, created_at);
CREATE INDEX events_user ON events (((doc -> 'user' ->> 'id')::int));
VACUUM (FREEZE, ANALYZE);
SQL
}

build_small() {
  if have_db small; then echo "== reusing data set small" >&2; return; fi
  echo "== building data set small (5,000 tables of 3 to 7 rows: 250 schemas × 20 tables)" >&2
  "$PGBIN/createdb" small
  for s in $(seq 1 250); do
    cat <<SQL
DO \$\$
BEGIN
  EXECUTE 'CREATE SCHEMA tenant_$s';
  FOR i IN 1..20 LOOP
    EXECUTE format('CREATE TABLE tenant_$s.t_%s (id int PRIMARY KEY, name text NOT NULL, v numeric, at timestamptz DEFAULT now())', i);
    EXECUTE format('INSERT INTO tenant_$s.t_%s (id, name, v) SELECT g, md5((g * %s)::text), g * 1.5 FROM generate_series(1, %s) g', i, i, 3 + (i + $s) % 5);
  END LOOP;
END
\$\$;
SQL
  done | psql_q -d small
  psql_q -d small -c 'VACUUM (FREEZE, ANALYZE)'
}

# pgvault_backup <set> <prefix> <mode>: one timed pgvault backup.
pgvault_backup() {
  local set=$1 prefix=$2 mode=$3 t0 t1
  rm -rf "$WORK/store/$prefix"
  quiet_server
  t0=$(now)
  /usr/bin/time -v -o "$WORK/time.txt" "$BENCH" backup --source "dbname=$set" \
    --datastore "file://$WORK/store" --prefix "$prefix" "${ENGINE_ARGS[@]}" "${RUN_ARGS[@]}" >"$WORK/backup.json"
  t1=$(now)
  LAST_S=$(elapsed "$t0" "$t1")
  keep_run "$set" "$mode" "$WORK/backup.json"
}

# pgvault_restore <set> <prefix> <database> <mode>: one timed pgvault restore.
pgvault_restore() {
  local set=$1 prefix=$2 db=$3 mode=$4 t0 t1
  psql_q -d postgres -c "DROP DATABASE IF EXISTS $db"
  quiet_server
  t0=$(now)
  /usr/bin/time -v -o "$WORK/time.txt" "$BENCH" restore --source "dbname=postgres" \
    --datastore "file://$WORK/store" --prefix "$prefix" --target-database "$db" "${ENGINE_ARGS[@]}" "${RUN_ARGS[@]}" >"$WORK/restore.json"
  t1=$(now)
  LAST_S=$(elapsed "$t0" "$t1")
  keep_run "$set" "$mode" "$WORK/restore.json"
  psql_q -d postgres -c "DROP DATABASE $db"
}

bench_set() {
  local set=$1 run t0 t1 dir db
  RUN_ARGS=()
  echo "== data set $set: $(psql_q -d "$set" -Atc "SELECT pg_size_pretty(pg_database_size(current_database()))")" >&2
  record "$set" db_bytes "$(psql_q -d "$set" -Atc 'SELECT pg_database_size(current_database())')"
  for run in $(seq 1 "$RUNS"); do
    dir="$WORK/store/$set-$run"
    pgvault_backup "$set" "$set-$run" ratios
    record "$set" pgvault_backup_s "$LAST_S"
    record "$set" pgvault_backup_rss_kib "$(rss_kib "$WORK/time.txt")"
    record "$set" pgvault_bytes "$(du_bytes "$dir")"
    echo "   pgvault backup run $run: $LAST_S s" >&2

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
    pgvault_restore "$set" "$set-$RUNS" "${set}_pgvault_$run" ratios
    record "$set" pgvault_restore_s "$LAST_S"
    record "$set" pgvault_restore_rss_kib "$(rss_kib "$WORK/time.txt")"
    echo "   pgvault restore run $run: $LAST_S s" >&2

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

# sweep_set <set>: pgvault backup and restore at each connection count.
sweep_set() {
  local set=$1 c run
  IFS=, read -r -a COUNTS <<<"$SWEEP"
  for c in "${COUNTS[@]}"; do
    RUN_ARGS=(--connections "$c")
    for run in $(seq 1 "$RUNS"); do
      pgvault_backup "$set" "$set-sweep-$c" sweep
      echo "   $set: backup with $c connections, run $run: $LAST_S s" >&2
    done
    for run in $(seq 1 "$RUNS"); do
      pgvault_restore "$set" "$set-sweep-$c" "${set}_sweep_$run" sweep
      echo "   $set: restore with $c connections, run $run: $LAST_S s" >&2
    done
    rm -rf "$WORK/store/$set-sweep-$c"
  done
}

START=$(now)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for set in "${SETS[@]}"; do "build_$set"; done
for set in "${SETS[@]}"; do
  if [[ -n $SWEEP ]]; then sweep_set "$set"; else bench_set "$set"; fi
done
ELAPSED=$(elapsed "$START" "$(now)")

echo
echo "pgvault bench: scale $SCALE, $RUNS runs each (median), engine args: ${ENGINE_ARGS[*]:-defaults}"
echo "host: $(nproc) cores, load average at start: $LOAD_START, at end: $(cut -d' ' -f1-3 /proc/loadavg), total $(printf '%.0f' "$ELAPSED") s"
python3 "$REPO/bench/tabulate.py" "$RESULTS" "$RUNS_JSON"
