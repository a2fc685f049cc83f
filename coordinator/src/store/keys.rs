//! Keys as stored: each version of a vault's key (wrapped by the master
//! key) and each recovery point's data key (wrapped by a version of its
//! vault's key). Unwrapping is `crate::encryption`'s; this module only
//! reads and writes rows.

use sqlx::PgExecutor;
use uuid::Uuid;

use crate::error::Result;

/// A stored data key: which vault key version wraps it, and the bytes.
#[derive(sqlx::FromRow)]
pub struct PointKeyRow {
    pub point_id: Uuid,
    pub vault_key_version: i32,
    pub wrapped_key: Vec<u8>,
}

/// Holds the vault row against a key rotation (which locks it for update)
/// until the transaction ends; other claims share it.
pub async fn share_lock_vault(db: impl PgExecutor<'_>, vault_id: &str) -> Result<()> {
    sqlx::query("SELECT id FROM vaults WHERE id = $1 FOR SHARE")
        .bind(vault_id)
        .fetch_optional(db)
        .await?
        .map(|_| ())
        .ok_or_else(|| crate::error::CoordinatorError::not_found("vault", vault_id))
}

pub async fn insert_vault_key(
    db: impl PgExecutor<'_>,
    vault_id: &str,
    version: u32,
    wrapped: &[u8],
) -> Result<()> {
    sqlx::query("INSERT INTO vault_keys (vault_id, version, wrapped_key) VALUES ($1, $2, $3)")
        .bind(vault_id)
        .bind(crate::store::to_i32(version))
        .bind(wrapped)
        .execute(db)
        .await?;
    Ok(())
}

/// The newest version of the vault's key and its wrapped bytes, if any.
pub async fn latest_vault_key(
    db: impl PgExecutor<'_>,
    vault_id: &str,
) -> Result<Option<(u32, Vec<u8>)>> {
    let row: Option<(i32, Vec<u8>)> = sqlx::query_as(
        "SELECT version, wrapped_key FROM vault_keys WHERE vault_id = $1 ORDER BY version DESC LIMIT 1",
    )
    .bind(vault_id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(v, k)| (u32::try_from(v).unwrap_or(0), k)))
}

/// One version of the vault's key, wrapped.
pub async fn vault_key(
    db: impl PgExecutor<'_>,
    vault_id: &str,
    version: u32,
) -> Result<Option<Vec<u8>>> {
    let row: Option<(Vec<u8>,)> =
        sqlx::query_as("SELECT wrapped_key FROM vault_keys WHERE vault_id = $1 AND version = $2")
            .bind(vault_id)
            .bind(crate::store::to_i32(version))
            .fetch_optional(db)
            .await?;
    Ok(row.map(|(k,)| k))
}

/// The versions of the vault's key, oldest first.
pub async fn vault_key_versions(db: impl PgExecutor<'_>, vault_id: &str) -> Result<Vec<u32>> {
    let rows: Vec<(i32,)> =
        sqlx::query_as("SELECT version FROM vault_keys WHERE vault_id = $1 ORDER BY version")
            .bind(vault_id)
            .fetch_all(db)
            .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(v,)| u32::try_from(v).ok())
        .collect())
}

pub async fn insert_point_key(
    db: impl PgExecutor<'_>,
    point_id: Uuid,
    vault_id: &str,
    vault_key_version: u32,
    wrapped: &[u8],
) -> Result<()> {
    sqlx::query(
        "INSERT INTO point_keys (point_id, vault_id, vault_key_version, wrapped_key)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(point_id)
    .bind(vault_id)
    .bind(crate::store::to_i32(vault_key_version))
    .bind(wrapped)
    .execute(db)
    .await?;
    Ok(())
}

/// The point's data key row; `None`: the point is not encrypted.
pub async fn point_key(db: impl PgExecutor<'_>, point_id: Uuid) -> Result<Option<PointKeyRow>> {
    Ok(sqlx::query_as::<_, PointKeyRow>(
        "SELECT point_id, vault_key_version, wrapped_key FROM point_keys WHERE point_id = $1",
    )
    .bind(point_id)
    .fetch_optional(db)
    .await?)
}

/// Every data key of the vault (a rotation rewraps them all).
pub async fn point_keys_of_vault(
    db: impl PgExecutor<'_>,
    vault_id: &str,
) -> Result<Vec<PointKeyRow>> {
    Ok(sqlx::query_as::<_, PointKeyRow>(
        "SELECT point_id, vault_key_version, wrapped_key FROM point_keys WHERE vault_id = $1
         ORDER BY point_id",
    )
    .bind(vault_id)
    .fetch_all(db)
    .await?)
}

/// Forgets a deleted point's data key.
pub async fn delete_point_key(db: impl PgExecutor<'_>, point_id: Uuid) -> Result<()> {
    sqlx::query("DELETE FROM point_keys WHERE point_id = $1")
        .bind(point_id)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn rewrap_point_key(
    db: impl PgExecutor<'_>,
    point_id: Uuid,
    vault_key_version: u32,
    wrapped: &[u8],
) -> Result<()> {
    sqlx::query(
        "UPDATE point_keys SET vault_key_version = $2, wrapped_key = $3 WHERE point_id = $1",
    )
    .bind(point_id)
    .bind(crate::store::to_i32(vault_key_version))
    .bind(wrapped)
    .execute(db)
    .await?;
    Ok(())
}
