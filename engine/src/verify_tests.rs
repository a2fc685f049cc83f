//! Verify against real points in a local datastore: a sound point passes;
//! a flipped byte, a chunk swapped in from another point, a wrong row
//! count, a deleted chunk, a stray object and an altered manifest each
//! fail with their code, naming the object and its table.

use chrono::Utc;
use pgvault_datastore::Datastore;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::verify_point;
use crate::manifest::{
    ChunkEntry, FORMAT_VERSION, MANIFEST_FILE, Manifest, ObjectEntry, SCHEMA_FILE, TableEntry,
};
use crate::{EngineError, EngineOptions, ErrorCode, NoProgress};

const CHUNK: &str = "data/16384/00000.copy.zst";

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

/// Writes a point of one table (`rows` rows tagged `tag`) at `prefix`,
/// claiming `claimed_rows` in the manifest; returns the manifest's SHA-256.
fn write_point(
    dir: &tempfile::TempDir,
    prefix: &str,
    tag: &str,
    rows: u64,
    claimed_rows: u64,
) -> String {
    let root = dir.path().join(prefix);
    std::fs::create_dir_all(root.join("data/16384")).expect("mkdir");
    let schema = b"schema archive".to_vec();
    let text: String = (0..rows).map(|i| format!("{i}\t{tag}\n")).collect();
    let chunk = zstd::encode_all(text.as_bytes(), 3).expect("zstd");
    std::fs::write(root.join(SCHEMA_FILE), &schema).expect("write");
    std::fs::write(root.join(CHUNK), &chunk).expect("write");
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
            oid: 16384,
            schema: "public".into(),
            name: "orders".into(),
            columns: vec!["id".into(), "tag".into()],
            chunks: vec![ChunkEntry {
                index: 0,
                start_page: None,
                end_page: None,
                key_range: None,
                rows: claimed_rows,
                raw_bytes: text.len() as u64,
                object: entry(CHUNK, &chunk),
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

async fn verify(
    dir: &tempfile::TempDir,
    prefix: &str,
    sha: &str,
) -> Result<super::VerifySummary, EngineError> {
    verify_point(
        &store(dir),
        prefix,
        sha,
        &EngineOptions::default(),
        &NoProgress,
        &CancellationToken::new(),
    )
    .await
}

fn assert_names(error: &EngineError, code: ErrorCode, words: &[&str]) {
    assert_eq!(error.code, code, "{}", error.message);
    for word in words {
        assert!(
            error.message.contains(word),
            "{word:?} not in {}",
            error.message
        );
    }
}

#[tokio::test]
async fn a_sound_point_verifies_and_counts_its_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sha = write_point(&dir, "v/i/p", "a", 50, 50);
    let summary = verify(&dir, "v/i/p", &sha).await.expect("verified");
    assert_eq!(summary.objects, 3);
    assert_eq!(summary.rows, 50);
}

#[tokio::test]
async fn a_flipped_byte_in_a_chunk_fails_naming_the_object_and_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sha = write_point(&dir, "v/i/p", "a", 50, 50);
    let path = dir.path().join("v/i/p").join(CHUNK);
    let mut bytes = std::fs::read(&path).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&path, bytes).expect("write");
    let error = verify(&dir, "v/i/p", &sha).await.unwrap_err();
    assert_names(
        &error,
        ErrorCode::VerifyObjectCorrupt,
        &[CHUNK, "public.orders"],
    );
}

#[tokio::test]
async fn a_chunk_swapped_in_from_another_point_is_detected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sha = write_point(&dir, "v/i/p1", "a", 50, 50);
    write_point(&dir, "v/i/p2", "b", 50, 50);
    std::fs::copy(
        dir.path().join("v/i/p2").join(CHUNK),
        dir.path().join("v/i/p1").join(CHUNK),
    )
    .expect("swap");
    let error = verify(&dir, "v/i/p1", &sha).await.unwrap_err();
    assert_names(
        &error,
        ErrorCode::VerifyObjectCorrupt,
        &[CHUNK, "public.orders", "sha256"],
    );
}

#[tokio::test]
async fn a_row_count_other_than_the_manifest_s_is_corrupt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sha = write_point(&dir, "v/i/p", "a", 50, 51);
    let error = verify(&dir, "v/i/p", &sha).await.unwrap_err();
    assert_names(
        &error,
        ErrorCode::VerifyObjectCorrupt,
        &["50 rows", "51 rows"],
    );
}

