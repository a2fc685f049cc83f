//! Failure paths of the engine: wrong password, missing database, a target
//! name already in use, a corrupted chunk, a manifest that does not match,
//! rows hidden by row-level security, and cancellation.

mod support;

use pgvault_engine::{ErrorCode, backup, restore_database};
use support::*;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_errors_are_classified_without_leaking_the_password() {
    let pg = cluster();
    let dir = tempfile::tempdir().unwrap();
    let store = datastore(&dir);

    let mut wrong = target(&pg, "postgres");
    wrong.password = "not-the-password-xyz".into();
    let err = backup(
        &wrong,
        &store,
        "rp",
        &options(&pg),
        recorder(),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::UserErrorDBUserAuthFailed, "{err}");
    assert!(!err.message.contains("not-the-password-xyz"), "{err}");
    assert!(
        err.message.contains(&pg.port().to_string()),
        "names the server: {err}"
    );
    assert!(!format!("{wrong:?}").contains("not-the-password-xyz"));

    let err = backup(
        &target(&pg, "no such db"),
        &store,
        "rp",
        &options(&pg),
        recorder(),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::UserErrorDBNotFound, "{err}");
    assert!(err.message.contains("no such db"), "{err}");

    let mut closed = target(&pg, "postgres");
    closed.port = pgvault_localpg::free_port().unwrap();
    let err = backup(
        &closed,
        &store,
        "rp",
        &options(&pg),
        recorder(),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.code,
        ErrorCode::UserErrorServerConnectionClosed,
        "{err}"
    );
    assert!(err.retryable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_existing_names_corrupt_chunks_and_wrong_manifests() {
    let pg = cluster();
    create_database(&pg, "src").await;
    pg.connect("src")
        .await
        .unwrap()
        .batch_execute("CREATE TABLE t (id int, v text); INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 1000) g;")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = datastore(&dir);
    let opts = options(&pg);
    let summary = backup(
        &target(&pg, "src"),
        &store,
        "rp",
        &opts,
        recorder(),
        CancellationToken::new(),
    )
    .await
    .unwrap();

    let err = restore_database(
        &target(&pg, "src"),
        &store,
        "rp",
        None,
        &opts,
        recorder(),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.code,
        ErrorCode::UserErrorDatabaseNameAlreadyInUse,
        "{err}"
    );

    let err = restore_database(
        &target(&pg, "x"),
        &store,
        "rp",
        Some(&"0".repeat(64)),
        &opts,
        recorder(),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::ChecksumMismatch, "{err}");
    assert!(!database_exists(&pg, "x").await);

    // Flip one byte near the end of the table's chunk (its zstd frame stays parseable
    // or not: either way the object is named and nothing is left behind).
    let chunk_dir = std::fs::read_dir(dir.path().join("rp/data"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let chunk = std::fs::read_dir(&chunk_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&chunk).unwrap();
    let at = bytes.len() - 6;
    bytes[at] ^= 0x55;
    std::fs::write(&chunk, bytes).unwrap();
    let object = chunk
        .strip_prefix(dir.path().join("rp"))
        .unwrap()
        .display()
        .to_string();
    let err = restore_database(
        &target(&pg, "corrupt"),
        &store,
        "rp",
        Some(&summary.manifest_sha256),
        &opts,
        recorder(),
        CancellationToken::new(),
    )
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
    let pg = cluster();
    create_database(&pg, "rls").await;
    pg.connect("rls")
        .await
        .unwrap()
        .batch_execute(
            "CREATE ROLE backup_user LOGIN PASSWORD 'bpw'; \
             CREATE TABLE secret (owner_name text); ALTER TABLE secret ENABLE ROW LEVEL SECURITY; \
             CREATE POLICY mine ON secret USING (owner_name = current_user); \
             INSERT INTO secret VALUES ('someone else'); GRANT SELECT ON secret TO backup_user;",
        )
        .await
        .unwrap();
    let mut user = target(&pg, "rls");
    user.user = "backup_user".into();
    user.password = "bpw".into();
    let dir = tempfile::tempdir().unwrap();
    let err = backup(
        &user,
        &datastore(&dir),
        "rp",
        &options(&pg),
        recorder(),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
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
