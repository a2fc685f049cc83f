//! Restore as files: the mixed fixture written as a SQL script by
//! `restore_as_sql`, loaded with `psql -v ON_ERROR_STOP=1` into an empty
//! database on a second server, equals the source (schema text, table
//! checksums, sequences, large objects); a corrupted chunk fails the job
//! with `ChecksumMismatch` and leaves no file behind.

use crate::support;

use pgvault_engine::{ErrorCode, Selection, restore_as_sql};
use sha2::{Digest, Sha256};
use support::*;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_script_loads_with_psql_into_an_identical_database() {
    let source = source("Shop DB", MIXED_FIXTURE).await;
    let destination = cluster();
    let mut opts = options(&source);
    // Several chunks per table, so one COPY block spans chunk objects.
    opts.split_threshold_bytes = 8192;
    let point = back_up(&source, "Shop DB", &opts).await;
    let summary = &point.summary;

    // Spelled out: this test checks the restore's progress reports.
    let out_dir = tempfile::tempdir().unwrap();
    let output = datastore(&out_dir);
    let progress = recorder();
    let restored = restore_as_sql(
        &point.store,
        &point.prefix,
        Some(&summary.manifest_sha256),
        &output,
        "exports/shop.sql",
        &Selection::default(),
        &options(&destination),
        progress.clone(),
        CancellationToken::new(),
    )
    .await
    .expect("restore as sql");
    assert_eq!(restored.rows, summary.rows);
    assert!(restored.skipped_objects.is_empty());
    let file = out_dir.path().join("exports/shop.sql");
    let script = std::fs::read(&file).unwrap();
    let entry = restored.output.expect("output entry");
    assert_eq!(entry.size, script.len() as u64);
    assert_eq!(entry.sha256, hex::encode(Sha256::digest(&script)));
    let last = progress.last();
    assert_eq!(
        (last.phase.as_str(), last.chunks_done),
        ("done", summary.chunk_count)
    );

    // Roles already existing on the target must not make the script fail.
    execute(&destination, "postgres", "CREATE ROLE app_owner NOLOGIN").await;
    create_database(&destination, "Shop DB restored").await;
    psql_file(&destination, "Shop DB restored", &file);

    assert_identical(&source, "Shop DB", &destination, "Shop DB restored").await;
    let owner: String = destination
        .connect("Shop DB restored")
        .await
        .unwrap()
        .query_one(
            "SELECT pg_get_userbyid(lomowner)::text FROM pg_largeobject_metadata WHERE oid = 424242",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, "app_owner");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_chunk_fails_and_leaves_no_output_file() {
    let pg = source(
        "src",
        "CREATE TABLE t (id int, v text); \
         INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g;",
    )
    .await;
    let point = back_up(&pg, "src", &options(&pg)).await;
    let object = point.manifest().tables[0].chunks[0].object.path.clone();
    corrupt(&point.object_path(&object));

    let out_dir = tempfile::tempdir().unwrap();
    let err = point
        .restore_as_sql(
            Some(&point.summary.manifest_sha256),
            &out_dir,
            "out/src.sql",
            &Selection::default(),
            &options(&pg),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::ChecksumMismatch, "{err}");
    assert!(err.message.contains(&object), "names {object}: {err}");
    assert_eq!(
        files_below(out_dir.path()),
        Vec::<String>::new(),
        "no output may be left"
    );
}
