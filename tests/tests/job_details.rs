//! Job details end to end through `pgvault up` (coordinator, in-process
//! worker with 1 MiB chunks, local-disk datastore): a database with several
//! tables, one big enough to be split into several chunks, is backed up and
//! restored; `pgvault job show --output json` lists every table of each job
//! done with the source's row counts and chunk counts, and the attempt that
//! ran it, and where the job's time went (the engine's stage split); the
//! human `job show` prints the Attempts and Tables tables and that split.

use std::collections::BTreeMap;
use std::process::Output;

use pgvault_e2e::fixtures;
use pgvault_e2e::pgvault::PgvaultUp;
use pgvault_localpg::TempCluster;
use serde_json::Value;

const SOURCE_PASSWORD: &str = "details-src-pw";

/// Four tables: `public.events` (~7 MiB, several chunks), two small ones
/// and an empty one.
const SHOP_SQL: &str = r#"
CREATE SCHEMA sales;
CREATE TABLE public.events (id bigint PRIMARY KEY, payload text NOT NULL);
INSERT INTO public.events SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 40000) g;
CREATE TABLE public.customers (id serial PRIMARY KEY, name text NOT NULL);
INSERT INTO public.customers (name) SELECT 'customer ' || g FROM generate_series(1, 300) g;
CREATE TABLE sales.orders (id serial PRIMARY KEY, customer_id integer NOT NULL REFERENCES public.customers (id), amount numeric(10, 2) NOT NULL);
INSERT INTO sales.orders (customer_id, amount) SELECT 1 + g % 300, g % 1000 FROM generate_series(1, 1500) g;
CREATE TABLE public.empty_table (id integer);
"#;

