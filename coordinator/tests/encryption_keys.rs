//! Key custody through the coordinator's API and state database: a new
//! vault is encrypted with version 1 of its key; a backup's claim carries a
//! fresh 32-byte data key for exactly its point, stored only wrapped; a
//! restore's claim carries the same key, also after `RotateVaultKey` made
//! version 2 and rewrapped every data key (version 1 is kept: key objects
//! name it); a backup's key also comes wrapped by the vault key, and
//! `ExportVaultKey` hands out every version, which opens it; a vault
//! created with encryption "none" has no key, cannot be rotated, and its
//! tasks carry none; an unknown encryption is refused naming the field.

use crate::common;

use common::{Harness, backup_now, claim, get, job_id};
use pgvault_proto::v1 as pb;
use tonic::Code;

fn backup_result() -> pb::BackupResult {
    pb::BackupResult {
        snapshot_time: Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        stored_bytes: 10,
        raw_bytes: 20,
        chunk_count: 1,
        manifest_sha256: "cd".repeat(32),
        server_version: "15.8".into(),
        stage_split: None,
    }
}

async fn vault(h: &Harness, name: &str) -> pb::Vault {
    h.vaults()
        .get_vault(pb::GetVaultRequest { name: name.into() })
        .await
        .expect("get vault")
        .into_inner()
}

/// Backs `instance` up (claim + complete); returns the task and the point.
async fn back_up(h: &Harness, instance: &str) -> (pb::BackupTask, String) {
    let job = backup_now(h, instance).await;
    let id = job_id(&job);
    h.publisher.wait_for(&id, 1).await;
    let claimed = claim(h, &id, "host-a:1").await;
    assert!(claimed.claimed, "{}", claimed.reason);
    let Some(pb::task::Kind::Backup(task)) = claimed.task.and_then(|t| t.kind) else {
        panic!("backup task")
    };
    h.workers()
        .complete_task(pb::CompleteTaskRequest {
            job_id: id,
            lease_token: claimed.lease_token,
            result: Some(pb::complete_task_request::Result::Backup(backup_result())),
            ..Default::default()
        })
        .await
        .expect("complete");
    let done = get(h, &job.name).await;
    (task, done.recovery_point)
}

/// The data key a restore of `point` is claimed with.
async fn restore_key(h: &Harness, point: &str, database: &str) -> Option<pb::PointKey> {
    let restore = h
        .restores()
        .restore_as_database(pb::RestoreAsDatabaseRequest {
            recovery_point: point.into(),
            target_database: database.into(),
            ..Default::default()
        })
        .await
        .expect("restore")
        .into_inner();
    let id = job_id(&restore);
    h.publisher.wait_for(&id, 1).await;
    let claimed = claim(h, &id, "host-a:1").await;
    let Some(pb::task::Kind::Restore(task)) = claimed.task.and_then(|t| t.kind) else {
        panic!("restore task: {}", claimed.reason)
    };
    task.point_key
}

