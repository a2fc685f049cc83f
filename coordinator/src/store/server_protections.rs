//! Whole-server protections: a server whose every database a vault protects
//! (`--all-databases`), with the policy and secret new databases get, and
//! the record of each slot's auto-include pass. The pass claims its slot
//! with the run's primary key, so it runs once per slot.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use crate::error::{CoordinatorError, Result};
use crate::model::Schedule;
use crate::secret_ref::SecretRef;

/// A server protected whole by one vault.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerProtection {
    pub server_id: String,
    pub vault_id: String,
    pub policy_id: String,
    pub secret: SecretRef,
    /// Slots before this are never run.
    pub since: DateTime<Utc>,
    /// The globals also carry the roles' passwords (encrypted vaults only).
    pub role_passwords: bool,
}

/// A protection with its policy's schedule, as the auto-include pass sees it.
#[derive(Debug, Clone)]
pub struct Due {
    pub protection: ServerProtection,
    pub schedule: Schedule,
    /// The latest slot already passed, if any.
    pub last_slot: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct Row {
    server_id: String,
    vault_id: String,
    policy_id: String,
    secret_ref: String,
    schedule_since: DateTime<Utc>,
    role_passwords: bool,
}

impl TryFrom<Row> for ServerProtection {
    type Error = CoordinatorError;
    fn try_from(r: Row) -> Result<Self> {
        let secret = SecretRef::parse("server_protections.secret_ref", &r.secret_ref)
            .map_err(|e| CoordinatorError::internal(format!("corrupt secret reference: {e}")))?;
        Ok(ServerProtection {
            server_id: r.server_id,
            vault_id: r.vault_id,
            policy_id: r.policy_id,
            secret,
            since: r.schedule_since,
            role_passwords: r.role_passwords,
        })
    }
}

/// What recording a protection did.
#[derive(Debug, PartialEq)]
pub enum Recorded {
    /// New, or the same vault's updated with this policy and secret.
    Saved,
    /// Another vault protects the server whole.
    OtherVault(String),
}

/// Records (or updates, for the same vault) the whole-server protection.
/// Updating keeps `since`, so no past slot fires again.
pub async fn upsert(db: impl PgExecutor<'_>, p: &ServerProtection) -> Result<Recorded> {
    let (vault,): (String,) = sqlx::query_as(
        "INSERT INTO server_protections (server_id, vault_id, policy_id, secret_ref, schedule_since, role_passwords)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (server_id) DO UPDATE SET
             policy_id = CASE WHEN server_protections.vault_id = EXCLUDED.vault_id
                              THEN EXCLUDED.policy_id ELSE server_protections.policy_id END,
             secret_ref = CASE WHEN server_protections.vault_id = EXCLUDED.vault_id
                              THEN EXCLUDED.secret_ref ELSE server_protections.secret_ref END,
             role_passwords = CASE WHEN server_protections.vault_id = EXCLUDED.vault_id
                              THEN EXCLUDED.role_passwords ELSE server_protections.role_passwords END
         RETURNING vault_id",
    )
    .bind(&p.server_id)
    .bind(&p.vault_id)
    .bind(&p.policy_id)
    .bind(p.secret.to_string())
    .bind(p.since)
    .bind(p.role_passwords)
    .fetch_one(db)
    .await?;
    if vault == p.vault_id {
        Ok(Recorded::Saved)
    } else {
        Ok(Recorded::OtherVault(vault))
    }
}

/// The whole-server protection of `server_id`, if any.
pub async fn find(db: impl PgExecutor<'_>, server_id: &str) -> Result<Option<ServerProtection>> {
    sqlx::query_as::<_, Row>(
        "SELECT server_id, vault_id, policy_id, secret_ref, schedule_since, role_passwords
           FROM server_protections WHERE server_id = $1",
    )
    .bind(server_id)
    .fetch_optional(db)
    .await?
    .map(ServerProtection::try_from)
    .transpose()
}

#[derive(sqlx::FromRow)]
struct DueRow {
    #[sqlx(flatten)]
    row: Row,
    weekdays: Vec<i16>,
    time_of_day: String,
    time_zone: String,
    last_slot: Option<DateTime<Utc>>,
}

/// Every whole-server protection with its schedule and latest pass.
pub async fn all(db: impl PgExecutor<'_>) -> Result<Vec<Due>> {
    let rows: Vec<DueRow> = sqlx::query_as(
        "SELECT s.server_id, s.vault_id, s.policy_id, s.secret_ref, s.schedule_since, s.role_passwords,
                p.weekdays, p.time_of_day, p.time_zone,
                (SELECT max(r.slot_time) FROM server_protection_runs r
                  WHERE r.server_id = s.server_id) AS last_slot
           FROM server_protections s
           JOIN policies p ON p.vault_id = s.vault_id AND p.id = s.policy_id
          ORDER BY s.server_id",
    )
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(Due {
                protection: r.row.try_into()?,
                schedule: Schedule {
                    weekdays: r
                        .weekdays
                        .into_iter()
                        .filter_map(|d| u8::try_from(d).ok())
                        .collect(),
                    time_of_day: r.time_of_day,
                    time_zone: r.time_zone,
                },
                last_slot: r.last_slot,
            })
        })
        .collect()
}

