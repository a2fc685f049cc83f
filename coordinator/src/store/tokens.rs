//! API tokens: only their SHA-256 is stored, with a role for later
//! authorisation.

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
