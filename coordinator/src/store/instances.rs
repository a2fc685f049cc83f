//! Backup instances: one database on one server protected in one vault, and
//! configure rows kept after a failed validation. A unique index on
//! `(server_id, database)` over protected states makes "at most one vault"
//! hold under races; kept failed rows are outside it. Every row has a short
//! name unique in its vault, given on insert (`crate::short_names`).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use crate::error::{CoordinatorError, Result, is_unique_violation};
use crate::model::{BackupInstance, JobError, ProtectionState};
use crate::secret_ref::SecretRef;
use crate::store::{parse_enum, to_i32, to_u32};

/// Unique index protecting a database at most once.
pub const ONE_VAULT_PER_DATABASE: &str = "backup_instances_protected_database_key";

/// Unique constraint keeping short names unique per vault.
pub const SHORT_NAME_PER_VAULT: &str = "backup_instances_short_name_key";

/// Inserts racing for the same short name retry this often.
const NAMING_ATTEMPTS: usize = 8;

#[derive(sqlx::FromRow)]
struct InstanceRow {
    id: Uuid,
    vault_id: String,
    server_id: String,
    database: String,
    short_name: String,
    policy_id: String,
    secret_id: Option<String>,
    secret_version: Option<i32>,
    secret_external: Option<String>,
    protection_state: String,
    last_error_code: Option<String>,
    last_error_message: Option<String>,
    last_error_action: Option<String>,
    create_time: DateTime<Utc>,
}

/// The reference as stored: a secret id (+ pinned version) or an external URI.
fn secret_ref(r: &InstanceRow) -> Result<SecretRef> {
    match (&r.secret_id, &r.secret_external) {
        (Some(id), None) => Ok(SecretRef::Stored {
            id: id.clone(),
            version: r
                .secret_version
                .map(|v| to_u32(v, "backup_instances.secret_version"))
                .transpose()?,
        }),
        (None, Some(uri)) => SecretRef::parse("backup_instances.secret_external", uri)
            .map_err(|e| CoordinatorError::internal(format!("corrupt secret reference: {e}"))),
        _ => Err(CoordinatorError::internal(
            "backup instance has no single secret reference",
        )),
    }
}

/// Columns `(secret_id, secret_version, secret_external)` for a reference.
fn secret_columns(r: &SecretRef) -> (Option<&str>, Option<i32>, Option<String>) {
    match r {
        SecretRef::Stored { id, version } => (Some(id), version.map(to_i32), None),
        other => (None, None, Some(other.to_string())),
    }
}

impl TryFrom<InstanceRow> for BackupInstance {
    type Error = CoordinatorError;
    fn try_from(r: InstanceRow) -> Result<Self> {
        let secret = secret_ref(&r)?;
        let last_error = r.last_error_code.map(|code| JobError {
            code,
            message: r.last_error_message.unwrap_or_default(),
            recommended_action: r.last_error_action.unwrap_or_default(),
        });
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
            short_name: r.short_name,
            policy_id: r.policy_id,
            secret,
            last_error,
            create_time: r.create_time,
        })
    }
}

const COLUMNS: &str = "id, vault_id, server_id, database, short_name, policy_id, secret_id, secret_version, \
     secret_external, protection_state, last_error_code, last_error_message, last_error_action, create_time";

/// Outcome of an insert that may hit the one-vault-per-database rule.
pub enum Inserted {
    Created(Box<BackupInstance>),
    AlreadyProtected,
}

/// Inserts `instance` under a short name free in its vault (its
/// `short_name` is ignored): `<server>-<database>`, suffixed when taken.
/// Concurrent inserts picking the same name retry with the next one.
pub async fn insert(pool: &PgPool, instance: &BackupInstance) -> Result<Inserted> {
    for _ in 0..NAMING_ATTEMPTS {
        let taken = short_names_like(pool, &instance.vault_id, &instance.server_id).await?;
        let short_name =
            crate::short_names::short_name_for(&instance.server_id, &instance.database, |name| {
                taken.contains(name)
            });
        match insert_named(pool, instance, &short_name).await {
            Err(e) if is_unique_violation(&e, SHORT_NAME_PER_VAULT) => continue,
            Err(e) if is_unique_violation(&e, ONE_VAULT_PER_DATABASE) => {
                return Ok(Inserted::AlreadyProtected);
            }
            Err(e) => return Err(e.into()),
            Ok(row) => return Ok(Inserted::Created(Box::new(row.try_into()?))),
        }
    }
    Err(CoordinatorError::Unavailable(format!(
        "could not name a backup instance of \"{}\" on server \"{}\": other configures kept taking the same short name; try again",
        instance.database, instance.server_id
    )))
}