/// Claims the pass of `slot`. False: it already ran.
pub async fn claim_run(
    db: impl PgExecutor<'_>,
    server_id: &str,
    slot: DateTime<Utc>,
) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO server_protection_runs (server_id, slot_time) VALUES ($1, $2)
         ON CONFLICT DO NOTHING",
    )
    .bind(server_id)
    .bind(slot)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// What one pass found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunRecord {
    pub included: Vec<String>,
    pub refused: Vec<String>,
    /// Protected databases the server no longer lists.
    pub missing: Vec<String>,
    pub error: String,
}

/// Records what the claimed pass of `slot` did.
pub async fn record_run(
    db: impl PgExecutor<'_>,
    server_id: &str,
    slot: DateTime<Utc>,
    record: &RunRecord,
) -> Result<()> {
    sqlx::query(
        "UPDATE server_protection_runs SET included = $3, refused = $4, missing = $5, error = $6,
             run_time = now()
          WHERE server_id = $1 AND slot_time = $2",
    )
    .bind(server_id)
    .bind(slot)
    .bind(&record.included)
    .bind(&record.refused)
    .bind(&record.missing)
    .bind(&record.error)
    .execute(db)
    .await?;
    Ok(())
}

/// The record of the latest pass of `server_id`'s protection.
pub async fn latest_run(
    db: impl PgExecutor<'_>,
    server_id: &str,
) -> Result<Option<(DateTime<Utc>, RunRecord)>> {
    type RunRow = (DateTime<Utc>, Vec<String>, Vec<String>, Vec<String>, String);
    let row: Option<RunRow> = sqlx::query_as(
        "SELECT slot_time, included, refused, missing, error FROM server_protection_runs
          WHERE server_id = $1 ORDER BY slot_time DESC LIMIT 1",
    )
    .bind(server_id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(slot, included, refused, missing, error)| {
        (
            slot,
            RunRecord {
                included,
                refused,
                missing,
                error,
            },
        )
    }))
}

/// The server and slot whose auto-include pass protected the database of
/// `instance_id`, when backup job `job_id` is that slot's backup of it
/// (its first): the pass recorded the database as included at the slot
/// the scheduler then queued the job for.
pub async fn auto_included(
    db: impl PgExecutor<'_>,
    instance_id: uuid::Uuid,
    job_id: uuid::Uuid,
) -> Result<Option<(String, DateTime<Utc>)>> {
    Ok(sqlx::query_as(
        "SELECT pr.server_id, pr.slot_time
           FROM backup_instances i
           JOIN server_protections sp ON sp.server_id = i.server_id AND sp.vault_id = i.vault_id
           JOIN schedule_runs r ON r.backup_instance_id = i.id AND r.job_id = $2
           JOIN server_protection_runs pr ON pr.server_id = i.server_id AND pr.slot_time = r.slot_time
          WHERE i.id = $1 AND i.database = ANY (pr.included)",
    )
    .bind(instance_id)
    .bind(job_id)
    .fetch_optional(db)
    .await?)
}
