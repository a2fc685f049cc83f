#!/usr/bin/env bash
# Fan-out benchmark (issue 14, part 5): one backup and one restore of the
# same database through a real fleet — RabbitMQ, a state PostgreSQL 15, a
# coordinator and K workers (release build of `pgvault`), all on loopback in
# a temporary directory — with K = 1, 2, 3 (--workers), against
# `pg_dump -Fd -j 2` / `pg_restore -j 2` of the same data in the same run.
#
# For each K: starts K workers, times `backup now --workers K --wait` (K = 1:
# a plain single-worker backup) and `restore database … --workers K --wait`
# into a fresh database, then stops them. Records per run:
#   wall seconds; CPU seconds per GB of COPY data of the workers (with their
#   pg_dump/pg_restore children), the coordinator, the source PostgreSQL
#   and the state PostgreSQL (utime+stime+cutime+cstime from /proc/PID/stat
#   of each process tree, before and after); chunk count and COPY bytes per
#   chunk (the job's fan-out throughput, or its progress for K = 1); worker
#   →coordinator calls per chunk and their mean state-database time
#   (pg_stat_statements on the state database: claims, chunk heartbeats,
#   reports, lists, job heartbeats); bytes stored per COPY byte; the
#   workers' peak RSS (VmHWM).
# Prints a markdown table and writes it to bench/results/fanout-<date>.md.
# The scaling model these numbers feed is bench/FANOUT.md.
#
# Data (the shapes of bench/run.sh's "main" set, scaled down): pgbench at
# scale 8×S, an orders table of 400,000×S rows with two indexes, 100 small
# tables; S = 5 (the default) is about 1 GB of COPY data and the whole script
# takes under 10 minutes on 2 idle cores plus the release build.
#
# Until this build's `restore database` takes --workers, restores run on
# one worker (the table says so): the restore fan-out lands separately.
#
# Usage: bench/fanout.sh [--scale S] [--workers 1,2,3] [--chunk-mb M] [--keep]
# --chunk-mb sets the workers' worker.split_threshold_mb, the most COPY data
# per chunk object (default here 64, so ~1 GB makes enough chunks for three
# workers; the product's default is 256). --keep leaves the directory.
# Needs root (runs PostgreSQL as the postgres OS user), the PostgreSQL 15
# binaries with pg_stat_statements (apt-get install postgresql-15) and
# RabbitMQ (scripts/test.sh installs it). PGVAULT_BIN=/path/to/pgvault uses
# that binary instead of building one.
set -euo pipefail

SCALE=5
COUNTS=1,2,3
CHUNK_MB=64
KEEP=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --scale) SCALE="$2"; shift 2 ;;
    --workers) COUNTS="$2"; shift 2 ;;
    --chunk-mb) CHUNK_MB="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,36p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[[ $CHUNK_MB =~ ^[1-9][0-9]*$ ]] || { echo "--chunk-mb takes a whole number of MB ≥ 1, got $CHUNK_MB" >&2; exit 2; }
[[ $SCALE =~ ^[1-9][0-9]*$ ]] || { echo "--scale takes a whole number ≥ 1, got $SCALE" >&2; exit 2; }
IFS=, read -r -a WORKER_COUNTS <<<"$COUNTS"
for k in "${WORKER_COUNTS[@]}"; do
  [[ $k =~ ^[1-9]$ ]] || { echo "--workers takes counts 1-9 separated by commas, got $COUNTS" >&2; exit 2; }
done

REPO=$(cd "$(dirname "$0")/.." && pwd)
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
RABBIT=${PGVAULT_RABBITMQ_SERVER:-/usr/lib/rabbitmq/bin/rabbitmq-server}
for tool in initdb pg_ctl pg_dump pg_restore psql pgbench createdb; do
  [[ -x "$PGBIN/$tool" ]] || { echo "missing $PGBIN/$tool: apt-get install postgresql-15" >&2; exit 1; }
done
[[ -f "$(dirname "$PGBIN")/lib/pg_stat_statements.so" ]] || { echo "missing pg_stat_statements: apt-get install postgresql-15" >&2; exit 1; }
[[ -x $RABBIT ]] || { echo "missing $RABBIT: run scripts/test.sh or apt-get install rabbitmq-server" >&2; exit 1; }
EPMD=$(command -v epmd || true)
[[ -n $EPMD ]] || { echo "missing epmd (part of erlang-base, installed with rabbitmq-server)" >&2; exit 1; }