#[tokio::test]
async fn points_get_their_own_key_only_wrapped_at_rest_and_rotation_keeps_them_readable() {
    let h = Harness::start().await;
    h.fixture().await;
    let v = vault(&h, "vaults/v").await;
    assert_eq!((v.encryption.as_str(), v.key_version), ("aes-256-gcm", 1));
    let instance = h.protect("app").await;

    let (task, point) = back_up(&h, &instance).await;
    let key = task
        .point_key
        .expect("an encrypted vault's backup carries a data key");
    let point_id = task.prefix.rsplit('/').next().unwrap().to_string();
    assert_eq!(key.algorithm, "aes-256-gcm");
    assert_eq!(key.key_id, point_id, "the key is the point's");
    assert_eq!(key.key.len(), 32);
    assert!(point.ends_with(&point_id), "{point}");
    assert_eq!((key.vault_id.as_str(), key.vault_key_version), ("v", 1));
    assert_eq!(key.wrapped_key.len(), 60, "wrapped for the key object");

    // At rest only wrapped: neither table holds the key's bytes.
    let db = h.cluster.connect("postgres").await.expect("connect");
    let wrapped: Vec<u8> = db
        .query_one(
            "SELECT wrapped_key FROM point_keys WHERE point_id = $1::text::uuid",
            &[&point_id],
        )
        .await
        .expect("the point's key row")
        .get(0);
    assert_eq!(wrapped.len(), 60);
    assert!(!wrapped.windows(32).any(|w| w == key.key.as_slice()));

    // A second point gets another key.
    let (second, _) = back_up(&h, &instance).await;
    assert_ne!(second.point_key.expect("a key").key, key.key);

    // A restore carries the same key; after a rotation too.
    let before = restore_key(&h, &point, "app_one").await.expect("a key");
    assert_eq!(before.key, key.key);
    let rotated = h
        .vaults()
        .rotate_vault_key(pb::RotateVaultKeyRequest {
            name: "vaults/v".into(),
        })
        .await
        .expect("rotate")
        .into_inner();
    assert_eq!(rotated.vault.expect("vault").key_version, 2);
    assert_eq!(rotated.points_rewrapped, 2);
    let versions: Vec<i32> = db
        .query("SELECT version FROM vault_keys WHERE vault_id = 'v'", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        versions,
        vec![1, 2],
        "older versions are kept: key objects in the datastore name them"
    );
    let rewrapped: Vec<u8> = db
        .query_one(
            "SELECT wrapped_key FROM point_keys WHERE point_id = $1::text::uuid",
            &[&point_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_ne!(rewrapped, wrapped, "rewrapped under the new version");
    let after = restore_key(&h, &point, "app_two").await.expect("a key");
    assert_eq!(after.key, key.key, "the data key itself never changes");
    assert!(
        after.wrapped_key.is_empty(),
        "only backups carry the wrapped key"
    );

    // The exported key file has both versions; version 1 opens the wrapped
    // key the backup task carried (what its key object holds).
    let exported = h
        .vaults()
        .export_vault_key(pb::ExportVaultKeyRequest {
            name: "vaults/v".into(),
        })
        .await
        .expect("export")
        .into_inner();
    assert_eq!(exported.algorithm, "aes-256-gcm");
    let listed: Vec<u32> = exported.versions.iter().map(|v| v.version).collect();
    assert_eq!(listed, vec![1, 2]);
    let one = pgvault_seal::SecretKey::from_slice(&exported.versions[0].key).unwrap();
    let opened = pgvault_seal::wrap::unwrap(
        &one,
        &pgvault_seal::wrap::data_key_aad(&point_id),
        &key.wrapped_key,
    )
    .expect("version 1 opens the backup's wrapped key");
    assert_eq!(opened.expose().as_slice(), key.key.as_slice());
}

#[tokio::test]
async fn an_unencrypted_vault_has_no_key_and_unknown_encryptions_are_refused() {
    let h = Harness::start().await;
    let url = format!("file://{}", h.datastore_dir.path().display());
    let create = |id: &str, encryption: &str| pb::CreateVaultRequest {
        vault_id: id.into(),
        vault: Some(pb::Vault {
            standard_datastore: url.clone(),
            region: "local".into(),
            encryption: encryption.into(),
            ..Default::default()
        }),
    };
    let plain = h
        .vaults()
        .create_vault(create("plain", "none"))
        .await
        .expect("create plain vault")
        .into_inner();
    assert_eq!((plain.encryption.as_str(), plain.key_version), ("none", 0));
    let refused = h
        .vaults()
        .rotate_vault_key(pb::RotateVaultKeyRequest {
            name: "vaults/plain".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("not encrypted"), "{refused:?}");
    let no_key = h
        .vaults()
        .export_vault_key(pb::ExportVaultKeyRequest {
            name: "vaults/plain".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(no_key.code(), Code::FailedPrecondition, "{no_key:?}");
    assert!(no_key.message().contains("not encrypted"), "{no_key:?}");
    let bad = h
        .vaults()
        .create_vault(create("bad", "rot13"))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("vault.encryption"), "{bad:?}");
}
