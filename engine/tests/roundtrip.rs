//! Backup → restore round trips against real PostgreSQL and a `file://`
//! datastore: every type, awkward identifiers, partitions, inheritance,
//! sequences, views, materialized views, large objects, triggers not fired,
//! roles recreated on a fresh server; and tables split into ctid chunks.

use crate::support;

use pgvault_engine::restore_database;
use support::*;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_to_a_fresh_server_is_identical() {
    let source = source("Shop DB", MIXED_FIXTURE).await;
    let destination = cluster();

    let point = try_back_up(
        &target(&source, "Shop DB"),
        "vault/inst/rp1",
        &options(&source),
    )
    .await
    .expect("backup");
    let summary = &point.summary;
    assert!(summary.rows >= 4 + 3 + 3 + 50 + 2 + 1 + 2, "{summary:?}");
    assert_eq!(summary.manifest_sha256.len(), 64);
    assert!(summary.server_version.starts_with("15"));
    let last = point.progress.last();
    assert_eq!(last.phase, "done");
    assert_eq!(last.chunks_done, last.chunks_total);
    assert_eq!(last.chunks_total, summary.chunk_count);

    let manifest = point.manifest();
    assert!(
        manifest.roles.contains(&"app_owner".to_string()),
        "{:?}",
        manifest.roles
    );
    assert!(
        manifest.roles.contains(&"Reader \"Role\" ü".to_string()),
        "{:?}",
        manifest.roles
    );
    let names: Vec<_> = manifest.tables.iter().map(|t| t.name.as_str()).collect();
    assert!(
        names.contains(&"parent_a") && !names.contains(&"parent") && !names.contains(&"v"),
        "{names:?}"
    );
    let called = manifest
        .sequences
        .iter()
        .find(|s| s.name == "called_seq")
        .unwrap();
    assert_eq!((called.last_value, called.is_called), (3, true));
    assert_eq!(
        manifest.large_objects.as_ref().map(|l| l.objects.len()),
        Some(1)
    );

    // Spelled out: this test checks the restore's progress reports.
    let restore_progress = recorder();
    let restored = restore_database(
        &target(&destination, "Shop DB restored"),
        &point.store,
        &point.prefix,
        Some(&summary.manifest_sha256),
        &options(&destination),
        restore_progress.clone(),
        CancellationToken::new(),
    )
    .await
    .expect("restore");
    assert_eq!(restored.rows, summary.rows);
    assert_eq!(restore_progress.last().phase, "done");

    let before = assert_identical(&source, "Shop DB", &destination, "Shop DB restored").await;
    assert!(
        before.iter().any(|l| l.starts_with("app.secret 2:")),
        "rows hidden by RLS must be kept: {before:?}"
    );
    assert!(
        before.iter().any(|l| l.starts_with("app.mv 1:")),
        "{before:?}"
    );

    let restored_db = destination.connect("Shop DB restored").await.unwrap();
    let owner: String = restored_db
        .query_one("SELECT pg_get_userbyid(lomowner)::text FROM pg_largeobject_metadata WHERE oid = 424242", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, "app_owner");
    let err = restored_db
        .batch_execute("INSERT INTO app.child (note) VALUES ('x')")
        .await
        .unwrap_err();
    assert!(
        err.as_db_error()
            .unwrap()
            .message()
            .contains("trigger fired"),
        "triggers are restored: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_table_is_split_into_ctid_chunks_and_restored() {
    let pg = source(
        "big",
        "CREATE TABLE wide (id int PRIMARY KEY, pad text); \
         INSERT INTO wide SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 20000) g; \
         DELETE FROM wide WHERE id % 7 = 0; \
         CREATE TABLE small (v int); INSERT INTO small VALUES (1);",
    )
    .await;
    let mut opts = options(&pg);
    opts.split_threshold_bytes = 8192 * 64;
    let point = back_up(&pg, "big", &opts).await;
    let manifest = point.manifest();
    let wide = manifest.tables.iter().find(|t| t.name == "wide").unwrap();
    assert!(
        wide.chunks.len() >= 4,
        "expected several chunks, got {}",
        wide.chunks.len()
    );
    assert_eq!(
        wide.chunks.iter().map(|c| c.rows).sum::<u64>(),
        20000 - 20000 / 7
    );
    assert_eq!(wide.chunks.first().unwrap().start_page, None);
    assert_eq!(wide.chunks.last().unwrap().end_page, None);
    assert_eq!(point.summary.chunk_count as usize, wide.chunks.len() + 1);

    point
        .restore(&pg, "big copy", None, &opts)
        .await
        .expect("restore");
    assert_identical(&pg, "big", &pg, "big copy").await;
}
