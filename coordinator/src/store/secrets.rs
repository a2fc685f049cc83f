//! Secrets: metadata rows plus sealed, versioned values. Nothing here ever
//! sees a plaintext value; sealing happens in `crate::secrets`.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use crate::error::{CoordinatorError, Result};
use crate::model::SecretMeta;
use crate::secrets::Sealed;
use crate::store::to_u32;

#[derive(sqlx::FromRow)]
struct SecretRow {
    id: String,
    latest_version: i32,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
}

impl TryFrom<SecretRow> for SecretMeta {
    type Error = CoordinatorError;
    fn try_from(r: SecretRow) -> Result<Self> {
        Ok(SecretMeta {
            latest_version: to_u32(r.latest_version, "secrets.latest_version")?,
            id: r.id,
            create_time: r.create_time,
            update_time: r.update_time,
        })
    }
}

const COLUMNS: &str = "id, latest_version, create_time, update_time";

/// Creates the secret at version 1, or raises its latest version by one.
/// Run in the transaction that then stores the sealed value.
pub async fn next_version(db: impl PgExecutor<'_>, id: &str) -> Result<SecretMeta> {
    let sql = format!(
        "INSERT INTO secrets (id, latest_version) VALUES ($1, 1)
         ON CONFLICT (id) DO UPDATE SET latest_version = secrets.latest_version + 1, update_time = now()
         RETURNING {COLUMNS}"
    );
    sqlx::query_as::<_, SecretRow>(&sql)
        .bind(id)
        .fetch_one(db)
        .await?
        .try_into()
}

pub async fn insert_version(
    db: impl PgExecutor<'_>,
    id: &str,
    version: u32,
    sealed: &Sealed,
) -> Result<()> {
    sqlx::query("INSERT INTO secret_versions (secret_id, version, nonce, ciphertext) VALUES ($1, $2, $3, $4)")
        .bind(id)
        .bind(crate::store::to_i32(version))
        .bind(&sealed.nonce)
        .bind(&sealed.ciphertext)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn find(db: impl PgExecutor<'_>, id: &str) -> Result<Option<SecretMeta>> {
    let sql = format!("SELECT {COLUMNS} FROM secrets WHERE id = $1");
    sqlx::query_as::<_, SecretRow>(&sql)
        .bind(id)
        .fetch_optional(db)
        .await?
        .map(SecretMeta::try_from)
        .transpose()
}

pub async fn list(
    db: impl PgExecutor<'_>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<SecretMeta>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM secrets WHERE ($1::text IS NULL OR id > $1) ORDER BY id LIMIT $2"
    );
    let rows = sqlx::query_as::<_, SecretRow>(&sql)
        .bind(after)
        .bind(limit)
        .fetch_all(db)
        .await?;
    rows.into_iter().map(SecretMeta::try_from).collect()
}

/// The sealed value of the secret's latest version, with that version.
pub async fn latest_sealed(db: impl PgExecutor<'_>, id: &str) -> Result<(u32, Sealed)> {
    let row: Option<(i32, Vec<u8>, Vec<u8>)> = sqlx::query_as(
        "SELECT v.version, v.nonce, v.ciphertext FROM secrets s
         JOIN secret_versions v ON v.secret_id = s.id AND v.version = s.latest_version
         WHERE s.id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await?;
    let (version, nonce, ciphertext) =
        row.ok_or_else(|| CoordinatorError::not_found("secret", id))?;
    Ok((
        to_u32(version, "secret_versions.version")?,
        Sealed { nonce, ciphertext },
    ))
}

/// The sealed value of version `version` of the secret, if it exists.
pub async fn sealed_version(
    db: impl PgExecutor<'_>,
    id: &str,
    version: u32,
) -> Result<Option<Sealed>> {
    let row: Option<(Vec<u8>, Vec<u8>)> = sqlx::query_as(
        "SELECT nonce, ciphertext FROM secret_versions WHERE secret_id = $1 AND version = $2",
    )
    .bind(id)
    .bind(crate::store::to_i32(version))
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(nonce, ciphertext)| Sealed { nonce, ciphertext }))
}