/// The short names in `vault_id` a new instance of `server_id` could
/// collide with (they all start with the sanitised server id's first
/// characters; a superset is fine).
async fn short_names_like(
    db: impl PgExecutor<'_>,
    vault_id: &str,
    server_id: &str,
) -> Result<HashSet<String>> {
    let prefix = crate::short_names::collision_prefix(server_id);
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT short_name FROM backup_instances
         WHERE vault_id = $1 AND left(short_name, length($2)) = $2",
    )
    .bind(vault_id)
    .bind(prefix)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|(name,)| name).collect())
}

async fn insert_named(
    db: impl PgExecutor<'_>,
    instance: &BackupInstance,
    short_name: &str,
) -> std::result::Result<InstanceRow, sqlx::Error> {
    let sql = format!(
        "INSERT INTO backup_instances (id, vault_id, server_id, database, short_name, policy_id,
             secret_id, secret_version, secret_external, protection_state)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {COLUMNS}"
    );
    let (secret_id, secret_version, secret_external) = secret_columns(&instance.secret);
    sqlx::query_as::<_, InstanceRow>(&sql)
        .bind(instance.id)
        .bind(&instance.vault_id)
        .bind(&instance.server_id)
        .bind(&instance.database)
        .bind(short_name)
        .bind(&instance.policy_id)
        .bind(secret_id)
        .bind(secret_version)
        .bind(secret_external)
        .bind(instance.protection_state.as_str())
        .fetch_one(db)
        .await
}

/// The id of the instance named `short_name` in `vault_id`, if any.
pub async fn find_id_by_short_name(
    db: impl PgExecutor<'_>,
    vault_id: &str,
    short_name: &str,
) -> Result<Option<Uuid>> {
    let row: Option<(Uuid,)> =
        sqlx::query_as("SELECT id FROM backup_instances WHERE vault_id = $1 AND short_name = $2")
            .bind(vault_id)
            .bind(short_name)
            .fetch_optional(db)
            .await?;
    Ok(row.map(|(id,)| id))
}

/// A kept row configured again: new policy and secret, state PROTECTION_VALIDATING.
pub async fn reconfigure(
    db: impl PgExecutor<'_>,
    id: Uuid,
    policy_id: &str,
    secret: &SecretRef,
) -> Result<BackupInstance> {
    let sql = format!(
        "UPDATE backup_instances SET policy_id = $2, secret_id = $3, secret_version = $4,
             secret_external = $5, protection_state = 'PROTECTION_VALIDATING'
         WHERE id = $1 RETURNING {COLUMNS}"
    );
    let (secret_id, secret_version, secret_external) = secret_columns(secret);
    sqlx::query_as::<_, InstanceRow>(&sql)
        .bind(id)
        .bind(policy_id)
        .bind(secret_id)
        .bind(secret_version)
        .bind(secret_external)
        .fetch_optional(db)
        .await?
        .map(BackupInstance::try_from)
        .transpose()?
        .ok_or_else(|| CoordinatorError::not_found("backup instance", id))
}

/// Marks a not-protected row PROTECTION_VALIDATING while its checks run.
pub async fn set_validating(db: impl PgExecutor<'_>, id: Uuid) -> Result<()> {
    sqlx::query(
        "UPDATE backup_instances SET protection_state = 'PROTECTION_VALIDATING'
         WHERE id = $1 AND protection_state IN ('PROTECTION_VALIDATING', 'PROTECTION_VALIDATION_FAILED')",
    )
    .bind(id)
    .execute(db)
    .await?;
    Ok(())
}

