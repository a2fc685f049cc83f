//! Encrypted recovery points against real PostgreSQL and `file://`
//! datastores: with a data key every stored object is sealed (none is a
//! zstd frame or readable JSON); the point restores identical (every type,
//! bundles, large objects); a lifecycle copy moves the sealed bytes
//! unchanged and restores identical too; without the key the restore asks
//! for it, and under another point's key it fails authentication naming
//! the manifest.

use crate::support;

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

/// A backup given a key object stores it as `key.json` (plain JSON) before
/// the manifest, which names it; verify accepts it, a lifecycle copy carries
/// it, and the offline reader opens the point with a vault key file alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_object_travels_with_the_point_and_opens_it_with_the_key_file() {
    use pgvault_engine::offline;
    use pgvault_engine::seal::SecretKey;
    use pgvault_engine::seal::key_file::KeyFile;
    use pgvault_engine::seal::key_object::KeyObject;
    use pgvault_engine::seal::wrap::{data_key_aad, wrap};

    let source = source("keyed", MIXED_FIXTURE).await;
    let (vault_key, data_key) = (SecretKey::generate(), SecretKey::generate());
    let wrapped = wrap(&vault_key, &data_key_aad("rp3"), &data_key);
    let sealed = EngineOptions {
        encryption: Some(PointKey::new("rp3", data_key.expose()).unwrap()),
        key_object: Some(KeyObject::new("rp3", "vault", 1, &wrapped)),
        ..options(&source)
    };
    let point = try_back_up(&target(&source, "keyed"), "vault/inst/rp3", &sealed)
        .await
        .expect("encrypted backup with a key object");
    let dir = point.dir.path().join("vault/inst/rp3");
    let stored = std::fs::read(dir.join("key.json")).expect("key.json is stored");
    let parsed = KeyObject::from_json(&stored).expect("a key object");
    assert_eq!(
        (parsed.point_id.as_str(), parsed.vault_key_version),
        ("rp3", 1)
    );

    pgvault_engine::verify::verify_point(
        &point.store,
        "vault/inst/rp3",
        &point.summary.manifest_sha256,
        &sealed,
        &NoProgress,
        &CancellationToken::new(),
    )
    .await
    .expect("verify accepts the key object the manifest names");

    let archive_dir = tempfile::tempdir().unwrap();
    let archive = datastore(&archive_dir);
    archive.ensure_exists().await.unwrap();
    copy_point(
        &point.store,
        "vault/inst/rp3",
        &archive,
        "vault/inst/rp3",
        &point.summary.manifest_sha256,
        &sealed,
        &NoProgress,
        &CancellationToken::new(),
    )
    .await
    .expect("copy");
    assert_eq!(
        std::fs::read(archive_dir.path().join("vault/inst/rp3/key.json")).unwrap(),
        stored,
        "copies carry the key object"
    );

    let found = offline::find_point(&archive, "rp3").await.expect("found");
    assert!(found.encrypted && found.key_object, "{found:?}");
    let keys = KeyFile::new("vault", "now", &[(1, vault_key.clone())]);
    let opened = offline::point_key(&archive, &found, Some(&keys))
        .await
        .expect("opens with the key file")
        .expect("a key");
    assert_eq!(opened.secret(), &data_key);
    let manifest = offline::manifest(&archive, &found, Some(&opened))
        .await
        .expect("the manifest opens");
    assert_eq!(manifest.database, "keyed");
    let other_vault = KeyFile::new("other", "now", &[(1, vault_key)]);
    let err = offline::point_key(&archive, &found, Some(&other_vault))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::EncryptionKeyUnavailable, "{err}");
    assert!(err.message.contains("vault \"vault\""), "{err}");
}