if [[ -n ${PGVAULT_BIN:-} ]]; then
  PGVAULT=$PGVAULT_BIN
else
  echo "== building pgvault (release)" >&2
  (cd "$REPO" && cargo build --release -q -p pgvault)
  TARGET_DIR=$(cd "$REPO" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  PGVAULT="$TARGET_DIR/release/pgvault"
fi

WORK=$(mktemp -d /tmp/pgvault-fanout.XXXXXX)
chmod 755 "$WORK"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
STATE_PORT=$(free_port)
SOURCE_PORT=$(free_port)
AMQP_PORT=$(free_port)
DIST_PORT=$(free_port)
EPMD_PORT=$(free_port)
API_PORT=$(free_port)
as_pg() { runuser -u postgres -- "$@"; }
COORD_PID=""
RABBIT_PID=""
EPMD_PID=""
WORKER_PIDS=()

# Stops a process group we started (each server runs in its own, via setsid).
stop_group() {
  local pid=$1 i
  [[ -n $pid ]] || return 0
  kill -TERM -- "-$pid" 2>/dev/null || return 0
  for i in $(seq 1 100); do
    kill -0 -- "-$pid" 2>/dev/null || return 0
    sleep 0.2
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
}
stop_workers() {
  local pid
  for pid in "${WORKER_PIDS[@]}"; do stop_group "$pid"; done
  WORKER_PIDS=()
}
cleanup() {
  stop_workers
  stop_group "$COORD_PID"
  stop_group "$RABBIT_PID"
  stop_group "$EPMD_PID"
  as_pg "$PGBIN/pg_ctl" -D "$WORK/state" -m fast stop >/dev/null 2>&1 || true
  as_pg "$PGBIN/pg_ctl" -D "$WORK/source" -m fast stop >/dev/null 2>&1 || true
  if [[ $KEEP == 0 ]]; then rm -rf "$WORK"; else echo "kept $WORK" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() { # <port> <what> <pid> <log>
  local i
  for i in $(seq 1 600); do
    if (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    if [[ -n $3 ]] && ! kill -0 "$3" 2>/dev/null; then
      echo "$2 exited; last lines of $4:" >&2; tail -20 "$4" >&2; exit 1
    fi
    sleep 0.2
  done
  echo "$2 did not listen on 127.0.0.1:$1 within 120 s; last lines of $4:" >&2; tail -20 "$4" >&2; exit 1
}

# start_pg <dir> <port> <extra settings>: a private PostgreSQL 15 cluster.
start_pg() {
  mkdir -p "$WORK/$1" && chown postgres: "$WORK/$1"
  as_pg "$PGBIN/initdb" -D "$WORK/$1" -U postgres -E UTF8 --locale=C.UTF-8 --auth=trust >/dev/null
  cat >>"$WORK/$1/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK/$1'
max_connections = 100
work_mem = 64MB
maintenance_work_mem = 512MB
max_wal_size = 8GB
checkpoint_timeout = 60min
max_parallel_maintenance_workers = 2
autovacuum = off
jit = off
$3
EOF
  as_pg "$PGBIN/pg_ctl" -D "$WORK/$1" -l "$WORK/$1/server.log" -o "-p $2" -w start >/dev/null
}

echo "== starting the state PostgreSQL on 127.0.0.1:$STATE_PORT and the source on $SOURCE_PORT in $WORK" >&2
start_pg state "$STATE_PORT" "shared_buffers = 256MB
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = all"
start_pg source "$SOURCE_PORT" "shared_buffers = 1GB"
STATE_URL="postgresql://postgres@127.0.0.1:$STATE_PORT/postgres"
state_q() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$STATE_PORT" -U postgres -d postgres "$@"; }
src_q() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$SOURCE_PORT" -U postgres "$@"; }
state_q -c 'CREATE EXTENSION pg_stat_statements' >/dev/null

echo "== starting RabbitMQ on 127.0.0.1:$AMQP_PORT" >&2
mkdir -p "$WORK/rabbitmq"
echo '[].' >"$WORK/rabbitmq/enabled_plugins"
setsid "$EPMD" -port "$EPMD_PORT" -address 127.0.0.1 >"$WORK/epmd.log" 2>&1 &
EPMD_PID=$!
HOME="$WORK/rabbitmq" ERL_EPMD_PORT=$EPMD_PORT \
RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=$AMQP_PORT RABBITMQ_DIST_PORT=$DIST_PORT \
RABBITMQ_NODENAME="pgvaultfanout$AMQP_PORT@localhost" RABBITMQ_MNESIA_BASE="$WORK/rabbitmq/mnesia" \
RABBITMQ_LOG_BASE="$WORK/rabbitmq/log" RABBITMQ_ENABLED_PLUGINS_FILE="$WORK/rabbitmq/enabled_plugins" \
RABBITMQ_CONFIG_FILE="$WORK/rabbitmq/rabbitmq" RABBITMQ_ADVANCED_CONFIG_FILE="$WORK/rabbitmq/advanced.config" \
  setsid "$RABBIT" >"$WORK/rabbitmq/server.log" 2>&1 &
RABBIT_PID=$!
wait_port "$AMQP_PORT" RabbitMQ "$RABBIT_PID" "$WORK/rabbitmq/server.log"
AMQP_URL="amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f"

echo "== starting the coordinator on 127.0.0.1:$API_PORT" >&2
TOKEN="pgv_fanout-bench-$(python3 -c 'import secrets; print(secrets.token_hex(12))')"
PGVAULT_COORDINATOR__DATABASE_URL="$STATE_URL" \
PGVAULT_COORDINATOR__MASTER_KEY="$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')" \
PGVAULT_COORDINATOR__BOOTSTRAP_TOKEN="$TOKEN" \
RUST_LOG=info \
  setsid "$PGVAULT" coordinator --listen "127.0.0.1:$API_PORT" --amqp-url "$AMQP_URL" >"$WORK/coordinator.log" 2>&1 &
COORD_PID=$!
wait_port "$API_PORT" coordinator "$COORD_PID" "$WORK/coordinator.log"
export PGVAULT_ENDPOINT="http://127.0.0.1:$API_PORT" PGVAULT_TOKEN="$TOKEN"
cli() { "$PGVAULT" "$@" >/dev/null || { echo "pgvault $* failed" >&2; exit 1; }; }

echo "== building the source database fan (pgbench -s $((8 * SCALE)), $((400000 * SCALE)) orders, 100 small tables)" >&2
"$PGBIN/createdb" -h 127.0.0.1 -p "$SOURCE_PORT" -U postgres fan
"$PGBIN/pgbench" -h 127.0.0.1 -p "$SOURCE_PORT" -U postgres -i -q -s "$((8 * SCALE))" fan 2>&1 | tail -1 >&2
src_q -d fan <<SQL
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
FROM generate_series(1, $((400000 * SCALE))) g;
CREATE INDEX orders_customer ON orders (customer_id);
CREATE INDEX orders_created ON orders (created_at);
DO \$\$
BEGIN
  FOR i IN 1..100 LOOP
    EXECUTE format('CREATE TABLE small_%s (id int PRIMARY KEY, name text NOT NULL, v numeric, at timestamptz DEFAULT now())', i);
    EXECUTE format('INSERT INTO small_%s (id, name, v) SELECT g, md5((g * %s)::text), g * 1.5 FROM generate_series(1, 100) g', i, i);
  END LOOP;
END
\$\$;
VACUUM (FREEZE, ANALYZE);
SQL
DB_BYTES=$(src_q -d fan -Atc 'SELECT pg_database_size(current_database())')
echo "   source database: $(src_q -d fan -Atc "SELECT pg_size_pretty(pg_database_size(current_database()))")" >&2

echo "== vault, policy, server, secret, protection" >&2
mkdir -p "$WORK/store"
cli vault create bench --region local --datastore "file://$WORK/store"
cli policy create daily --vault bench --weekdays sun --at 03:00 --retain P30D
cli server register src --host 127.0.0.1 --port "$SOURCE_PORT" --region local --max-connections 64
printf 'user=postgres password=unused' | "$PGVAULT" secret put src-admin >/dev/null
cli backup configure --vault bench --policy daily --secret src-admin --server src --database fan --assign-missing-permissions
INSTANCE=bench/src-fan

RESTORE_WORKERS=0
if "$PGVAULT" restore database --help 2>&1 | grep -q -- '--workers'; then RESTORE_WORKERS=1; fi

# Process-tree CPU seconds: utime+stime+cutime+cstime of each process whose
# ancestry reaches one of the given pids (exited children are in cutime of
# their parent once reaped).
tree_cpu() {
  python3 - "$@" <<'PY'
import os, sys
roots = {int(p) for p in sys.argv[1:]}
tick = os.sysconf("SC_CLK_TCK")
procs = {}
for d in os.listdir("/proc"):
    if not d.isdigit():
        continue
    try:
        stat = open(f"/proc/{d}/stat").read()
    except OSError:
        continue
    fields = stat[stat.rindex(")") + 2:].split()
    procs[int(d)] = (int(fields[1]), sum(int(f) for f in fields[11:15]))
def rooted(pid):
    seen = set()
    while pid in procs and pid not in seen:
        if pid in roots:
            return True
        seen.add(pid)
        pid = procs[pid][0]
    return False
print(f"{sum(cpu for pid, (_, cpu) in procs.items() if rooted(pid)) / tick:.2f}")
PY
}
postmaster() { head -1 "$WORK/$1/postmaster.pid"; }
SRC_PM=$(postmaster source)
STATE_PM=$(postmaster state)
peak_rss_mib() { # the largest VmHWM among the workers
  local pid best=0 kib
  for pid in "${WORKER_PIDS[@]}"; do
    kib=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    ((kib > best)) && best=$kib
  done
  echo $((best / 1024))
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

RESULTS="$WORK/results.jsonl"
: >"$RESULTS"
# CPU of every party at the start of a measured step.
cpu_before() {
  B_WORKERS=$(tree_cpu "${WORKER_PIDS[@]:-0}")
  B_COORD=$(tree_cpu "$COORD_PID")
  B_SRC=$(tree_cpu "$SRC_PM")
  B_STATE=$(tree_cpu "$STATE_PM")
  state_q -Atc 'SELECT pg_stat_statements_reset()' >/dev/null
  T0=$(now)
}
# record <op> <tool> <K> <job json or -> <client cpu s> <restore fan-out 0|1>
# (STORED: bytes the step wrote to the datastore or the dump directory)
STORED=0
record() {
  local t1 calls
  t1=$(now)
  calls=$(state_q -At <<'SQL'
SELECT json_object_agg(kind, json_build_object('calls', calls, 'ms', ms)) FROM (
  SELECT CASE
           WHEN query LIKE 'UPDATE chunk_tasks c SET state = %takes = c.takes + 1%' THEN 'claim'
           WHEN query LIKE 'UPDATE chunk_tasks c SET lease_expires_at = now()%' THEN 'chunk_heartbeat'
           WHEN query LIKE 'UPDATE chunk_tasks c SET state = %object_path = $4%' THEN 'complete'
           WHEN query LIKE 'UPDATE chunk_tasks c SET state = %last_error = $4%' THEN 'fail'
           WHEN query LIKE 'INSERT INTO chunk_tasks%' THEN 'offer'
           WHEN query LIKE 'SELECT chunk_key, state%attempt = $2 ORDER BY position%' THEN 'list'
           WHEN query LIKE 'UPDATE jobs SET lease_expires_at = now() + make_interval%' THEN 'job_heartbeat'
           ELSE 'other' END AS kind,
         sum(calls)::bigint AS calls, round(sum(total_exec_time)::numeric, 1) AS ms
    FROM pg_stat_statements GROUP BY 1) k
SQL
)
  python3 - "$1" "$2" "$3" "$4" "$5" "$6" "$(elapsed "$T0" "$t1")" \
    "$(awk -v a="$B_WORKERS" -v b="$(tree_cpu "${WORKER_PIDS[@]:-0}")" 'BEGIN { printf "%.2f", b - a }')" \
    "$(awk -v a="$B_COORD" -v b="$(tree_cpu "$COORD_PID")" 'BEGIN { printf "%.2f", b - a }')" \
    "$(awk -v a="$B_SRC" -v b="$(tree_cpu "$SRC_PM")" 'BEGIN { printf "%.2f", b - a }')" \
    "$(awk -v a="$B_STATE" -v b="$(tree_cpu "$STATE_PM")" 'BEGIN { printf "%.2f", b - a }')" \
    "${calls:-null}" "$(peak_rss_mib)" "$STORED" >>"$RESULTS" <<'PY'
import json, sys
op, tool, k, job_file, client, fanned, wall, workers, coord, src, state, calls, rss, stored = sys.argv[1:15]
job = json.load(open(job_file)) if job_file != "-" else {}
t = job.get("throughput") or {}
p = job.get("progress") or {}
print(json.dumps({
    "op": op, "tool": tool, "k": int(k), "wall_s": float(wall), "restore_fanned": fanned == "1",
    "cpu_s": {"workers": float(workers), "coordinator": float(coord), "source_pg": float(src),
              "state_pg": float(state), "client": float(client)},
    "chunks": t.get("chunks_total") or p.get("chunks_total") or 0,
    "copy_bytes": t.get("bytes_done") or p.get("bytes_done") or 0,
    "fleet_rate": t.get("bytes_per_second"),
    "per_worker": {w["worker_id"]: w["bytes_done"] for w in t.get("workers", [])},
    "calls": json.loads(calls) if calls not in ("", "null") else {},
    "peak_rss_mib": int(rss) if tool == "pgvault" else None,
    "state": job.get("state"),
    "stored_bytes": int(stored),
}))
PY
}

start_workers() { # <K>
  local n
  for n in $(seq 1 "$1"); do
    PGVAULT_WORKER__TOKEN="$TOKEN" RUST_LOG=info PGVAULT_WORKER__SPLIT_THRESHOLD_MB="$CHUNK_MB" \
      setsid "$PGVAULT" worker --coordinator "$PGVAULT_ENDPOINT" --amqp-url "$AMQP_URL" \
      >"$WORK/worker-$1-$n.log" 2>&1 &
    WORKER_PIDS+=($!)
  done
  sleep 2
  for n in "${WORKER_PIDS[@]}"; do
    kill -0 "$n" 2>/dev/null || { echo "a worker exited; see $WORK/worker-$1-*.log" >&2; tail -20 "$WORK"/worker-"$1"-*.log >&2; exit 1; }
  done
}
quiet() { src_q -d postgres -c CHECKPOINT >/dev/null; sync; }
job_ok() { # <job json> <what>
  python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if j.get("state") == "COMPLETED" else 1)' "$1" \
    || { echo "$2 did not complete:" >&2; cat "$1" >&2; exit 1; }
}

for k in "${WORKER_COUNTS[@]}"; do
  echo "== K = $k workers" >&2
  start_workers "$k"
  fan_args=()
  ((k > 1)) && fan_args=(--workers "$k")
  quiet
  stored0=$(du -sb "$WORK/store" | cut -f1)
  cpu_before
  "$PGVAULT" --output json backup now "$INSTANCE" "${fan_args[@]}" --wait >"$WORK/backup-$k.json"
  STORED=$(($(du -sb "$WORK/store" | cut -f1) - stored0))
  record backup pgvault "$k" "$WORK/backup-$k.json" 0 0
  STORED=0
  job_ok "$WORK/backup-$k.json" "backup with $k workers"
  echo "   backup: $(tail -1 "$RESULTS" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["wall_s"], "s,", r["chunks"], "chunks")')" >&2

  restore_args=()
  fanned=0
  if ((k > 1)) && [[ $RESTORE_WORKERS == 1 ]]; then restore_args=(--workers "$k"); fanned=1; fi
  quiet
  cpu_before
  "$PGVAULT" --output json restore database --instance "$INSTANCE" --latest \
    --target-database "fan_r$k" "${restore_args[@]}" --wait >"$WORK/restore-$k.json"
  record restore pgvault "$k" "$WORK/restore-$k.json" 0 "$fanned"
  job_ok "$WORK/restore-$k.json" "restore with $k workers"
  echo "   restore: $(tail -1 "$RESULTS" | python3 -c 'import json,sys; print(json.load(sys.stdin)["wall_s"], "s")')" >&2
  src_q -d postgres -c "DROP DATABASE fan_r$k" >/dev/null
  stop_workers
done

echo "== baselines: pg_dump -Fd -j 2, pg_restore -j 2" >&2
quiet
cpu_before
/usr/bin/time -f '%U %S' -o "$WORK/time.txt" "$PGBIN/pg_dump" -h 127.0.0.1 -p "$SOURCE_PORT" -U postgres -Fd -j 2 -f "$WORK/dump" fan
DUMP_BYTES=$(du -sb "$WORK/dump" | cut -f1)
STORED=$DUMP_BYTES
record backup pg_dump 0 - "$(awk '{print $1 + $2}' "$WORK/time.txt")" 0
STORED=0
quiet
"$PGBIN/createdb" -h 127.0.0.1 -p "$SOURCE_PORT" -U postgres fan_pg_restore
cpu_before
/usr/bin/time -f '%U %S' -o "$WORK/time.txt" "$PGBIN/pg_restore" -h 127.0.0.1 -p "$SOURCE_PORT" -U postgres -j 2 -d fan_pg_restore "$WORK/dump"
record restore pg_restore 0 - "$(awk '{print $1 + $2}' "$WORK/time.txt")" 0

mkdir -p "$REPO/bench/results"
OUT="$REPO/bench/results/fanout-$(date -u +%Y-%m-%d).md"
python3 - "$RESULTS" "$SCALE" "$DB_BYTES" "$DUMP_BYTES" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" "$CHUNK_MB" >"$OUT" <<'PY'
import json, sys
path, scale, db_bytes, dump_bytes, cores, load, chunk_mb = sys.argv[1:8]
runs = [json.loads(l) for l in open(path) if l.strip()]
gb = max((r["copy_bytes"] for r in runs if r["tool"] == "pgvault" and r["op"] == "backup"), default=0) / 1e9
chunk_calls = ("claim", "chunk_heartbeat", "complete", "fail", "offer", "list")
print(f"# Fan-out benchmark, scale {scale}")
print()
print(f"Source database {int(db_bytes) / 1e9:.2f} GB on disk, {gb:.2f} GB of COPY data; "
      f"pg_dump -Fd dump {int(dump_bytes) / 1e9:.2f} GB. Host: {cores} cores, load average at the end {load}. "
      f"Chunk size: worker.split_threshold_mb = {chunk_mb}.")
print()
print("CPU columns are CPU seconds per GB of COPY data (user + system, process trees). "
      "Calls/chunk: worker→coordinator chunk calls (claims, chunk heartbeats, reports, "
      "offer, list) per chunk, counted by pg_stat_statements on the state database; "
      "ms/call: their mean state-database execution time.")
print()
print("| op | tool | K | wall s | MB/s | workers/client CPU s/GB | coordinator | source PG | state PG | chunks | MB/chunk | calls/chunk | ms/call | job heartbeats | stored/COPY | peak worker RSS MiB |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in runs:
    per = lambda s: f"{s / gb:.1f}" if gb else "-"
    c = r["cpu_s"]
    own = c["workers"] if r["tool"] == "pgvault" else c["client"]
    chunks = r["chunks"]
    calls = sum(r["calls"].get(k, {}).get("calls", 0) for k in chunk_calls)
    ms = sum(r["calls"].get(k, {}).get("ms", 0) for k in chunk_calls)
    tool = r["tool"]
    if r["op"] == "restore" and tool == "pgvault" and r["k"] > 1 and not r["restore_fanned"]:
        tool += " (one worker: no restore --workers in this build)"
    print("| " + " | ".join([
        r["op"], tool, str(r["k"] or "-"), f"{r['wall_s']:.1f}",
        f"{gb * 1000 / r['wall_s']:.0f}" if gb else "-",
        per(own), per(c["coordinator"]), per(c["source_pg"]), per(c["state_pg"]),
        str(chunks or "-"),
        f"{r['copy_bytes'] / chunks / 1e6:.1f}" if chunks and r["copy_bytes"] else "-",
        f"{calls / chunks:.1f}" if chunks and calls else "-",
        f"{ms / calls:.2f}" if calls else "-",
        str(r["calls"].get("job_heartbeat", {}).get("calls", "-")),
        f"{r['stored_bytes'] / (gb * 1e9):.2f}" if r.get("stored_bytes") and gb else "-",
        str(r["peak_rss_mib"]) if r["peak_rss_mib"] is not None else "-",
    ]) + " |")
print()
fleet = [r for r in runs if r["per_worker"]]
for r in fleet:
    share = ", ".join(f"{w.split(':')[-1]} {b / 1e6:.0f} MB" for w, b in r["per_worker"].items())
    print(f"- {r['op']} K={r['k']}: fleet {r['fleet_rate'] / 1e6:.0f} MB/s over the chunk phase; COPY bytes per worker (pid): {share}")
PY
echo
cat "$OUT"
echo
echo "written to $OUT" >&2