/// Records a failed validation of a not-protected row.
pub async fn set_validation_failed(
    db: impl PgExecutor<'_>,
    id: Uuid,
    error: &JobError,
) -> Result<()> {
    sqlx::query(
        "UPDATE backup_instances SET protection_state = 'PROTECTION_VALIDATION_FAILED',
             last_error_code = $2, last_error_message = $3, last_error_action = $4
         WHERE id = $1 AND protection_state IN ('PROTECTION_VALIDATING', 'PROTECTION_VALIDATION_FAILED')",
    )
    .bind(id)
    .bind(&error.code)
    .bind(&error.message)
    .bind(&error.recommended_action)
    .execute(db)
    .await?;
    Ok(())
}

/// Protects a row that passed validation; its schedule counts from `since`.
/// `AlreadyProtected` when another vault protected the database meanwhile.
pub async fn set_protected(
    db: impl PgExecutor<'_>,
    id: Uuid,
    since: DateTime<Utc>,
) -> Result<Inserted> {
    let sql = format!(
        "UPDATE backup_instances SET protection_state = 'PROTECTION_CONFIGURED', schedule_since = $2,
             last_error_code = NULL, last_error_message = NULL, last_error_action = NULL
         WHERE id = $1 RETURNING {COLUMNS}"
    );
    let result = sqlx::query_as::<_, InstanceRow>(&sql)
        .bind(id)
        .bind(since)
        .fetch_optional(db)
        .await;
    match result {
        Ok(Some(row)) => Ok(Inserted::Created(Box::new(row.try_into()?))),
        Ok(None) => Err(CoordinatorError::not_found("backup instance", id)),
        Err(e) if is_unique_violation(&e, ONE_VAULT_PER_DATABASE) => Ok(Inserted::AlreadyProtected),
        Err(e) => Err(e.into()),
    }
}

/// A kept (not protected) row for `database` on `server_id` in `vault_id`.
pub async fn find_kept(
    db: impl PgExecutor<'_>,
    vault_id: &str,
    server_id: &str,
    database: &str,
) -> Result<Option<BackupInstance>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM backup_instances
         WHERE vault_id = $1 AND server_id = $2 AND database = $3
           AND protection_state IN ('PROTECTION_VALIDATING', 'PROTECTION_VALIDATION_FAILED')
         ORDER BY create_time LIMIT 1"
    );
    sqlx::query_as::<_, InstanceRow>(&sql)
        .bind(vault_id)
        .bind(server_id)
        .bind(database)
        .fetch_optional(db)
        .await?
        .map(BackupInstance::try_from)
        .transpose()
}

/// The instance protecting `database` on `server_id`, if any (kept rows
/// whose validation failed do not protect it).
pub async fn find_by_database(
    db: impl PgExecutor<'_>,
    server_id: &str,
    database: &str,
) -> Result<Option<BackupInstance>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM backup_instances WHERE server_id = $1 AND database = $2
           AND protection_state NOT IN ('PROTECTION_VALIDATING', 'PROTECTION_VALIDATION_FAILED')"
    );
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

/// Deletes the vault's kept rows that never got protected (they own no
/// jobs nor points); returns how many.
pub async fn delete_kept_in_vault(db: impl PgExecutor<'_>, vault_id: &str) -> Result<u64> {
    let done = sqlx::query(
        "DELETE FROM backup_instances WHERE vault_id = $1
           AND protection_state IN ('PROTECTION_VALIDATING', 'PROTECTION_VALIDATION_FAILED')
           AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.backup_instance_id = backup_instances.id)",
    )
    .bind(vault_id)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

pub async fn count_in_vault(db: impl PgExecutor<'_>, vault_id: &str) -> Result<i64> {
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM backup_instances WHERE vault_id = $1")
        .bind(vault_id)
        .fetch_one(db)
        .await?;
    Ok(n)
}

/// The instances of `vault_id` on `server_id`, in any state, by database.
pub async fn on_server(
    db: impl PgExecutor<'_>,
    vault_id: &str,
    server_id: &str,
) -> Result<Vec<BackupInstance>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM backup_instances WHERE vault_id = $1 AND server_id = $2
         ORDER BY database, create_time"
    );
    let rows = sqlx::query_as::<_, InstanceRow>(&sql)
        .bind(vault_id)
        .bind(server_id)
        .fetch_all(db)
        .await?;
    rows.into_iter().map(BackupInstance::try_from).collect()
}
