//! Vaults: named containers bound to a region and to datastore URLs.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use crate::error::{CoordinatorError, Result, is_any_unique_violation};
use crate::model::{Encryption, Vault};

#[derive(sqlx::FromRow)]
struct VaultRow {
    id: String,
    region: String,
    standard_datastore: String,
    archive_datastore: String,
    description: String,
    create_time: DateTime<Utc>,
    soft_delete_days: i32,
    lock_time: Option<DateTime<Utc>>,
    encryption: String,
    key_version: i32,
}

impl From<VaultRow> for Vault {
    fn from(r: VaultRow) -> Self {
        Vault {
            id: r.id,
            region: r.region,
            standard_datastore: r.standard_datastore,
            archive_datastore: r.archive_datastore,
            description: r.description,
            create_time: r.create_time,
            soft_delete_days: u32::try_from(r.soft_delete_days).unwrap_or(1),
            lock_time: r.lock_time,
            // The column's CHECK allows only known values.
            encryption: Encryption::parse(&r.encryption).unwrap_or(Encryption::None),
            key_version: u32::try_from(r.key_version).unwrap_or(0),
        }
    }
}

const COLUMNS: &str = "id, region, standard_datastore, archive_datastore, description, create_time,
     soft_delete_days, lock_time, encryption,
     (SELECT coalesce(max(k.version), 0) FROM vault_keys k WHERE k.vault_id = vaults.id) AS key_version";

pub async fn insert(db: impl PgExecutor<'_>, vault: &Vault) -> Result<Vault> {
    let sql = format!(
        "INSERT INTO vaults (id, region, standard_datastore, archive_datastore, description, soft_delete_days, encryption)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
    );
    sqlx::query_as::<_, VaultRow>(&sql)
        .bind(&vault.id)
        .bind(&vault.region)
        .bind(&vault.standard_datastore)
        .bind(&vault.archive_datastore)
        .bind(&vault.description)
        .bind(crate::store::to_i32(vault.soft_delete_days))
        .bind(vault.encryption.as_str())
        .fetch_one(db)
        .await
        .map(Vault::from)
        .map_err(|e| {
            if is_any_unique_violation(&e) {
                CoordinatorError::AlreadyExists(format!("vault \"{}\" already exists", vault.id))
            } else {
                e.into()
            }
        })
}

pub async fn get(db: impl PgExecutor<'_>, id: &str) -> Result<Vault> {
    let sql = format!("SELECT {COLUMNS} FROM vaults WHERE id = $1");
    sqlx::query_as::<_, VaultRow>(&sql)
        .bind(id)
        .fetch_optional(db)
        .await?
        .map(Vault::from)
        .ok_or_else(|| CoordinatorError::not_found("vault", id))
}

/// Up to `limit` vaults ordered by id, after `after`.
pub async fn list(db: impl PgExecutor<'_>, after: Option<&str>, limit: i64) -> Result<Vec<Vault>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM vaults WHERE ($1::text IS NULL OR id > $1) ORDER BY id LIMIT $2"
    );
    let rows = sqlx::query_as::<_, VaultRow>(&sql)
        .bind(after)
        .bind(limit)
        .fetch_all(db)
        .await?;
    Ok(rows.into_iter().map(Vault::from).collect())
}

/// Deletes the vault (and its policies). The caller checked it holds no instances.
pub async fn delete(db: impl PgExecutor<'_>, id: &str) -> Result<()> {
    let done = sqlx::query("DELETE FROM vaults WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?;
    if done.rows_affected() == 0 {
        return Err(CoordinatorError::not_found("vault", id));
    }
    Ok(())
}

/// Locks the vault row until the transaction ends (serialises deletes with configures).
pub async fn lock(db: impl PgExecutor<'_>, id: &str) -> Result<()> {
    sqlx::query("SELECT id FROM vaults WHERE id = $1 FOR UPDATE")
        .bind(id)
        .fetch_optional(db)
        .await?
        .map(|_| ())
        .ok_or_else(|| CoordinatorError::not_found("vault", id))
}

/// Sets the vault's soft-delete window (the caller checked the lock).
pub async fn set_soft_delete_days(db: impl PgExecutor<'_>, id: &str, days: u32) -> Result<()> {
    sqlx::query("UPDATE vaults SET soft_delete_days = $2 WHERE id = $1")
        .bind(id)
        .bind(crate::store::to_i32(days))
        .execute(db)
        .await?;
    Ok(())
}

/// Locks the vault for good (a lock already set keeps its time).
pub async fn set_locked(db: impl PgExecutor<'_>, id: &str, now: DateTime<Utc>) -> Result<()> {
    sqlx::query("UPDATE vaults SET lock_time = coalesce(lock_time, $2) WHERE id = $1")
        .bind(id)
        .bind(now)
        .execute(db)
        .await?;
    Ok(())
}
