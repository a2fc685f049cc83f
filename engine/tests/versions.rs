//! Every PostgreSQL major a fleet runs, over real servers (see
//! `support::servers`): the mixed fixture backed up on 12, 13, 14, 16, 17
//! and 18 restores identical on the same major; 13 → 17 and 15 → 18
//! restores are identical (the upgrade path); a 17 point is refused by a
//! 15 server before anything is created there. Each server is dumped with
//! the lowest tool major at least its own (15's tools for 12–15, 18's for
//! 16–18). Big tables split into ctid ranges from 14 on (TID range scans),
//! by integer primary key ranges on 12 and 13.

use crate::support;

use pgvault_engine::ErrorCode;
use pgvault_engine::manifest::ChunkEntry;
use sha2::Digest;
use support::*;

/// The mixed fixture as PostgreSQL `major` accepts it: row triggers on
/// partitioned tables came with 13.
fn fixture_for(major: u32) -> String {
    const PARTITIONED_ROW_TRIGGER: &str = "CREATE TRIGGER refuse_parent_insert BEFORE INSERT ON app.parent FOR EACH ROW EXECUTE FUNCTION app.refuse();";
    assert!(MIXED_FIXTURE.contains(PARTITIONED_ROW_TRIGGER));
    if major >= 13 {
        MIXED_FIXTURE.to_string()
    } else {
        MIXED_FIXTURE.replace(PARTITIONED_ROW_TRIGGER, "")
    }
}