#[tokio::test]
async fn a_deleted_chunk_is_missing_naming_its_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sha = write_point(&dir, "v/i/p", "a", 5, 5);
    std::fs::remove_file(dir.path().join("v/i/p").join(CHUNK)).expect("rm");
    let error = verify(&dir, "v/i/p", &sha).await.unwrap_err();
    assert_names(
        &error,
        ErrorCode::VerifyObjectMissing,
        &[CHUNK, "public.orders", "missing"],
    );
}

#[tokio::test]
async fn a_stray_object_is_unexpected_and_a_sibling_point_is_not_stray() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sha = write_point(&dir, "v/i/p", "a", 5, 5);
    // A rehydrated copy sits beside the point, never inside it.
    write_point(&dir, "v/i/p-rehydrated-1", "a", 5, 5);
    verify(&dir, "v/i/p", &sha)
        .await
        .expect("siblings are not strays");
    std::fs::write(dir.path().join("v/i/p/data/16384/00001.copy.zst"), b"x").expect("write");
    let error = verify(&dir, "v/i/p", &sha).await.unwrap_err();
    assert_names(
        &error,
        ErrorCode::VerifyUnexpectedObject,
        &["data/16384/00001.copy.zst", "not named"],
    );
}

#[tokio::test]
async fn a_truncated_or_missing_manifest_fails_as_manifest_corrupt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sha = write_point(&dir, "v/i/p", "a", 5, 5);
    let path = dir.path().join("v/i/p").join(MANIFEST_FILE);
    let json = std::fs::read(&path).expect("read");
    std::fs::write(&path, &json[..json.len() / 2]).expect("truncate");
    let error = verify(&dir, "v/i/p", &sha).await.unwrap_err();
    assert_names(
        &error,
        ErrorCode::VerifyManifestCorrupt,
        &[MANIFEST_FILE, "truncated"],
    );
    std::fs::remove_file(&path).expect("rm");
    let error = verify(&dir, "v/i/p", &sha).await.unwrap_err();
    assert_names(&error, ErrorCode::VerifyManifestCorrupt, &["missing"]);
}

#[tokio::test]
async fn every_problem_is_gathered_and_the_most_serious_code_wins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sha = write_point(&dir, "v/i/p", "a", 5, 5);
    std::fs::write(
        dir.path().join("v/i/p").join(SCHEMA_FILE),
        b"schema archivE",
    )
    .expect("write");
    std::fs::remove_file(dir.path().join("v/i/p").join(CHUNK)).expect("rm");
    for i in 0..6 {
        std::fs::write(dir.path().join(format!("v/i/p/stray-{i}")), b"x").expect("write");
    }
    let error = verify(&dir, "v/i/p", &sha).await.unwrap_err();
    assert_names(
        &error,
        ErrorCode::VerifyObjectMissing,
        &[
            CHUNK,
            "schema archive) is corrupted",
            "stray-0",
            "and 3 more problems",
        ],
    );
}

/// Adds `key.json` holding `content` to the point and names it in the
/// manifest; returns the manifest's new SHA-256.
fn add_key_object(dir: &tempfile::TempDir, prefix: &str, content: &[u8]) -> String {
    let root = dir.path().join(prefix);
    std::fs::write(root.join("key.json"), content).expect("write");
    let mut manifest =
        Manifest::from_json(&std::fs::read(root.join(MANIFEST_FILE)).unwrap(), "m").unwrap();
    manifest.key_object = Some(entry("key.json", content));
    let json = manifest.to_json();
    std::fs::write(root.join(MANIFEST_FILE), &json).expect("write");
    hex::encode(Sha256::digest(&json))
}

#[tokio::test]
async fn a_key_object_is_verified_with_the_point_and_must_be_well_formed() {
    use crate::seal::key_object::KeyObject;
    let dir = tempfile::tempdir().expect("tempdir");
    write_point(&dir, "v/i/p", "a", 5, 5);
    let good = KeyObject::new("p", "v", 1, &[7u8; 60]).to_json();
    let sha = add_key_object(&dir, "v/i/p", &good);
    let summary = verify(&dir, "v/i/p", &sha).await.expect("verified");
    assert_eq!(summary.objects, 4, "manifest, schema, chunk, key object");

    let sha = add_key_object(&dir, "v/i/p", b"{\"not\": \"a key\"}");
    let error = verify(&dir, "v/i/p", &sha).await.unwrap_err();
    assert_names(
        &error,
        ErrorCode::VerifyObjectCorrupt,
        &["key.json", "the key object", "not a pgvault key object"],
    );
}
