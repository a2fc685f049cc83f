//! Key custody for client-side encryption (issue 18). Three layers, each
//! wrapped by the one above (`pgvault_seal::wrap`):
//! - the **master key** (`master_key` in the coordinator's configuration),
//!   never stored in the state database;
//! - each **vault key** version (random), stored wrapped by the master key
//!   (`vault_keys`);
//! - each recovery point's **data key** (random, made when its backup
//!   attempt is claimed), stored wrapped by the newest vault key version
//!   (`point_keys`).
//!
//! A task receives only the unwrapped data key of the point it reads or
//! writes ([`task_key`]); vault and master keys never leave the
//! coordinator. The datastore alone never yields data, and a stolen state
//! database without the master key does not either. [`rotate`] makes a new
//! vault key version and rewraps every data key under it; objects are not
//! rewritten (their data keys are unchanged).
//!
//! A backup task also carries its data key wrapped by the vault key
//! ([`IssuedKey`]): the worker stores it as the point's `key.json`, which
//! names the vault key version of the backup. Since rotation leaves those
//! objects as they are, every version is kept, and [`export_keys`] hands
//! them all out (Owner only) as the key file that opens the vault's points
//! without pgvault.

use pgvault_errors::ErrorCode;
use pgvault_proto::v1 as pb;
use pgvault_seal::wrap::{data_key_aad, vault_key_aad};
use pgvault_seal::{PointKey, SecretKey};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::{CoordinatorError, Result};
use crate::model::{Encryption, JobError};
use crate::secrets::Cipher;
use crate::store::{keys, vaults};

/// The algorithm name tasks and the CLI use.
pub const AES_256_GCM: &str = "aes-256-gcm";

/// A key that cannot be unwrapped: the job fails with a code saying so.
fn unavailable(message: String) -> CoordinatorError {
    CoordinatorError::SecretUnusable(Box::new(JobError::new(
        ErrorCode::EncryptionKeyUnavailable,
        message,
    )))
}

/// Creates version 1 of a new encrypted vault's key (in the vault's
/// creating transaction).
pub async fn create_vault_key(
    conn: &mut PgConnection,
    cipher: &Cipher,
    vault_id: &str,
) -> Result<()> {
    let key = SecretKey::generate();
    let wrapped = cipher.wrap_key(&vault_key_aad(vault_id, 1), &key);
    keys::insert_vault_key(&mut *conn, vault_id, 1, &wrapped).await
}

/// Version `version` of the vault's key, unwrapped.
async fn vault_key(
    conn: &mut PgConnection,
    cipher: &Cipher,
    vault_id: &str,
    version: u32,
) -> Result<SecretKey> {
    let wrapped = keys::vault_key(&mut *conn, vault_id, version)
        .await?
        .ok_or_else(|| {
            unavailable(format!(
                "version {version} of vault \"{vault_id}\"'s key is missing from the state database"
            ))
        })?;
    cipher
        .unwrap_key(&vault_key_aad(vault_id, version), &wrapped)
        .ok_or_else(|| {
            unavailable(format!(
                "vault \"{vault_id}\"'s key (version {version}) does not unwrap: the coordinator's master key is not the one it was created with"
            ))
        })
}

/// A backup point's data key, with its wrapped form for the point's key
/// object.
pub struct IssuedKey {
    pub key: PointKey,
    pub vault_id: String,
    pub vault_key_version: u32,
    pub wrapped: Vec<u8>,
}

/// A fresh data key for backup point `point_id` of `vault_id`, stored
/// wrapped by the newest vault key; `None` for an unencrypted vault (whose
/// encryption never changes). The vault row is share-locked, so claims do
/// not wait for each other but a concurrent rotation (which locks it for
/// update) cannot miss the new key.
pub async fn new_point_key(
    conn: &mut PgConnection,
    cipher: &Cipher,
    vault_id: &str,
    point_id: Uuid,
) -> Result<Option<IssuedKey>> {
    if vaults::get(&mut *conn, vault_id).await?.encryption == Encryption::None {
        return Ok(None);
    }
    keys::share_lock_vault(&mut *conn, vault_id).await?;
    let version = vaults::get(&mut *conn, vault_id).await?.key_version;
    let vault_key = vault_key(conn, cipher, vault_id, version).await?;
    let data_key = SecretKey::generate();
    let point = point_id.to_string();
    let wrapped = pgvault_seal::wrap::wrap(&vault_key, &data_key_aad(&point), &data_key);
    keys::insert_point_key(&mut *conn, point_id, vault_id, version, &wrapped).await?;
    Ok(Some(IssuedKey {
        key: point_key(&point, &data_key)?,
        vault_id: vault_id.to_string(),
        vault_key_version: version,
        wrapped,
    }))
}

