//! Failure paths of the engine: wrong password, missing database, a target
//! name already in use, a corrupted chunk, a manifest that does not match,
//! rows hidden by row-level security, and cancellation.

use crate::support;

use pgvault_engine::{ErrorCode, backup};
use support::*;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_errors_are_classified_without_leaking_the_password() {
    let pg = cluster();

    let mut wrong = target(&pg, "postgres");
    wrong.password = "not-the-password-xyz".into();
    let err = backup_error(&wrong, &options(&pg)).await;
    assert_eq!(err.code, ErrorCode::UserErrorDBUserAuthFailed, "{err}");
    assert!(!err.message.contains("not-the-password-xyz"), "{err}");
    assert!(
        err.message.contains(&pg.port().to_string()),
        "names the server: {err}"
    );
    assert!(!format!("{wrong:?}").contains("not-the-password-xyz"));

    let err = backup_error(&target(&pg, "no such db"), &options(&pg)).await;
    assert_eq!(err.code, ErrorCode::UserErrorDBNotFound, "{err}");
    assert!(err.message.contains("no such db"), "{err}");

    let mut closed = target(&pg, "postgres");
    closed.port = pgvault_localpg::free_port().unwrap();
    let err = backup_error(&closed, &options(&pg)).await;
    assert_eq!(
        err.code,
        ErrorCode::UserErrorServerConnectionClosed,
        "{err}"
    );
    assert!(err.retryable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_existing_names_corrupt_chunks_and_wrong_manifests() {
    let pg = source(
        "src",
        "CREATE TABLE t (id int, v text); INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 1000) g;",
    )
    .await;
    let opts = options(&pg);
    let point = back_up(&pg, "src", &opts).await;

    let err = point.restore(&pg, "src", None, &opts).await.unwrap_err();
    assert_eq!(
        err.code,
        ErrorCode::UserErrorDatabaseNameAlreadyInUse,
        "{err}"
    );

    let err = point
        .restore(&pg, "x", Some(&"0".repeat(64)), &opts)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::ChecksumMismatch, "{err}");
    assert!(!database_exists(&pg, "x").await);

    // Flip one byte near the end of the table's only chunk (its zstd frame stays
    // parseable or not: either way the object is named and nothing is left behind).
    let manifest = point.manifest();
    let chunks = &manifest.tables[0].chunks;
    assert_eq!(chunks.len(), 1, "one table, one chunk");
    let object = chunks[0].object.path.clone();
    let chunk = point.object_path(&object);
    let mut bytes = std::fs::read(&chunk).unwrap();
    let at = bytes.len() - 6;
    bytes[at] ^= 0x55;
    std::fs::write(&chunk, bytes).unwrap();
    let err = point
        .restore(&pg, "corrupt", Some(&point.summary.manifest_sha256), &opts)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::ChecksumMismatch, "{err}");
    assert!(err.message.contains(&object), "names {object}: {err}");
    assert!(err.message.contains("was dropped"), "{err}");
    assert!(
        !database_exists(&pg, "corrupt").await,
        "half-restored database must be dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_hidden_by_row_level_security_fail_the_backup_clearly() {
    let pg = source(
        "rls",
        "CREATE ROLE backup_user LOGIN PASSWORD 'bpw'; \
         CREATE TABLE secret (owner_name text); ALTER TABLE secret ENABLE ROW LEVEL SECURITY; \
         CREATE POLICY mine ON secret USING (owner_name = current_user); \
         INSERT INTO secret VALUES ('someone else'); GRANT SELECT ON secret TO backup_user;",
    )
    .await;
    let mut user = target(&pg, "rls");
    user.user = "backup_user".into();
    user.password = "bpw".into();
    let err = backup_error(&user, &options(&pg)).await;
    assert_eq!(err.code, ErrorCode::UserErrorRowLevelSecurity, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_job_stops_with_cancelled() {
    let pg = cluster();
    let dir = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    cancel.cancel();
    let err = backup(
        &target(&pg, "postgres"),
        &datastore(&dir),
        "rp",
        &options(&pg),
        recorder(),
        cancel,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::Cancelled);
    assert!(!dir.path().join("rp/manifest.json").exists());
}