/// Backs the fixture up on `from`, restores it on a fresh `to` server and
/// proves the copy identical (schema text by the 18 tools, data).
async fn round_trip(from: u32, to: u32) {
    let source = server(from);
    add_database(&source, "Shop DB", &fixture_for(from)).await;
    let options = version_options();
    let point = back_up(&source, "Shop DB", &options).await;
    assert!(
        point
            .summary
            .server_version
            .starts_with(&format!("{from}.")),
        "{from}: {}",
        point.summary.server_version
    );
    assert_eq!(
        point.manifest().server_version_num / 10_000,
        i32::try_from(from).unwrap()
    );

    let destination = server(to);
    point
        .restore(&destination, "copy", None, &options)
        .await
        .unwrap_or_else(|e| panic!("restore of a PostgreSQL {from} point into {to}: {e}"));
    let tools = tools_18();
    let (mut original, mut copy) = (
        schema_text_by(&tools, &source, "Shop DB"),
        schema_text_by(&tools, &destination, "copy"),
    );
    if from < 16 && to >= 16 {
        // PostgreSQL 16 prints a one-table view's columns unqualified
        // (`SELECT id` for `SELECT everything.id`): the same view.
        original = original.replace("everything.", "");
        copy = copy.replace("everything.", "");
    }
    assert_eq!(original, copy, "schema of the {from} → {to} copy");
    assert_eq!(
        data_fingerprint(&source, "Shop DB").await,
        data_fingerprint(&destination, "copy").await,
        "data of the {from} → {to} copy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_12_round_trips_identical() {
    round_trip(12, 12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_13_round_trips_identical() {
    round_trip(13, 13).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_14_round_trips_identical() {
    round_trip(14, 14).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_16_round_trips_identical() {
    round_trip(16, 16).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_17_round_trips_identical() {
    round_trip(17, 17).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_18_round_trips_identical() {
    round_trip(18, 18).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_13_point_restores_identical_into_17() {
    round_trip(13, 17).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_15_point_restores_identical_into_18() {
    round_trip(15, 18).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_17_point_is_refused_by_a_15_server_before_anything_is_created() {
    let source = server(17);
    add_database(
        &source,
        "app",
        "CREATE TABLE t (id int); INSERT INTO t VALUES (1);",
    )
    .await;
    let options = version_options();
    let point = back_up(&source, "app", &options).await;
    let version = point.summary.server_version.clone();

    let older = server(15);
    let error = point
        .restore(&older, "copy", None, &options)
        .await
        .expect_err("a 17 point must not restore into 15");
    assert_eq!(error.code, ErrorCode::UserErrorRestoreTargetTooOld);
    assert_eq!(
        error.message,
        format!(
            "the recovery point is from PostgreSQL 17 ({version}) and the target server runs \
             PostgreSQL 15: a recovery point restores only into the same or a newer major; \
             restore into a server running PostgreSQL 17 or newer"
        )
    );
    assert!(!database_exists(&older, "copy").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_newer_than_every_tool_set_names_both_versions_and_the_fix() {
    // Only the machine's 15 tools (no 18 set configured): an 18 server cannot be dumped.
    let source = server(18);
    add_database(&source, "app", "CREATE TABLE t (id int);").await;
    let options = pgvault_engine::EngineOptions {
        connections: 2,
        ..pgvault_engine::EngineOptions::default()
    };
    let error = backup_error(&target(&source, "app"), &options).await;
    assert_eq!(error.code, ErrorCode::UserErrorServerVersionUnsupported);
    assert!(
        error
            .message
            .starts_with("server is PostgreSQL 18; the newest pg_dump found is "),
        "{}",
        error.message
    );
    assert!(
        error.message.ends_with(
            "install postgresql-client-18 or list its bin directory in worker.pg_bin_dirs"
        ),
        "{}",
        error.message
    );
}

/// The chunks of a keyed and an unkeyed table of about 1.6 MB each (big
/// enough not to be bundled), backed up with a split threshold of 256 KiB
/// and restored identical.
async fn chunks_of_big_tables(major: u32) -> (Vec<ChunkEntry>, Vec<ChunkEntry>) {
    let source = server(major);
    add_database(
        &source,
        "app",
        "CREATE TABLE keyed (id int PRIMARY KEY, pad text); \
         INSERT INTO keyed SELECT g, repeat('x', 500) FROM generate_series(1, 3000) g; \
         DELETE FROM keyed WHERE id BETWEEN 100 AND 150; \
         CREATE TABLE unkeyed (id int, pad text); \
         INSERT INTO unkeyed SELECT g, repeat('y', 500) FROM generate_series(1, 3000) g;",
    )
    .await;
    let options = pgvault_engine::EngineOptions {
        split_threshold_bytes: 256 * 1024,
        ..version_options()
    };
    let point = back_up(&source, "app", &options).await;
    let copy = server(major);
    point
        .restore(&copy, "copy", None, &options)
        .await
        .expect("restore");
    assert_eq!(
        data_fingerprint(&source, "app").await,
        data_fingerprint(&copy, "copy").await
    );
    let manifest = point.manifest();
    let chunks = |name: &str| {
        let table = manifest.tables.iter().find(|t| t.name == name).unwrap();
        table.chunks.clone()
    };
    (chunks("keyed"), chunks("unkeyed"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_tables_split_by_ctid_from_14_and_by_integer_key_on_13() {
    let (keyed, unkeyed) = chunks_of_big_tables(14).await;
    assert!(keyed.len() > 1 && unkeyed.len() > 1);
    assert!(keyed.iter().all(|c| c.key_range.is_none()));
    assert_eq!(keyed.last().unwrap().end_page, None);

    let (keyed, unkeyed) = chunks_of_big_tables(13).await;
    assert!(keyed.len() > 1, "{keyed:?}");
    let first = keyed.first().unwrap().key_range.clone().unwrap();
    let last = keyed.last().unwrap().key_range.clone().unwrap();
    assert_eq!((first.column.as_str(), first.start), ("id", None));
    assert_eq!(last.end, None);
    assert_eq!(keyed.iter().map(|c| c.rows).sum::<u64>(), 2949);
    assert_eq!(unkeyed.len(), 1, "no integer key: one stream");
}

/// Replaces `point`'s schema archive with `pg_dump --schema-only -Fc` of
/// `tools` (as the engine writes it) and records `dump_tools_major` in
/// its manifest.
fn redump_schema(
    point: &Point,
    tools: &std::path::Path,
    source: &pgvault_localpg::TempCluster,
    database: &str,
    dump_tools_major: Option<u32>,
) {
    let output = std::process::Command::new(tools.join("pg_dump"))
        .env("PGPASSWORD", source.password())
        .args([
            "-h",
            source.host(),
            "-p",
            &source.port().to_string(),
            "-U",
            source.user(),
        ])
        .args(["--schema-only", "--format=custom"])
        .arg(format!("--dbname=dbname='{database}'"))
        .output()
        .expect("run pg_dump");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut manifest = point.manifest();
    std::fs::write(point.object_path(&manifest.schema.path), &output.stdout).unwrap();
    manifest.schema.size = output.stdout.len() as u64;
    manifest.schema.sha256 = hex::encode(sha2::Sha256::digest(&output.stdout));
    manifest.dump_tools_major = dump_tools_major;
    std::fs::write(point.object_path("manifest.json"), manifest.to_json()).unwrap();
}

/// A worker whose only tools are newer than the server (here 18's for a 15
/// server) writes a schema archive that an older `pg_restore` cannot read.
/// The machine's 15 tools always serve a 15 server in these tests, so the
/// point such a worker writes is made by replacing the schema archive with
/// 18's `pg_dump`'s and recording 18 in the manifest, as the engine does.
/// Restored into 15 with 15's and 18's tools at hand, the 18 set is chosen
/// (as a database and as a SQL script); with 15's alone the restore is
/// refused before anything is created, naming the archive's major and the
/// fix; a manifest that recorded no major is read as the source's (15),
/// whose `pg_restore` stops at the archive's header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_15_point_whose_archive_18_tools_wrote_restores_into_15_with_18_tools() {
    let source = server(15);
    add_database(&source, "Shop DB", &fixture_for(15)).await;
    let options = version_options();
    let point = back_up(&source, "Shop DB", &options).await;
    assert_eq!(
        point.manifest().dump_tools_major,
        Some(15),
        "15's tools dump a 15 server"
    );

    // An older manifest (no major recorded) is read as the source's: 15.
    redump_schema(&point, &tools_18(), &source, "Shop DB", None);
    let older = server(15);
    let error = point
        .restore(&older, "copy", None, &options)
        .await
        .expect_err("15's pg_restore cannot read an 18 archive");
    assert!(error.message.contains("unsupported version"), "{error}");

    redump_schema(&point, &tools_18(), &source, "Shop DB", Some(18));
    let only_15 = pgvault_engine::EngineOptions {
        connections: 2,
        ..pgvault_engine::EngineOptions::default()
    };
    let fresh = server(15);
    let error = point
        .restore(&fresh, "copy", None, &only_15)
        .await
        .expect_err("no pg_restore reads the archive");
    assert_eq!(error.code, ErrorCode::UserErrorServerVersionUnsupported);
    assert!(
        error.message.starts_with(
            "the recovery point's schema archive was written by pg_dump 18 (its server runs \
             PostgreSQL 15) and only pg_restore 18 or newer reads it; the newest pg_restore found is 15"
        ),
        "{}",
        error.message
    );
    assert!(
        error.message.ends_with(
            "install postgresql-client-18 or list its bin directory in worker.pg_bin_dirs"
        ),
        "{}",
        error.message
    );
    assert!(!database_exists(&fresh, "copy").await);

    point
        .restore(&fresh, "copy", None, &options)
        .await
        .expect("restore with the 18 tools");
    let tools = tools_18();
    assert_eq!(
        schema_text_by(&tools, &source, "Shop DB"),
        schema_text_by(&tools, &fresh, "copy")
    );
    assert_eq!(
        data_fingerprint(&source, "Shop DB").await,
        data_fingerprint(&fresh, "copy").await
    );

    // `restore files` and `recovery-point export` write the script with them too.
    let out = tempfile::tempdir().unwrap();
    point
        .restore_as_sql(
            None,
            &out,
            "shop.sql",
            &pgvault_engine::Selection::default(),
            &options,
        )
        .await
        .expect("the script is written with the 18 tools");
    let script = std::fs::read_to_string(out.path().join("shop.sql")).unwrap();
    assert!(script.contains("CREATE TABLE"), "{script}");
}