/// The data key of point `point_id`, unwrapped; `None`: the point is not
/// encrypted (its vault was not, or it predates encryption).
pub async fn existing_point_key(
    conn: &mut PgConnection,
    cipher: &Cipher,
    vault_id: &str,
    point_id: Uuid,
) -> Result<Option<PointKey>> {
    let Some(row) = keys::point_key(&mut *conn, point_id).await? else {
        return Ok(None);
    };
    let version = u32::try_from(row.vault_key_version).unwrap_or(0);
    let vault_key = vault_key(conn, cipher, vault_id, version).await?;
    let point = point_id.to_string();
    let data_key = pgvault_seal::wrap::unwrap(&vault_key, &data_key_aad(&point), &row.wrapped_key)
        .ok_or_else(|| {
            unavailable(format!(
                "the data key of recovery point {point} does not unwrap under vault \"{vault_id}\"'s key version {version}"
            ))
        })?;
    point_key(&point, &data_key).map(Some)
}

fn point_key(point: &str, key: &SecretKey) -> Result<PointKey> {
    PointKey::new(point, key.expose()).map_err(CoordinatorError::Internal)
}

/// The key as a task carries it.
pub fn task_key(key: Option<PointKey>) -> Option<pb::PointKey> {
    key.map(|k| pb::PointKey {
        algorithm: AES_256_GCM.to_string(),
        key_id: k.key_id().to_string(),
        key: k.secret().expose().to_vec(),
        ..Default::default()
    })
}

/// A backup's key as its task carries it: with the wrapped form the worker
/// stores as the point's key object.
pub fn backup_task_key(key: Option<IssuedKey>) -> Option<pb::PointKey> {
    key.map(|issued| pb::PointKey {
        wrapped_key: issued.wrapped,
        vault_key_version: issued.vault_key_version,
        vault_id: issued.vault_id,
        ..task_key(Some(issued.key)).unwrap_or_default()
    })
}

/// Every version of the vault's key, unwrapped, oldest first (for the
/// vault's key file). An unencrypted vault has none: a precondition error.
pub async fn export_keys(
    conn: &mut PgConnection,
    cipher: &Cipher,
    vault_id: &str,
) -> Result<Vec<(u32, SecretKey)>> {
    let vault = vaults::get(&mut *conn, vault_id).await?;
    if vault.encryption == Encryption::None {
        return Err(CoordinatorError::precondition(format!(
            "vault \"{vault_id}\" is not encrypted: its points open without a key (export them with `pgvault recovery-point export` and no --key-file)"
        )));
    }
    let mut out = Vec::new();
    for version in keys::vault_key_versions(&mut *conn, vault_id).await? {
        out.push((version, vault_key(conn, cipher, vault_id, version).await?));
    }
    Ok(out)
}

/// A new version of the vault's key; every data key of the vault rewrapped
/// under it, in the caller's transaction. Older versions are kept: the key
/// objects of points backed up under them still name them
/// (the vault row locked). Returns the new version and the keys rewrapped.
pub async fn rotate(
    conn: &mut PgConnection,
    cipher: &Cipher,
    vault_id: &str,
) -> Result<(u32, u32)> {
    vaults::lock(&mut *conn, vault_id).await?;
    let vault = vaults::get(&mut *conn, vault_id).await?;
    if vault.encryption == Encryption::None {
        return Err(CoordinatorError::precondition(format!(
            "vault \"{vault_id}\" is not encrypted: it has no key to rotate (encryption is chosen when a vault is created)"
        )));
    }
    let version = vault.key_version + 1;
    let new_key = SecretKey::generate();
    let wrapped = cipher.wrap_key(&vault_key_aad(vault_id, version), &new_key);
    keys::insert_vault_key(&mut *conn, vault_id, version, &wrapped).await?;
    let mut old_keys: Vec<(u32, SecretKey)> = Vec::new();
    let rows = keys::point_keys_of_vault(&mut *conn, vault_id).await?;
    let mut rewrapped = 0u32;
    for row in rows {
        let old = u32::try_from(row.vault_key_version).unwrap_or(0);
        let old_key = match old_keys.iter().find(|(v, _)| *v == old) {
            Some((_, key)) => key.clone(),
            None => {
                let key = vault_key(conn, cipher, vault_id, old).await?;
                old_keys.push((old, key.clone()));
                key
            }
        };
        let aad = data_key_aad(&row.point_id.to_string());
        let data_key =
            pgvault_seal::wrap::unwrap(&old_key, &aad, &row.wrapped_key).ok_or_else(|| {
                CoordinatorError::precondition(format!(
                    "the data key of recovery point {} does not unwrap; nothing was rotated",
                    row.point_id
                ))
            })?;
        let wrapped = pgvault_seal::wrap::wrap(&new_key, &aad, &data_key);
        keys::rewrap_point_key(&mut *conn, row.point_id, version, &wrapped).await?;
        rewrapped += 1;
    }
    Ok((version, rewrapped))
}
