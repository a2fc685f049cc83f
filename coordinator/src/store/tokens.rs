//! API tokens: only their SHA-256 is stored, with the token's global role
//! (empty for none); roles on single vaults are in `store::roles`.

use sqlx::PgExecutor;
use uuid::Uuid;

use crate::error::Result;

/// A token row as authentication needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenRow {
    pub id: Uuid,
    pub name: String,
    pub token_sha256: Vec<u8>,
    pub role: String,
}

pub async fn find_by_hash(db: impl PgExecutor<'_>, hash: &[u8]) -> Result<Option<TokenRow>> {
    Ok(sqlx::query_as::<_, TokenRow>(
        "SELECT id, name, token_sha256, role FROM api_tokens WHERE token_sha256 = $1",
    )
    .bind(hash)
    .fetch_optional(db)
    .await?)
}

/// Stores a token hash unless it exists already. True when inserted.
pub async fn insert_if_absent(
    db: impl PgExecutor<'_>,
    name: &str,
    hash: &[u8],
    role: &str,
) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO api_tokens (id, name, token_sha256, role) VALUES ($1, $2, $3, $4)
         ON CONFLICT (token_sha256) DO NOTHING",
    )
    .bind(Uuid::new_v4())
    .bind(name)
    .bind(hash)
    .bind(role)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn count(db: impl PgExecutor<'_>) -> Result<i64> {
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM api_tokens")
        .fetch_one(db)
        .await?;
    Ok(n)
}

/// A token as listed (never its hash).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenInfo {
    pub id: Uuid,
    pub name: String,
    /// Global role; empty when none.
    pub role: String,
    pub create_time: chrono::DateTime<chrono::Utc>,
}

/// Stores a new token with its global role ('' for none).
pub async fn insert(
    db: impl PgExecutor<'_>,
    id: Uuid,
    name: &str,
    hash: &[u8],
    role: &str,
) -> Result<TokenInfo> {
    Ok(sqlx::query_as::<_, TokenInfo>(
        "INSERT INTO api_tokens (id, name, token_sha256, role) VALUES ($1, $2, $3, $4)
         RETURNING id, name, role, create_time",
    )
    .bind(id)
    .bind(name)
    .bind(hash)
    .bind(role)
    .fetch_one(db)
    .await?)
}

pub async fn list(db: impl PgExecutor<'_>) -> Result<Vec<TokenInfo>> {
    Ok(sqlx::query_as::<_, TokenInfo>(
        "SELECT id, name, role, create_time FROM api_tokens ORDER BY create_time, id",
    )
    .fetch_all(db)
    .await?)
}

pub async fn find(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<TokenInfo>> {
    Ok(sqlx::query_as::<_, TokenInfo>(
        "SELECT id, name, role, create_time FROM api_tokens WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await?)
}

/// Deletes a token (its vault roles go with it). True when it existed.
pub async fn delete(db: impl PgExecutor<'_>, id: Uuid) -> Result<bool> {
    let done = sqlx::query("DELETE FROM api_tokens WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Sets a token's global role ('' removes it). True when the token exists.
pub async fn set_global_role(db: impl PgExecutor<'_>, id: Uuid, role: &str) -> Result<bool> {
    let done = sqlx::query("UPDATE api_tokens SET role = $2 WHERE id = $1")
        .bind(id)
        .bind(role)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}
