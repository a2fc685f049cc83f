#!/usr/bin/env python3
"""Tables of bench/run.sh: ratios against pg_dump/pg_restore with their
targets, sizes, and pgvault's stage split (where its connections' time
went) per set and, for --sweep, per connection count.

Usage: tabulate.py RESULTS.tsv RUNS.jsonl

Stage columns are seconds per data connection (lane seconds / the data
connections that ran), so they add up to about the wall time of the data
phase; "conns" is the connections asked for, with the data connections
that ran when fewer did (a server's grant). "schema dump s" is the schema
dump's own time, beside the data connections and divided by nothing.
"cpu" columns are thread CPU seconds per GB of COPY data; "CPU s/GB" is the
whole pgvault process (user + system) per GB of COPY data.

Runs recorded before side tasks existed counted the schema dump as one
more lane with a "schema_dump" stage: that lane is taken off the count and
its stage read as the schema dump (its connect and upload waits stay with
the data connections).
"""
import json
import statistics
import sys
from collections import defaultdict

TARGETS = {
    # set: (backup vs gzip, backup vs -Z0, restore vs pg_restore)
    "main": (0.33, 1.00, 0.85),
    "orders": (0.33, 1.00, 0.75),
    "jsonb": (0.33, 1.00, 0.85),
    "small": (0.50, None, 0.50),
}
SETS = ("main", "orders", "jsonb", "small")
BACKUP_LANES = ["copy_out_wait", "copy_out_receive", "compress", "upload_wait", "connect", "idle"]
RESTORE_LANES = ["download_wait", "decompress", "copy_in_wait", "index_build", "post_data", "analyze", "connect", "idle"]
BACKUP_PHASES = ["connect", "data", "sequences", "final flush"]
RESTORE_PHASES = ["schema", "pre-data", "data and indexes", "analyze", "final flush"]
CPU = {"backup": "compress_hash", "restore": "decompress_verify"}


def med(values):
    return statistics.median(values) if values else None


def data_lanes(stages):
    """Data connections that ran (older runs counted the schema dump too)."""
    if "side" in stages:
        return stages["lanes"]
    return stages["lanes"] - (1 if "schema_dump" in stages["lane"] else 0)


def schema_dump_seconds(stages):
    if "side" in stages:
        return stages["side"].get("schema_dump", 0.0)
    return stages["lane"].get("schema_dump", 0.0)


def load(results_path, runs_path):
    values = defaultdict(list)
    for line in open(results_path):
        s, m, v = line.rstrip("\n").split("\t")
        values[(s, m)].append(float(v))
    runs = [json.loads(line) for line in open(runs_path) if line.strip()]
    return values, runs


