//! Schedule runs: what the scheduler did with each (instance, slot) — queued
//! a job or skipped it with a reason. The primary key (instance, slot) is the
//! exactly-once guarantee: a second insert for the same slot does nothing.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::error::Result;
use crate::model::Schedule;

/// A protected instance with its policy's schedule, as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct Scheduled {
    pub instance_id: Uuid,
    pub vault_id: String,
    pub schedule: Schedule,
    /// Slots before this are never run.
    pub since: DateTime<Utc>,
    /// The latest slot already run or skipped, if any.
    pub last_slot: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct ScheduledRow {
    id: Uuid,
    vault_id: String,
    weekdays: Vec<i16>,
    time_of_day: String,
    time_zone: String,
    schedule_since: DateTime<Utc>,
    last_slot: Option<DateTime<Utc>>,
}

/// Every instance whose protection is configured, with its schedule.
///
/// Planned afresh on every call (not a cached prepared statement): a plan
/// made while `schedule_runs` was empty scans that table once per instance,
/// which after a burst of 10,000 slot rows took 15 s per tick until the next
/// ANALYZE; a fresh plan sees the table's real size and uses its key.
pub async fn protected(db: impl PgExecutor<'_>) -> Result<Vec<Scheduled>> {
    let rows: Vec<ScheduledRow> = sqlx::query_as(
        "SELECT i.id, i.vault_id, p.weekdays, p.time_of_day, p.time_zone, i.schedule_since,
                (SELECT max(r.slot_time) FROM schedule_runs r WHERE r.backup_instance_id = i.id) AS last_slot
           FROM backup_instances i
           JOIN policies p ON p.vault_id = i.vault_id AND p.id = i.policy_id
          WHERE i.protection_state = 'PROTECTION_CONFIGURED'
          ORDER BY i.id",
    )
    .persistent(false)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Scheduled {
            instance_id: r.id,
            vault_id: r.vault_id,
            schedule: Schedule {
                weekdays: r
                    .weekdays
                    .into_iter()
                    .filter_map(|d| u8::try_from(d).ok())
                    .collect(),
                time_of_day: r.time_of_day,
                time_zone: r.time_zone,
            },
            since: r.schedule_since,
            last_slot: r.last_slot,
        })
        .collect())
}

/// Claims the slot for `instance_id`. False: it was already run or skipped.
pub async fn claim(
    db: impl PgExecutor<'_>,
    instance_id: Uuid,
    slot: DateTime<Utc>,
    status: &str,
    reason: &str,
) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO schedule_runs (backup_instance_id, slot_time, status, reason)
         VALUES ($1, $2, $3, $4) ON CONFLICT (backup_instance_id, slot_time) DO NOTHING",
    )
    .bind(instance_id)
    .bind(slot)
    .bind(status)
    .bind(reason)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Claims many slots at once (the scheduler's batches): one row per
/// `(instance, slot)` with `status` and its reason. Returns the pairs this
/// call claimed, in input order; the others were already run or skipped.
/// Callers pass instances in id order, so concurrent claimers lock rows in
/// the same order.
pub async fn claim_many(
    db: impl PgExecutor<'_>,
    slots: &[(Uuid, DateTime<Utc>, String)],
    status: &str,
) -> Result<Vec<(Uuid, DateTime<Utc>)>> {
    if slots.is_empty() {
        return Ok(Vec::new());
    }
    let instances: Vec<Uuid> = slots.iter().map(|s| s.0).collect();
    let times: Vec<DateTime<Utc>> = slots.iter().map(|s| s.1).collect();
    let reasons: Vec<&str> = slots.iter().map(|s| s.2.as_str()).collect();
    let claimed: Vec<(Uuid, DateTime<Utc>)> = sqlx::query_as(
        "INSERT INTO schedule_runs (backup_instance_id, slot_time, status, reason)
         SELECT instance, slot, $3, reason
           FROM UNNEST($1::uuid[], $2::timestamptz[], $4::text[]) WITH ORDINALITY AS t (instance, slot, reason, n)
          ORDER BY n
         ON CONFLICT (backup_instance_id, slot_time) DO NOTHING
         RETURNING backup_instance_id, slot_time",
    )
    .bind(&instances)
    .bind(&times)
    .bind(status)
    .bind(&reasons)
    .fetch_all(db)
    .await?;
    // RETURNING order is not guaranteed: restore the input order.
    let claimed: std::collections::HashSet<(Uuid, DateTime<Utc>)> = claimed.into_iter().collect();
    Ok(slots
        .iter()
        .map(|s| (s.0, s.1))
        .filter(|key| claimed.contains(key))
        .collect())
}

/// Records the jobs claimed slots queued: `(instance, slot, job)` each.
pub async fn set_jobs(db: impl PgExecutor<'_>, runs: &[(Uuid, DateTime<Utc>, Uuid)]) -> Result<()> {
    if runs.is_empty() {
        return Ok(());
    }
    let instances: Vec<Uuid> = runs.iter().map(|r| r.0).collect();
    let times: Vec<DateTime<Utc>> = runs.iter().map(|r| r.1).collect();
    let jobs: Vec<Uuid> = runs.iter().map(|r| r.2).collect();
    sqlx::query(
        "UPDATE schedule_runs r SET job_id = t.job
           FROM UNNEST($1::uuid[], $2::timestamptz[], $3::uuid[]) AS t (instance, slot, job)
          WHERE r.backup_instance_id = t.instance AND r.slot_time = t.slot",
    )
    .bind(&instances)
    .bind(&times)
    .bind(&jobs)
    .execute(db)
    .await?;
    Ok(())
}

/// Records the job a claimed slot queued.
pub async fn set_job(
    db: impl PgExecutor<'_>,
    instance_id: Uuid,
    slot: DateTime<Utc>,
    job_id: Uuid,
) -> Result<()> {
    sqlx::query(
        "UPDATE schedule_runs SET job_id = $3 WHERE backup_instance_id = $1 AND slot_time = $2",
    )
    .bind(instance_id)
    .bind(slot)
    .bind(job_id)
    .execute(db)
    .await?;
    Ok(())
}

/// A recorded run, for tests and diagnostics.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub slot_time: DateTime<Utc>,
    pub status: String,
    pub job_id: Option<Uuid>,
    pub reason: String,
}

/// The runs of one instance, oldest slot first.
pub async fn list(db: impl PgExecutor<'_>, instance_id: Uuid) -> Result<Vec<Run>> {
    let rows: Vec<(DateTime<Utc>, String, Option<Uuid>, String)> = sqlx::query_as(
        "SELECT slot_time, status, job_id, reason FROM schedule_runs
          WHERE backup_instance_id = $1 ORDER BY slot_time",
    )
    .bind(instance_id)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(slot_time, status, job_id, reason)| Run {
            slot_time,
            status,
            job_id,
            reason,
        })
        .collect())
}

/// Moves the instance's schedule start to `since` (policy change, resume).
pub async fn restart_at(
    db: impl PgExecutor<'_>,
    instance_id: Uuid,
    since: DateTime<Utc>,
) -> Result<()> {
    sqlx::query("UPDATE backup_instances SET schedule_since = $2 WHERE id = $1")
        .bind(instance_id)
        .bind(since)
        .execute(db)
        .await?;
    Ok(())
}
