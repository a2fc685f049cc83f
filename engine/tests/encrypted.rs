//! Encrypted recovery points against real PostgreSQL and `file://`
//! datastores: with a data key every stored object is sealed (none is a
//! zstd frame or readable JSON); the point restores identical (every type,
//! bundles, large objects); a lifecycle copy moves the sealed bytes
//! unchanged and restores identical too; without the key the restore asks
//! for it, and under another point's key it fails authentication naming
//! the manifest.

mod support;

use pgvault_engine::lifecycle::copy_point;
use pgvault_engine::seal::PointKey;
use pgvault_engine::{EngineOptions, ErrorCode, NoProgress};
use support::*;
use tokio_util::sync::CancellationToken;

fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_points_restore_identical_copy_unchanged_and_need_their_key() {
    let source = source("Shop DB", MIXED_FIXTURE).await;
    let destination = cluster();
    let key = PointKey::new("rp1", &[0x42; 32]).unwrap();
    let sealed = EngineOptions {
        encryption: Some(key.clone()),
        ..options(&source)
    };
    let point = try_back_up(&target(&source, "Shop DB"), "vault/inst/rp1", &sealed)
        .await
        .expect("encrypted backup");

    let stored = files(&point.dir.path().join("vault/inst/rp1"));
    assert!(stored.len() >= 3, "{stored:?}");
    for file in &stored {
        let bytes = std::fs::read(file).unwrap();
        assert!(
            bytes.starts_with(b"PGVS"),
            "{} is not sealed",
            file.display()
        );
    }

    // Restores identical with the key.
    point
        .restore(
            &destination,
            "Shop DB",
            Some(&point.summary.manifest_sha256),
            &sealed,
        )
        .await
        .expect("restore with the key");
    assert_identical(&source, "Shop DB", &destination, "Shop DB").await;

    // Without the key, or under another point's: refused, never misread.
    let plain = options(&destination);
    let err = point
        .restore(&destination, "no_key", None, &plain)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::EncryptionKeyUnavailable, "{err}");
    let other = EngineOptions {
        encryption: Some(PointKey::new("rp2", &[0x42; 32]).unwrap()),
        ..options(&destination)
    };
    let err = point
        .restore(&destination, "wrong_key", None, &other)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::ObjectAuthenticationFailed, "{err}");
    assert!(err.message.contains("manifest.json"), "{err}");

    // A lifecycle copy keeps the sealed bytes and restores identical.
    let archive_dir = tempfile::tempdir().unwrap();
    let archive = datastore(&archive_dir);
    archive.ensure_exists().await.unwrap();
    copy_point(
        &point.store,
        "vault/inst/rp1",
        &archive,
        "archive/rp1",
        &point.summary.manifest_sha256,
        &sealed,
        &NoProgress,
        &CancellationToken::new(),
    )
    .await
    .expect("copy an encrypted point");
    for file in &stored {
        let relative = file
            .strip_prefix(point.dir.path().join("vault/inst/rp1"))
            .unwrap();
        let copied = archive_dir.path().join("archive/rp1").join(relative);
        assert_eq!(
            std::fs::read(file).unwrap(),
            std::fs::read(&copied).unwrap(),
            "{} copied unchanged",
            relative.display()
        );
    }
    pgvault_engine::restore_database(
        &target(&destination, "from_copy"),
        &archive,
        "archive/rp1",
        Some(&point.summary.manifest_sha256),
        &sealed,
        recorder(),
        CancellationToken::new(),
    )
    .await
    .expect("restore the copy");
    assert_identical(&source, "Shop DB", &destination, "from_copy").await;
}