def ratios(values):
    rows = []

    def m(s, name):
        return med(values.get((s, name), []))

    def ratio(s, name, num, den, target):
        a, b = m(s, num), m(s, den)
        if a is None or b is None or target is None:
            return
        r = a / b
        rows.append((s, name, f"{a:.2f}", f"{b:.2f}", f"{r:.2f}x", f"<= {target:.2f}x", "ok" if r <= target else "MISSED"))

    for s in SETS:
        if m(s, "pgvault_backup_s") is None:
            continue
        gzip, z0, restore = TARGETS[s]
        ratio(s, "backup vs pg_dump -j2 (gzip)", "pgvault_backup_s", "pg_dump_default_s", gzip)
        ratio(s, "backup vs pg_dump -j2 -Z0", "pgvault_backup_s", "pg_dump_Z0_s", z0)
        ratio(s, "restore (with ANALYZE) vs pg_restore -j2", "pgvault_restore_s", "pg_restore_s", restore)
        a, b = m(s, "pgvault_bytes"), m(s, "pg_dump_default_bytes")
        rows.append((s, "stored bytes vs pg_dump -Fd (MiB)", f"{a/2**20:.1f}", f"{b/2**20:.1f}", f"{a/b:.2f}x", "<= 1.00x", "ok" if a <= b else "MISSED"))
        for op in ("backup", "restore"):
            r = max(values[(s, f"pgvault_{op}_rss_kib")]) / 1024
            rows.append((s, f"pgvault {op} peak RSS (MiB)", f"{r:.1f}", "-", "-", "<= 256 MiB", "ok" if r <= 256 else "MISSED"))
    if not rows:
        return
    print()
    print("| set | measure (seconds unless noted) | pgvault | baseline | ratio | target | |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print()
    print("| set | database size (MiB) | pgvault backup s | pg_dump gzip s | pg_dump -Z0 s | pgvault restore s | pg_restore s |")
    print("|---|---|---|---|---|---|---|")
    for s in SETS:
        if m(s, "pgvault_backup_s") is None:
            continue
        cells = [f"{m(s, 'db_bytes')/2**20:.0f}"] + [f"{m(s, k):.2f}" for k in ("pgvault_backup_s", "pg_dump_default_s", "pg_dump_Z0_s", "pgvault_restore_s", "pg_restore_s")]
        print(f"| {s} | " + " | ".join(cells) + " |")


def run_row(runs, op):
    """Median over runs of every measure of one (set, op, connections) group."""
    lanes_order = BACKUP_LANES if op == "backup" else RESTORE_LANES
    phases_order = BACKUP_PHASES if op == "backup" else RESTORE_PHASES
    gb = [max(r["raw_bytes"], 1) / 1e9 for r in runs]
    row = {
        "wall": med([r["wall_seconds"] for r in runs]),
        "cpu_gb": med([(r["cpu_user_seconds"] + r["cpu_system_seconds"]) / g for r, g in zip(runs, gb)]),
        "rss": max(r["peak_rss_kib"] for r in runs) / 1024,
        "gb": med(gb),
        "lanes": med([data_lanes(r["stages"]) for r in runs]),
        "schema dump": med([schema_dump_seconds(r["stages"]) for r in runs]),
    }
    for stage in lanes_order:
        row[stage] = med([r["stages"]["lane"].get(stage, 0.0) / max(data_lanes(r["stages"]), 1) for r in runs])
    for phase in phases_order:
        row["phase " + phase] = med([r["stages"]["phases"].get(phase, 0.0) for r in runs])
    cpu = CPU[op]
    row["cpu " + cpu] = med([r["stages"]["cpu"].get(cpu, {}).get("busy", 0.0) / g for r, g in zip(runs, gb)])
    row["off_pool"] = max(sum(c.get("off_pool", 0) for c in r["stages"]["cpu"].values()) for r in runs)
    row["pool"] = max(r["stages"].get("pool_peak_busy", 0) for r in runs), max(r["stages"].get("pool_threads", 0) for r in runs)
    return row, lanes_order, phases_order


def split_tables(runs, mode):
    groups = defaultdict(list)
    for r in runs:
        if r.get("mode") == mode:
            groups[(r["set"], r["operation"], r["connections"])].append(r)
    for s in SETS:
        for op in ("backup", "restore"):
            keys = sorted(k for k in groups if k[0] == s and k[1] == op)
            if not keys:
                continue
            title = "sweep" if mode == "sweep" else "stage split"
            print()
            print(f"{title}: {s} {op} (stage columns: seconds per data connection; cpu: thread CPU s/GB; {med([run_row(groups[k], op)[0]['gb'] for k in keys]):.2f} GB of COPY data)")
            header = None
            for k in keys:
                row, lanes, phases = run_row(groups[k], op)
                side = ["schema dump s"] if op == "backup" else []
                cols = ["conns", "wall s", "CPU s/GB", "peak RSS MiB"] + lanes + side + ["cpu " + CPU[op], "off-pool jobs", "pool busy/threads"] + ["phase " + p for p in phases]
                if header is None:
                    header = cols
                    print("| " + " | ".join(cols) + " |")
                    print("|" + "---|" * len(cols))
                conns = str(k[2]) if row["lanes"] == k[2] else f"{k[2]} ({row['lanes']:g} ran)"
                cells = [conns, f"{row['wall']:.2f}", f"{row['cpu_gb']:.2f}", f"{row['rss']:.0f}"]
                cells += [f"{row[st]:.2f}" for st in lanes]
                cells += [f"{row['schema dump']:.2f}" for _ in side]
                cells += [f"{row['cpu ' + CPU[op]]:.2f}", str(row["off_pool"]), f"{row['pool'][0]}/{row['pool'][1]}"]
                cells += [f"{row['phase ' + p]:.2f}" for p in phases]
                print("| " + " | ".join(cells) + " |")


def main():
    values, runs = load(sys.argv[1], sys.argv[2])
    ratios(values)
    split_tables(runs, "ratios")
    split_tables(runs, "sweep")


if __name__ == "__main__":
    main()
