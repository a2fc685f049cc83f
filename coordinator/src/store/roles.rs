//! Roles of tokens on single vaults (`vault_role_assignments`). Global roles
//! live on the token row (`store::tokens`).

use sqlx::PgExecutor;
use uuid::Uuid;

use crate::error::Result;

/// One vault role of one token.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct VaultRole {
    pub token_id: Uuid,
    pub vault_id: String,
    pub role: String,
}

/// The token's role on `vault_id`, if any.
pub async fn on_vault(
    db: impl PgExecutor<'_>,
    token_id: Uuid,
    vault_id: &str,
) -> Result<Option<String>> {
    let row: Option<(String,)> = sqlx::query_as(
        "SELECT role FROM vault_role_assignments WHERE token_id = $1 AND vault_id = $2",
    )
    .bind(token_id)
    .bind(vault_id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(r,)| r))
}

/// Sets (or replaces) the token's role on a vault.
pub async fn assign(
    db: impl PgExecutor<'_>,
    token_id: Uuid,
    vault_id: &str,
    role: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO vault_role_assignments (token_id, vault_id, role) VALUES ($1, $2, $3)
         ON CONFLICT (token_id, vault_id) DO UPDATE SET role = EXCLUDED.role",
    )
    .bind(token_id)
    .bind(vault_id)
    .bind(role)
    .execute(db)
    .await?;
    Ok(())
}

/// Removes the token's role on a vault. True when there was one.
pub async fn remove(db: impl PgExecutor<'_>, token_id: Uuid, vault_id: &str) -> Result<bool> {
    let done =
        sqlx::query("DELETE FROM vault_role_assignments WHERE token_id = $1 AND vault_id = $2")
            .bind(token_id)
            .bind(vault_id)
            .execute(db)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// Every vault role, optionally of one token.
pub async fn list(db: impl PgExecutor<'_>, token_id: Option<Uuid>) -> Result<Vec<VaultRole>> {
    Ok(sqlx::query_as::<_, VaultRole>(
        "SELECT token_id, vault_id, role FROM vault_role_assignments
         WHERE ($1::uuid IS NULL OR token_id = $1) ORDER BY token_id, vault_id",
    )
    .bind(token_id)
    .fetch_all(db)
    .await?)
}
