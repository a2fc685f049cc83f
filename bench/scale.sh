#!/usr/bin/env bash
# The coordinator scale benchmark (issue 6, item 5): a real `pgvault
# coordinator` (release build) on a private PostgreSQL 15 (state) and a
# private RabbitMQ node, both on free loopback ports in a temporary directory.
#
#  1. Burst: seeds --instances protected backup instances (default 10,000;
#     vaults, policies, servers and the secret through the CLI, the instance
#     rows by SQL exactly as a successful configure leaves them) whose policy
#     fires in the same slot, moves the coordinator's clock
#     (coordinator.clock_offset_file, in a pgvault built with
#     --features test-clock) to 3 s before the slot, and times from
#     the slot instant until every job exists and every task is in RabbitMQ
#     (outbox empty, queue depth = instances). Target: < 30 s. No worker runs.
#  2. History: adds --jobs job rows (default 1,000,000: two years, 20 vaults,
#     every operation and state, restore targets for restores; generate_series),
#     ANALYZE, then times ListJobs over gRPC (bench/src/scale, a tonic client)
#     for the shapes `pgvault job list` sends, --calls each (default 300).
#     Target: p95 < 100 ms.
# Prints markdown tables like bench/run.sh. Takes about 5 minutes plus the
# release build.
#
# Usage: bench/scale.sh [--instances N] [--jobs N] [--calls N] [--keep]
# --keep leaves the directory (logs, data) instead of removing it; the
# servers are stopped either way.
# Needs root (runs PostgreSQL as the postgres OS user), the PostgreSQL 15
# binaries (apt-get install postgresql-15) and RabbitMQ (scripts/test.sh
# installs it; or apt-get install rabbitmq-server).
set -euo pipefail

INSTANCES=10000
JOBS=1000000
CALLS=300
KEEP=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --instances) INSTANCES="$2"; shift 2 ;;
    --jobs) JOBS="$2"; shift 2 ;;
    --calls) CALLS="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
VAULTS=20
SERVERS=10

REPO=$(cd "$(dirname "$0")/.." && pwd)
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
RABBIT=${PGVAULT_RABBITMQ_SERVER:-/usr/lib/rabbitmq/bin/rabbitmq-server}
for tool in initdb pg_ctl psql; do
  [[ -x "$PGBIN/$tool" ]] || { echo "missing $PGBIN/$tool: apt-get install postgresql-15" >&2; exit 1; }
done
[[ -x $RABBIT ]] || { echo "missing $RABBIT: run scripts/test.sh or apt-get install rabbitmq-server" >&2; exit 1; }
EPMD=$(command -v epmd || true)
[[ -n $EPMD ]] || { echo "missing epmd (part of erlang-base, installed with rabbitmq-server)" >&2; exit 1; }

