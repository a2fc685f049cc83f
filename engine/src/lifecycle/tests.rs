//! Copy and delete of a recovery point between two local datastores: a copy
//! is verified and committed by its manifest last, a corrupted source object
//! fails the copy without committing it, a retried copy whose source is
//! gone accepts a verified destination, and deleting twice is not an error.

use std::sync::Arc;

use chrono::Utc;
use pgvault_datastore::Datastore;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::{copy_point, delete_prefix};
use crate::manifest::{
    ChunkEntry, FORMAT_VERSION, MANIFEST_FILE, Manifest, ObjectEntry, SCHEMA_FILE, TableEntry,
};
use crate::{EngineOptions, ErrorCode, NoProgress};

const PREFIX: &str = "v/i/p";

fn entry(path: &str, data: &[u8]) -> ObjectEntry {
    ObjectEntry {
        path: path.into(),
        size: data.len() as u64,
        sha256: hex::encode(Sha256::digest(data)),
    }
}

fn store(dir: &tempfile::TempDir) -> Datastore {
    Datastore::open(&format!("file://{}", dir.path().display())).expect("datastore")
}

/// Writes a two-object point; returns the manifest's SHA-256.
fn write_point(dir: &tempfile::TempDir) -> String {
    let root = dir.path().join(PREFIX);
    std::fs::create_dir_all(root.join("data/1")).expect("mkdir");
    let schema = b"schema archive".to_vec();
    let chunk = vec![7u8; 100_000];
    std::fs::write(root.join(SCHEMA_FILE), &schema).expect("write");
    std::fs::write(root.join("data/1/00000.copy.zst"), &chunk).expect("write");
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        tool: "pgvault".into(),
        tool_version: "test".into(),
        server_version: "15".into(),
        server_version_num: 150000,
        snapshot_time: Utc::now(),
        database: "db".into(),
        encoding: "UTF8".into(),
        collate: "C".into(),
        ctype: "C".into(),
        schema: entry(SCHEMA_FILE, &schema),
        roles: vec![],
        tables: vec![TableEntry {
            extension_config: false,
            oid: 1,
            schema: "public".into(),
            name: "t".into(),
            columns: vec!["a".into()],
            chunks: vec![ChunkEntry {
                index: 0,
                start_page: None,
                end_page: None,
                key_range: None,
                rows: 1,
                raw_bytes: 1,
                object: entry("data/1/00000.copy.zst", &chunk),
                segment: None,
                row_digest: None,
            }],
        }],
        sequences: vec![],
        materialized_views: vec![],
        large_objects: None,
        database_properties: Default::default(),
        relations: None,
        schemas: None,
        globals: None,
        globals_role_passwords: false,
        dump_tools_major: None,
        key_object: None,
    };
    let json = manifest.to_json();
    std::fs::write(root.join(MANIFEST_FILE), &json).expect("write");
    hex::encode(Sha256::digest(&json))
}

fn files(dir: &tempfile::TempDir) -> Vec<String> {
    let mut all = Vec::new();
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                let rel = e
                    .path()
                    .strip_prefix(dir.path())
                    .expect("rel")
                    .to_path_buf();
                all.push(rel.display().to_string());
            }
        }
    }
    all.sort();
    all
}

#[tokio::test]
async fn copy_is_verified_and_committed_by_the_manifest_and_delete_is_idempotent() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let sha = write_point(&a);
    let options = EngineOptions::default();
    let cancel = CancellationToken::new();
    let progress = Arc::new(NoProgress);
    let moved = copy_point(
        &store(&a),
        PREFIX,
        &store(&b),
        PREFIX,
        &sha,
        &options,
        progress.as_ref(),
        &cancel,
    )
    .await
    .expect("copy");
    assert_eq!(moved.objects, 3);
    assert_eq!(files(&a), files(&b));
    for f in files(&a) {
        assert_eq!(
            std::fs::read(a.path().join(&f)).unwrap(),
            std::fs::read(b.path().join(&f)).unwrap()
        );
    }

    // The source gone, a retry accepts the verified destination.
    let removed = delete_prefix(&store(&a), PREFIX, progress.as_ref(), &cancel)
        .await
        .expect("delete");
    assert_eq!(removed.objects, 3);
    assert!(files(&a).is_empty(), "{:?}", files(&a));
    assert_eq!(
        delete_prefix(&store(&a), PREFIX, progress.as_ref(), &cancel)
            .await
            .expect("again")
            .objects,
        0
    );
    copy_point(
        &store(&a),
        PREFIX,
        &store(&b),
        PREFIX,
        &sha,
        &options,
        progress.as_ref(),
        &cancel,
    )
    .await
    .expect("retried copy");
}

#[tokio::test]
async fn a_corrupted_source_object_fails_the_copy_without_committing_it() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let sha = write_point(&a);
    std::fs::write(
        a.path().join(PREFIX).join("data/1/00000.copy.zst"),
        b"bit rot",
    )
    .unwrap();
    let progress = Arc::new(NoProgress);
    let error = copy_point(
        &store(&a),
        PREFIX,
        &store(&b),
        PREFIX,
        &sha,
        &EngineOptions::default(),
        progress.as_ref(),
        &CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(error.code, ErrorCode::ChecksumMismatch);
    assert!(
        error.message.contains("00000.copy.zst"),
        "{}",
        error.message
    );
    assert!(!b.path().join(PREFIX).join(MANIFEST_FILE).exists());
    // A manifest that does not match the recorded checksum is refused too.
    let error = copy_point(
        &store(&a),
        PREFIX,
        &store(&b),
        PREFIX,
        &"0".repeat(64),
        &EngineOptions::default(),
        progress.as_ref(),
        &CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(error.code, ErrorCode::ManifestInvalid);
}
