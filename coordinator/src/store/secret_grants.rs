//! Which vaults may read which stored secrets (`secret_grants`). A vault
//! without a grant cannot configure rows with the secret, and jobs of its
//! instances fail at claim until it is granted again.

use std::collections::BTreeMap;

use sqlx::PgExecutor;

use crate::error::Result;

/// Grants `vault_id` read access to `secret_id`; true when it was new.
pub async fn grant(db: impl PgExecutor<'_>, vault_id: &str, secret_id: &str) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO secret_grants (vault_id, secret_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(vault_id)
    .bind(secret_id)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Revokes it; true when a grant existed.
pub async fn revoke(db: impl PgExecutor<'_>, vault_id: &str, secret_id: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM secret_grants WHERE vault_id = $1 AND secret_id = $2")
        .bind(vault_id)
        .bind(secret_id)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn is_granted(db: impl PgExecutor<'_>, vault_id: &str, secret_id: &str) -> Result<bool> {
    let (granted,): (bool,) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM secret_grants WHERE vault_id = $1 AND secret_id = $2)",
    )
    .bind(vault_id)
    .bind(secret_id)
    .fetch_one(db)
    .await?;
    Ok(granted)
}

/// The vaults granted each of `secret_ids`, sorted.
pub async fn vaults_of(
    db: impl PgExecutor<'_>,
    secret_ids: &[String],
) -> Result<BTreeMap<String, Vec<String>>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT secret_id, vault_id FROM secret_grants WHERE secret_id = ANY($1)
         ORDER BY secret_id, vault_id",
    )
    .bind(secret_ids)
    .fetch_all(db)
    .await?;
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (secret, vault) in rows {
        map.entry(secret).or_default().push(vault);
    }
    Ok(map)
}