echo "== building pgvault and pgvault-scale (release)" >&2
# test-clock: the coordinator.clock_offset_file this script moves time with.
(cd "$REPO" && cargo build --release -q -p pgvault -p pgvault-bench --features pgvault/test-clock)
TARGET_DIR=$(cd "$REPO" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
PGVAULT="$TARGET_DIR/release/pgvault"
SCALE="$TARGET_DIR/release/pgvault-scale"

WORK=$(mktemp -d /tmp/pgvault-scale.XXXXXX)
chmod 755 "$WORK"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PG_PORT=$(free_port)
AMQP_PORT=$(free_port)
DIST_PORT=$(free_port)
EPMD_PORT=$(free_port)
API_PORT=$(free_port)
as_pg() { runuser -u postgres -- "$@"; }
COORD_PID=""
RABBIT_PID=""
EPMD_PID=""

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
cleanup() {
  stop_group "$COORD_PID"
  stop_group "$RABBIT_PID"
  stop_group "$EPMD_PID"
  as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -m fast stop >/dev/null 2>&1 || true
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

echo "== starting PostgreSQL 15 on 127.0.0.1:$PG_PORT in $WORK" >&2
mkdir -p "$WORK/data" && chown postgres: "$WORK/data"
as_pg "$PGBIN/initdb" -D "$WORK/data" -U postgres -E UTF8 --locale=C.UTF-8 --auth=trust >/dev/null
cat >>"$WORK/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK/data'
max_connections = 100
shared_buffers = 1GB
work_mem = 16MB
maintenance_work_mem = 512MB
max_wal_size = 1GB
jit = off
EOF
as_pg "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/data/server.log" -o "-p $PG_PORT" -w start >/dev/null
DB_URL="postgresql://postgres@127.0.0.1:$PG_PORT/postgres"
psql_q() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres "$@"; }

echo "== starting RabbitMQ on 127.0.0.1:$AMQP_PORT" >&2
mkdir -p "$WORK/rabbitmq"
echo '[].' >"$WORK/rabbitmq/enabled_plugins"
setsid "$EPMD" -port "$EPMD_PORT" -address 127.0.0.1 >"$WORK/epmd.log" 2>&1 &
EPMD_PID=$!
HOME="$WORK/rabbitmq" ERL_EPMD_PORT=$EPMD_PORT \
RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=$AMQP_PORT RABBITMQ_DIST_PORT=$DIST_PORT \
RABBITMQ_NODENAME="pgvaultscale$AMQP_PORT@localhost" RABBITMQ_MNESIA_BASE="$WORK/rabbitmq/mnesia" \
RABBITMQ_LOG_BASE="$WORK/rabbitmq/log" RABBITMQ_ENABLED_PLUGINS_FILE="$WORK/rabbitmq/enabled_plugins" \
RABBITMQ_CONFIG_FILE="$WORK/rabbitmq/rabbitmq" RABBITMQ_ADVANCED_CONFIG_FILE="$WORK/rabbitmq/advanced.config" \
  setsid "$RABBIT" >"$WORK/rabbitmq/server.log" 2>&1 &
RABBIT_PID=$!
wait_port "$AMQP_PORT" RabbitMQ "$RABBIT_PID" "$WORK/rabbitmq/server.log"
AMQP_URL="amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f"

echo "== starting the coordinator on 127.0.0.1:$API_PORT" >&2
TOKEN="pgv_scale-bench-$(python3 -c 'import secrets; print(secrets.token_hex(12))')"
OFFSET_FILE="$WORK/clock-offset"
echo 0 >"$OFFSET_FILE"
PGVAULT_COORDINATOR__DATABASE_URL="$DB_URL" \
PGVAULT_COORDINATOR__MASTER_KEY="$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')" \
PGVAULT_COORDINATOR__BOOTSTRAP_TOKEN="$TOKEN" \
PGVAULT_COORDINATOR__CLOCK_OFFSET_FILE="$OFFSET_FILE" \
RUST_LOG=info \
  setsid "$PGVAULT" coordinator --listen "127.0.0.1:$API_PORT" --amqp-url "$AMQP_URL" >"$WORK/coordinator.log" 2>&1 &
COORD_PID=$!
wait_port "$API_PORT" coordinator "$COORD_PID" "$WORK/coordinator.log"
export PGVAULT_ENDPOINT="http://127.0.0.1:$API_PORT" PGVAULT_TOKEN="$TOKEN"
cli() { "$PGVAULT" "$@" >/dev/null || { echo "pgvault $* failed" >&2; exit 1; }; }

# The slot: the policy runs daily at a time about an hour from now (UTC), so
# the first slot after the instances' schedule start (now) is that one; the
# one before (a day earlier) predates them and is never run or skipped.
read -r AT SLOT_UNIX < <(python3 -c 'import datetime as d; t = (d.datetime.now(d.timezone.utc) + d.timedelta(minutes=65)).replace(second=0, microsecond=0); print(t.strftime("%H:%M"), int(t.timestamp()))')

echo "== seeding $VAULTS vaults, $SERVERS servers, $INSTANCES protected instances (policy daily at $AT UTC)" >&2
mkdir -p "$WORK/store"
printf '%s' "postgresql://backup:bench-password@127.0.0.1:5432/postgres" | "$PGVAULT" secret put bench-secret >/dev/null
for s in $(seq -f '%02g' 1 "$SERVERS"); do
  cli server register "s$s" --host 127.0.0.1 --port 5432 --region local
done
for v in $(seq -f '%02g' 1 "$VAULTS"); do
  cli vault create "v$v" --region local --datastore "file://$WORK/store"
  cli policy create daily --vault "v$v" --weekdays mon,tue,wed,thu,fri,sat,sun --at "$AT"
  cli secret grant bench-secret --vault "v$v"
done
# What ConfigureBackup leaves for a row that passed its checks: the
# instance, PROTECTION_CONFIGURED, scheduled from now, the stored secret.
psql_q <<SQL
INSERT INTO backup_instances (id, vault_id, server_id, database, policy_id, secret_id,
                              protection_state, schedule_since, create_time)
SELECT gen_random_uuid(), format('v%s', lpad((1 + g % $VAULTS)::text, 2, '0')),
       format('s%s', lpad((1 + g % $SERVERS)::text, 2, '0')), format('app_%s', g), 'daily',
       'bench-secret', 'PROTECTION_CONFIGURED', now(), now()
  FROM generate_series(1, $INSTANCES) g;
ANALYZE;
SQL

echo "== moving the coordinator's clock to 3 s before the slot" >&2
OFFSET=$(python3 -c "import time; print(int($SLOT_UNIX - time.time()) - 3)")
echo "$OFFSET" >"$OFFSET_FILE"
SLOT_REAL=$((SLOT_UNIX - OFFSET))
"$SCALE" wait-published --database-url "$DB_URL" --amqp-url "$AMQP_URL" \
  --expect "$INSTANCES" --slot-unix "$SLOT_REAL" --timeout 300 >"$WORK/burst.json"
echo "   $(cat "$WORK/burst.json")" >&2
# Back to the real clock: the slot is far away again, nothing else fires.
echo 0 >"$OFFSET_FILE"

echo "== seeding $JOBS job rows over two years" >&2
T0=$(date +%s)
psql_q <<SQL
CREATE TEMP TABLE inst AS
  SELECT row_number() OVER (ORDER BY id) AS n, id, vault_id, server_id, database FROM backup_instances;
CREATE TEMP TABLE seed AS
  SELECT g, random() AS r_op, random() AS r_state, random() AS r_size,
         now() - random() * interval '730 days' AS created,
         1 + (g % $INSTANCES) AS n
    FROM generate_series(1, $JOBS) g;
CREATE TEMP TABLE shaped AS
  SELECT gen_random_uuid() AS id, s.*, i.id AS instance_id, i.vault_id, i.server_id, i.database,
         CASE WHEN r_op < 0.80 THEN 'SCHEDULED_BACKUP' WHEN r_op < 0.88 THEN 'ON_DEMAND_BACKUP'
              WHEN r_op < 0.92 THEN 'RESTORE'
              WHEN r_op < 0.97 THEN 'TIER_MOVE' WHEN r_op < 0.985 THEN 'REHYDRATE' ELSE 'DELETE' END AS operation,
         CASE WHEN created > now() - interval '10 minutes' THEN
                CASE WHEN r_state < 0.5 THEN 'QUEUED' ELSE 'IN_PROGRESS' END
              WHEN r_state < 0.92 THEN 'COMPLETED' WHEN r_state < 0.95 THEN 'COMPLETED_WITH_WARNINGS'
              WHEN r_state < 0.985 THEN 'FAILED' ELSE 'CANCELLED' END AS state
    FROM seed s JOIN inst i USING (n);
INSERT INTO jobs (id, operation, state, vault_id, backup_instance_id, recovery_point_id, produced_point_id,
                  retention_rule, lifecycle_stage, rehydrate_days, attempt, lease_owner,
                  bytes_done, rows_done, chunks_done, chunks_total, phase,
                  error_code, error_message, error_action, create_time, start_time, end_time, update_time)
SELECT id, operation, state, vault_id, instance_id,
       CASE WHEN operation NOT IN ('SCHEDULED_BACKUP', 'ON_DEMAND_BACKUP') THEN gen_random_uuid() END,
       CASE WHEN operation IN ('SCHEDULED_BACKUP', 'ON_DEMAND_BACKUP')
             AND state IN ('COMPLETED', 'COMPLETED_WITH_WARNINGS') THEN gen_random_uuid() END,
       CASE WHEN operation = 'ON_DEMAND_BACKUP' THEN 'DEFAULT' END,
       CASE operation WHEN 'TIER_MOVE' THEN 'STANDARD_EXPIRY' WHEN 'REHYDRATE' THEN 'REHYDRATE'
                      WHEN 'DELETE' THEN 'ARCHIVE_EXPIRY' END,
       CASE WHEN operation = 'REHYDRATE' THEN 15 END,
       CASE WHEN state = 'FAILED' THEN 3 ELSE 1 END,
       CASE WHEN state <> 'QUEUED' THEN 'worker-' || (g % 8) || ':' || (1000 + g % 50) END,
       (r_size * 5e9)::bigint, (r_size * 2e7)::bigint, 40, 40, CASE WHEN state = 'QUEUED' THEN '' ELSE 'done' END,
       CASE WHEN state = 'FAILED' THEN 'SourceUnreachable' WHEN state = 'CANCELLED' THEN 'Cancelled' END,
       CASE WHEN state = 'FAILED' THEN 'cannot connect to ' || server_id || ': connection refused'
            WHEN state = 'CANCELLED' THEN 'cancelled by the user' END,
       CASE WHEN state = 'FAILED' THEN 'Check that the server is up and reachable from the workers, then retry the job'
            WHEN state = 'CANCELLED' THEN 'None: retry the job to run it after all' END,
       created,
       CASE WHEN state <> 'QUEUED' THEN created + interval '2 seconds' END,
       CASE WHEN state NOT IN ('QUEUED', 'IN_PROGRESS') THEN created + r_size * interval '40 minutes' END,
       created + r_size * interval '40 minutes'
  FROM shaped;
INSERT INTO restore_targets (job_id, kind, target_server_id, target_database, target_secret_id)
SELECT id, 'DATABASE', server_id, database || '_restored', 'bench-secret' FROM shaped WHERE operation = 'RESTORE';
ANALYZE jobs;
ANALYZE restore_targets;
SQL
echo "   seeded in $(($(date +%s) - T0)) s; jobs: $(psql_q -Atc 'SELECT count(*) FROM jobs'), table + indexes: $(psql_q -Atc "SELECT pg_size_pretty(pg_total_relation_size('jobs'))")" >&2

read -r VAULT INSTANCE < <(psql_q -Atc "SELECT vault_id, id FROM backup_instances ORDER BY id LIMIT 1" | tr '|' ' ')
echo "== timing ListJobs ($CALLS calls per shape; vault $VAULT, instance $INSTANCE)" >&2
"$SCALE" list-jobs --endpoint "$PGVAULT_ENDPOINT" --vault "vaults/$VAULT" \
  --instance "vaults/$VAULT/backupInstances/$INSTANCE" --calls "$CALLS" >"$WORK/list.tsv"
TOTAL_JOBS=$(psql_q -Atc 'SELECT count(*) FROM jobs')

echo
echo "pgvault coordinator scale bench: $INSTANCES instances in one slot; $TOTAL_JOBS job rows"
echo "host: $(nproc) cores, load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$WORK/burst.json" "$WORK/list.tsv" "$INSTANCES" "$TOTAL_JOBS" <<'PY'
import json, sys
burst = json.load(open(sys.argv[1]))
n, total = int(sys.argv[3]), int(sys.argv[4])
print()
print(f"| burst: {n:,} instances due in one slot | seconds after the slot | target | |")
print("|---|---|---|---|")
print(f"| all {n:,} jobs created (slot runs, jobs, outbox rows) | {burst['jobs_created_s']:.2f} | | |")
print(f"| all {n:,} tasks confirmed by RabbitMQ (outbox empty) | {burst['outbox_empty_s']:.2f} | | |")
ok = burst['queued_s'] < 30
print(f"| all {n:,} tasks in the queue (depth {burst['queue_depth']:,}) | {burst['queued_s']:.2f} | < 30 s | {'ok' if ok else 'MISSED'} |")
print()
print("Seconds count from the slot instant, so they include the wait for the first")
print("scheduler pass after it (coordinator.scheduler_interval_seconds: 5, the default).")
print()
print(f"| ListJobs over gRPC, {total:,} job rows | calls | p50 ms | p95 ms | p99 ms | rows/page | target | |")
print("|---|---|---|---|---|---|---|---|")
for line in open(sys.argv[2]):
    shape, calls, p50, p95, p99, rows = line.rstrip("\n").split("\t")
    ok = float(p95) < 100
    print(f"| {shape} | {calls} | {p50} | {p95} | {p99} | {rows} | p95 < 100 ms | {'ok' if ok else 'MISSED'} |")
PY