fn ok(output: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "`pgvault {what}` failed ({}):\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Row count of every table of `database`, by `schema.table`.
async fn source_rows(source: &TempCluster, database: &str) -> BTreeMap<String, u64> {
    let client = source.connect(database).await.expect("connect to source");
    let mut counts = BTreeMap::new();
    for table in [
        "public.events",
        "public.customers",
        "sales.orders",
        "public.empty_table",
    ] {
        let row = client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .expect("count rows");
        counts.insert(table.to_string(), row.get::<_, i64>(0) as u64);
    }
    counts
}

/// `job show NAME --output json`, with its sub-tasks by name.
fn show(up: &PgvaultUp, name: &str) -> (Value, BTreeMap<String, Value>) {
    let job = json(&ok(
        up.cli(&["job", "show", name, "--output", "json"], None)
            .expect("run pgvault"),
        "job show --output json",
    ));
    let tables = job["sub_tasks"]
        .as_array()
        .unwrap_or_else(|| panic!("sub_tasks listed: {job}"))
        .iter()
        .map(|t| (t["name"].as_str().expect("name").to_string(), t.clone()))
        .collect();
    (job, tables)
}

/// Every table is done with the source's rows and all its chunks; the one
/// attempt completed on a named worker. Returns chunks per table.
fn assert_all_tables_done(
    job: &Value,
    tables: &BTreeMap<String, Value>,
    rows: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    assert_eq!(
        tables.keys().collect::<Vec<_>>(),
        rows.keys().collect::<Vec<_>>(),
        "one sub-task per table: {job}"
    );
    assert_eq!(job["sub_tasks_delta"], false);
    let mut chunks = BTreeMap::new();
    for (name, table) in tables {
        assert_eq!(table["state"], "SUB_TASK_DONE", "{name}: {table}");
        assert_eq!(table["rows"].as_u64(), Some(rows[name]), "{name}: {table}");
        assert_eq!(
            table["chunks_done"], table["chunks_total"],
            "{name}: {table}"
        );
        assert!(
            !table["start_time"].is_null() && !table["end_time"].is_null(),
            "{table}"
        );
        chunks.insert(name.clone(), table["chunks_total"].as_u64().unwrap_or(0));
    }
    let attempts = job["attempts"].as_array().expect("attempts listed");
    assert_eq!(attempts.len(), 1, "{job}");
    assert_eq!(attempts[0]["outcome"], "ATTEMPT_COMPLETED", "{job}");
    assert_eq!(attempts[0]["attempt"], 1);
    assert!(
        !attempts[0]["worker"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
    );
    assert!(!attempts[0]["end_time"].is_null());
    chunks
}

/// A completed job carries the split its worker's engine measured: the COPY
/// bytes it moved, its data connections, phases that add up to its wall
/// time, and (a backup) the schema dump beside the data connections.
fn assert_split(job: &Value, what: &str) {
    let split = &job["stage_split"];
    assert!(
        split["raw_bytes"].as_u64().unwrap_or(0) > 1024 * 1024,
        "{what}: {split}"
    );
    assert!(
        split["connections"].as_u64().unwrap_or(0) >= 1,
        "{what}: {split}"
    );
    let phases: f64 = split["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .map(|p| p["seconds"].as_f64().expect("seconds"))
        .sum();
    let wall = split["wall_seconds"].as_f64().expect("wall_seconds");
    assert!(
        wall > 0.0 && (phases - wall).abs() < 0.01,
        "{what}: phases add up to the wall time: {split}"
    );
    assert!(
        !split["connection_stages"]
            .as_array()
            .expect("connection_stages")
            .is_empty(),
        "{what}: {split}"
    );
    let side: Vec<&str> = split["side_tasks"]
        .as_array()
        .expect("side_tasks")
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    if what == "backup" {
        assert_eq!(side, ["schema_dump"], "{what}: {split}");
    }
    assert!(
        !split["connection_stages"]
            .as_array()
            .expect("connection_stages")
            .iter()
            .any(|s| s["name"] == "schema_dump"),
        "{what}: the schema dump is no data connection: {split}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn job_show_lists_every_table_of_a_backup_and_a_restore_with_the_source_row_counts() {
    let source = TempCluster::start(SOURCE_PASSWORD).expect("start source PostgreSQL");
    fixtures::create_database(&source, "shop")
        .await
        .expect("create shop");
    source
        .connect("shop")
        .await
        .expect("connect to shop")
        .batch_execute(SHOP_SQL)
        .await
        .expect("load shop fixture");
    let rows = source_rows(&source, "shop").await;
    let up = tokio::task::spawn_blocking(PgvaultUp::start)
        .await
        .unwrap()
        .expect("pgvault up");
    let cli = |args: &[&str]| up.cli(args, None).expect("run pgvault");
    up.create_demo_vault("weekly", "mon", source.port());
    let instance = up.protect_demo_database("weekly", SOURCE_PASSWORD, "shop");

    // Backup: every table dumped, the big one in several chunks.
    let backup = json(&ok(
        cli(&["backup", "now", &instance, "--wait", "--output", "json"]),
        "backup now --wait",
    ));
    assert_eq!(backup["state"], "COMPLETED", "{backup}");
    // `--wait --output json` ends with the whole job, every table included.
    assert_eq!(
        backup["sub_tasks"].as_array().map(Vec::len),
        Some(rows.len())
    );
    assert_eq!(backup["sub_tasks_delta"], false);
    let backup_name = backup["name"].as_str().expect("job name").to_string();
    let (job, tables) = show(&up, &backup_name);
    let chunks = assert_all_tables_done(&job, &tables, &rows);
    assert!(
        chunks["public.events"] > 1,
        "the big table is split: {chunks:?}"
    );
    assert_eq!(chunks["public.customers"], 1, "{chunks:?}");
    let events = &tables["public.events"];
    assert!(
        events["raw_bytes"].as_u64().unwrap_or(0) > 1024 * 1024,
        "{events}"
    );
    assert!(events["stored_bytes"].as_u64().unwrap_or(0) > 0, "{events}");
    assert_split(&job, "backup");

    // The human view: details, then the Attempts and Tables tables and
    // where the time went.
    let text = ok(cli(&["job", "show", &backup_name]), "job show");
    for expected in [
        "ATTEMPTS",
        "TABLES",
        "WHERE THE TIME WENT",
        "of COPY data in",
        "data connections",
        "Beside the data connections: schema dump",
        "completed",
        "public.events",
        "sales.orders",
    ] {
        assert!(
            text.contains(expected),
            "`job show` lacks {expected}:\n{text}"
        );
    }

    // Restore into a new database: every table loaded, indexed and done.
    let points = json(&ok(
        cli(&["recovery-point", "list", &instance, "--output", "json"]),
        "recovery-point list",
    ));
    let point = points["recovery_points"][0]["name"]
        .as_str()
        .expect("a recovery point")
        .to_string();
    let restore = json(&ok(
        cli(&[
            "restore",
            "database",
            &point,
            "--target-database",
            "shop_copy",
            "--wait",
            "--output",
            "json",
        ]),
        "restore database --wait",
    ));
    assert_eq!(restore["state"], "COMPLETED", "{restore}");
    let (job, tables) = show(&up, restore["name"].as_str().expect("job name"));
    let restored_chunks = assert_all_tables_done(&job, &tables, &rows);
    assert_eq!(restored_chunks, chunks, "a restore loads every chunk");
    assert_split(&job, "restore");
    assert_eq!(source_rows(&source, "shop_copy").await, rows);
}
