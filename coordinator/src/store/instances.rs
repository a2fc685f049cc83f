//! Backup instances: one database on one server protected in one vault.
//! `UNIQUE (server_id, database)` makes "at most one vault" hold under races.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::error::{CoordinatorError, Result, is_unique_violation};
use crate::model::{BackupInstance, ProtectionState};
use crate::store::parse_enum;

/// Constraint protecting a database at most once.
pub const ONE_VAULT_PER_DATABASE: &str = "backup_instances_server_database_key";

#[derive(sqlx::FromRow)]
struct InstanceRow {
    id: Uuid,
    vault_id: String,
    server_id: String,
    database: String,
    policy_id: String,
    secret_id: String,
    protection_state: String,
    create_time: DateTime<Utc>,
}

impl TryFrom<InstanceRow> for BackupInstance {
    type Error = CoordinatorError;
    fn try_from(r: InstanceRow) -> Result<Self> {
        Ok(BackupInstance {
            protection_state: parse_enum(
                &r.protection_state,
                "backup_instances.protection_state",
                ProtectionState::parse,
            )?,
            id: r.id,
            vault_id: r.vault_id,
            server_id: r.server_id,
            database: r.database,
            policy_id: r.policy_id,
            secret_id: r.secret_id,
            create_time: r.create_time,
        })
    }
}

const COLUMNS: &str =
    "id, vault_id, server_id, database, policy_id, secret_id, protection_state, create_time";

/// Outcome of an insert that may hit the one-vault-per-database rule.
pub enum Inserted {
    Created(BackupInstance),
    AlreadyProtected,
}

pub async fn insert(db: impl PgExecutor<'_>, instance: &BackupInstance) -> Result<Inserted> {
    let sql = format!(
        "INSERT INTO backup_instances (id, vault_id, server_id, database, policy_id, secret_id, protection_state)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
    );
    let result = sqlx::query_as::<_, InstanceRow>(&sql)
        .bind(instance.id)
        .bind(&instance.vault_id)
        .bind(&instance.server_id)
        .bind(&instance.database)
        .bind(&instance.policy_id)
        .bind(&instance.secret_id)
        .bind(instance.protection_state.as_str())
        .fetch_one(db)
        .await;
    match result {
        Ok(row) => Ok(Inserted::Created(row.try_into()?)),
        Err(e) if is_unique_violation(&e, ONE_VAULT_PER_DATABASE) => Ok(Inserted::AlreadyProtected),
        Err(e) => Err(e.into()),
    }
}

/// The instance protecting `database` on `server_id`, if any.
pub async fn find_by_database(
    db: impl PgExecutor<'_>,
    server_id: &str,
    database: &str,
) -> Result<Option<BackupInstance>> {
    let sql =
        format!("SELECT {COLUMNS} FROM backup_instances WHERE server_id = $1 AND database = $2");
    sqlx::query_as::<_, InstanceRow>(&sql)
        .bind(server_id)
        .bind(database)
        .fetch_optional(db)
        .await?
        .map(BackupInstance::try_from)
        .transpose()
}

/// The instance with `id` in vault `vault_id` (NotFound names the resource).
pub async fn get(db: impl PgExecutor<'_>, vault_id: &str, id: Uuid) -> Result<BackupInstance> {
    let sql = format!("SELECT {COLUMNS} FROM backup_instances WHERE id = $1 AND vault_id = $2");
    sqlx::query_as::<_, InstanceRow>(&sql)
        .bind(id)
        .bind(vault_id)
        .fetch_optional(db)
        .await?
        .map(BackupInstance::try_from)
        .transpose()?
        .ok_or_else(|| {
            CoordinatorError::not_found(
                "backup instance",
                crate::names::instance_name(vault_id, id),
            )
        })
}

pub async fn get_by_id(db: impl PgExecutor<'_>, id: Uuid) -> Result<BackupInstance> {
    let sql = format!("SELECT {COLUMNS} FROM backup_instances WHERE id = $1");
    sqlx::query_as::<_, InstanceRow>(&sql)
        .bind(id)
        .fetch_optional(db)
        .await?
        .map(BackupInstance::try_from)
        .transpose()?
        .ok_or_else(|| CoordinatorError::not_found("backup instance", id))
}

/// The instance `id`, its row locked for the rest of the transaction.
pub async fn lock_by_id(db: impl PgExecutor<'_>, id: Uuid) -> Result<BackupInstance> {
    let sql = format!("SELECT {COLUMNS} FROM backup_instances WHERE id = $1 FOR UPDATE");
    sqlx::query_as::<_, InstanceRow>(&sql)
        .bind(id)
        .fetch_optional(db)
        .await?
        .map(BackupInstance::try_from)
        .transpose()?
        .ok_or_else(|| CoordinatorError::not_found("backup instance", id))
}

/// Points the instance at another policy; its schedule counts from `since`.
pub async fn set_policy(
    db: impl PgExecutor<'_>,
    id: Uuid,
    policy_id: &str,
    since: DateTime<Utc>,
) -> Result<()> {
    sqlx::query("UPDATE backup_instances SET policy_id = $2, schedule_since = $3 WHERE id = $1")
        .bind(id)
        .bind(policy_id)
        .bind(since)
        .execute(db)
        .await?;
    Ok(())
}

/// Stops or resumes protection; a resumed schedule counts from `since`.
pub async fn set_protection(
    db: impl PgExecutor<'_>,
    id: Uuid,
    state: ProtectionState,
    since: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "UPDATE backup_instances SET protection_state = $2, schedule_since = $3 WHERE id = $1",
    )
    .bind(id)
    .bind(state.as_str())
    .bind(since)
    .execute(db)
    .await?;
    Ok(())
}

/// Instances of one vault (or all when `vault_id` is None), oldest first.
pub async fn list(
    db: impl PgExecutor<'_>,
    vault_id: Option<&str>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<BackupInstance>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM backup_instances
         WHERE ($1::text IS NULL OR vault_id = $1)
           AND ($2::timestamptz IS NULL OR (create_time, id) > ($2, $3))
         ORDER BY create_time, id LIMIT $4"
    );
    let rows = sqlx::query_as::<_, InstanceRow>(&sql)
        .bind(vault_id)
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1))
        .bind(limit)
        .fetch_all(db)
        .await?;
    rows.into_iter().map(BackupInstance::try_from).collect()
}

pub async fn count_in_vault(db: impl PgExecutor<'_>, vault_id: &str) -> Result<i64> {
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM backup_instances WHERE vault_id = $1")
        .bind(vault_id)
        .fetch_one(db)
        .await?;
    Ok(n)
}
