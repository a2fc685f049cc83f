//! Restore as files: the mixed fixture written as a SQL script by
//! `restore_as_sql`, loaded with `psql -v ON_ERROR_STOP=1` into an empty
//! database on a second server, equals the source (schema text, table
//! checksums, sequences, large objects); a corrupted chunk fails the job
//! with `ChecksumMismatch` and leaves no file behind.

mod support;

use pgvault_engine::{ErrorCode, Manifest, Selection, backup, restore_as_sql};
use sha2::{Digest, Sha256};
use support::*;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_script_loads_with_psql_into_an_identical_database() {
    let source = cluster();
    let destination = cluster();
    create_database(&source, "Shop DB").await;
    source
        .connect("Shop DB")
        .await
        .unwrap()
        .batch_execute(MIXED_FIXTURE)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = datastore(&dir);
    let mut opts = options(&source);
    // Several chunks per table, so one COPY block spans chunk objects.
    opts.split_threshold_bytes = 8192;
    let summary = backup(
        &target(&source, "Shop DB"),
        &store,
        "rp",
        &opts,
        recorder(),
        CancellationToken::new(),
    )
    .await
    .expect("backup");

    let out_dir = tempfile::tempdir().unwrap();
    let output = datastore(&out_dir);
    let progress = recorder();
    let restored = restore_as_sql(
        &store,
        "rp",
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
    let last = progress.0.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        (last.phase.as_str(), last.chunks_done),
        ("done", summary.chunk_count)
    );

    // Roles already existing on the target must not make the script fail.
    let admin = destination.connect("postgres").await.unwrap();
    admin
        .batch_execute("CREATE ROLE app_owner NOLOGIN")
        .await
        .unwrap();
    create_database(&destination, "Shop DB restored").await;
    psql_file(&destination, "Shop DB restored", &file);

    assert_eq!(
        schema_text(&source, "Shop DB"),
        schema_text(&destination, "Shop DB restored")
    );
    assert_eq!(
        data_fingerprint(&source, "Shop DB").await,
        data_fingerprint(&destination, "Shop DB restored").await
    );
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
    let pg = cluster();
    create_database(&pg, "src").await;
    pg.connect("src")
        .await
        .unwrap()
        .batch_execute(
            "CREATE TABLE t (id int, v text); \
             INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g;",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = datastore(&dir);
    let summary = backup(
        &target(&pg, "src"),
        &store,
        "rp",
        &options(&pg),
        recorder(),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let manifest: Manifest =
        serde_json::from_slice(&std::fs::read(dir.path().join("rp/manifest.json")).unwrap())
            .unwrap();
    let object = manifest.tables[0].chunks[0].object.path.clone();
    corrupt(&dir.path().join("rp").join(&object));

    let out_dir = tempfile::tempdir().unwrap();
    let err = restore_as_sql(
        &store,
        "rp",
        Some(&summary.manifest_sha256),
        &datastore(&out_dir),
        "out/src.sql",
        &Selection::default(),
        &options(&pg),
        recorder(),
        CancellationToken::new(),
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
