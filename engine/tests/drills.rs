//! Restore drills against real PostgreSQL and a `file://` datastore: a
//! sound point restores into a scratch database whose every table matches
//! the manifest's rows and row digests, and the scratch database is gone
//! afterwards; a corrupted chunk fails the drill naming the object (and the
//! scratch database is still dropped); a manifest altered in memory fails
//! the check with the row-count or checksum code naming the table; a point
//! without digests is checked by row counts only.

use crate::support;

use pgvault_engine::drill::{check_restored, scratch_database};
use pgvault_engine::manifest::format_row_digest;
use pgvault_engine::{ErrorCode, drill_point};
use support::*;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_checks_every_table_of_the_restored_point_and_drops_the_scratch_database() {
    let source = source("Shop DB", MIXED_FIXTURE).await;
    let drill_server = cluster();
    let point = back_up(&source, "Shop DB", &options(&source)).await;
    let manifest = point.manifest();
    assert!(
        manifest
            .tables
            .iter()
            .flat_map(|t| &t.chunks)
            .all(|c| c.row_digest.as_ref().is_some_and(|d| d.len() == 32)),
        "every chunk records a row digest"
    );

    let scratch = scratch_database("3f6c1a2e-0d4b-4c1e-9a57-7d7f0e3b1c22");
    assert_eq!(scratch, "pgvault_drill_3f6c1a2e");
    let summary = drill_point(
        &target(&drill_server, &scratch),
        &point.store,
        &point.prefix,
        &point.summary.manifest_sha256,
        &options(&drill_server),
        recorder(),
        CancellationToken::new(),
    )
    .await
    .expect("drill");
    assert!(summary.checksums);
    assert_eq!(summary.tables.len(), manifest.tables.len());
    assert!(
        summary.tables.iter().all(|t| t.checksum == Some(true)),
        "{:?}",
        summary.tables
    );
    assert_eq!(summary.rows, point.summary.rows);
    assert!(!database_exists(&drill_server, &scratch).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_chunk_fails_the_drill_naming_the_object_and_the_scratch_database_is_dropped() {
    let source = source(
        "db",
        "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 5000) g;",
    )
    .await;
    let drill_server = cluster();
    let point = back_up(&source, "db", &options(&source)).await;
    let chunk = point.manifest().tables[0].chunks[0].object.path.clone();
    corrupt(&point.object_path(&chunk));

    let scratch = scratch_database("corrupt1");
    let error = drill_point(
        &target(&drill_server, &scratch),
        &point.store,
        &point.prefix,
        &point.summary.manifest_sha256,
        &options(&drill_server),
        recorder(),
        CancellationToken::new(),
    )
    .await
    .expect_err("a corrupted chunk fails the drill");
    assert!(
        error.message.contains(&chunk),
        "{}: {}",
        error.code.as_str(),
        error.message
    );
    assert!(!database_exists(&drill_server, &scratch).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_restored_with_other_rows_fails_the_check_naming_the_table() {
    let source = source(
        "db",
        "CREATE TABLE a (id int, v text); INSERT INTO a SELECT g, 'row ' || g FROM generate_series(1, 300) g;
         CREATE TABLE \"B b\" (id int); INSERT INTO \"B b\" SELECT generate_series(1, 7);",
    )
    .await;
    let point = back_up(&source, "db", &options(&source)).await;
    point
        .restore(&source, "restored", None, &options(&source))
        .await
        .expect("restore");
    let restored = target(&source, "restored");
    let cancel = CancellationToken::new();
    let manifest = point.manifest();
    let checks = check_restored(&restored, &manifest, &cancel)
        .await
        .expect("the restored point matches its manifest");
    assert!(
        checks.iter().all(|c| c.checksum == Some(true)),
        "{checks:?}"
    );

    let index =
        |m: &pgvault_engine::Manifest| m.tables.iter().position(|t| t.name == "B b").unwrap();
    let mut more_rows = manifest.clone();
    let b = index(&more_rows);
    more_rows.tables[b].chunks[0].rows += 1;
    let error = check_restored(&restored, &more_rows, &cancel)
        .await
        .expect_err("row count mismatch");
    assert_eq!(error.code, ErrorCode::DrillRowCountMismatch);
    assert!(
        error
            .message
            .contains("table public.\"B b\": 7 rows restored, the manifest records 8"),
        "{}",
        error.message
    );

    let mut other_digest = manifest.clone();
    other_digest.tables[b].chunks[0].row_digest = Some(format_row_digest(12345));
    let error = check_restored(&restored, &other_digest, &cancel)
        .await
        .expect_err("checksum mismatch");
    assert_eq!(error.code, ErrorCode::DrillChecksumMismatch);
    assert!(
        error.message.contains("table public.\"B b\""),
        "{}",
        error.message
    );
    assert!(!error.message.contains("public.a"), "{}", error.message);

    // A point written before digests: row counts only.
    let mut no_digests = manifest.clone();
    for table in &mut no_digests.tables {
        for chunk in &mut table.chunks {
            chunk.row_digest = None;
        }
    }
    let checks = check_restored(&restored, &no_digests, &cancel)
        .await
        .expect("row counts match");
    assert!(checks.iter().all(|c| c.checksum.is_none()), "{checks:?}");
    assert_eq!(checks.iter().map(|c| c.rows).sum::<u64>(), 307);
}
