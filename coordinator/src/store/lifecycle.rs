//! Lifecycle state: which recovery points are due (past their expiry, or
//! with a rehydrated copy past its period), the (point, stage) runs that make
//! each lifecycle stage fire exactly once, which jobs of a point are active
//! (restores against deletions and moves), the restores waiting for a
//! rehydrate, and the point updates lifecycle jobs make when they complete.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::error::Result;
use crate::model::{Operation, Tier};
use crate::store::{parse_enum, to_u32};

/// A recovery point that may need a lifecycle job, as the sweeper sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct DuePoint {
    pub id: Uuid,
    pub vault_id: String,
    pub backup_instance_id: Uuid,
    pub tier: Tier,
    pub expire_time: DateTime<Utc>,
    /// ISO 8601 archive period of its rule; empty: deleted at expiry.
    pub archive_duration: String,
    /// The vault's archive datastore URL; empty: the vault has none.
    pub archive_datastore: String,
    /// The rehydrated copy's prefix and end of period, if there is one.
    pub rehydrated_prefix: Option<String>,
    pub rehydrated_until: Option<DateTime<Utc>>,
    /// A restore (or a copy to a second datastore) of this point is queued
    /// (or waiting) or running.
    pub restore_active: bool,
    /// Stages already carried out or under way (their job did not fail, or
    /// failed less than an hour ago).
    pub stages_taken: Vec<String>,
    /// The point is one of its instance's newest `keep_min` live points:
    /// expiry must not touch it.
    pub keep_min_held: bool,
    /// Soft-deleted by this principal (`None`: not soft-deleted).
    pub soft_deleted_by: Option<String>,
    /// Soft-deleted and past its purge time: every copy goes now.
    pub purge_due: bool,
}

#[derive(sqlx::FromRow)]
struct DueRow {
    id: Uuid,
    vault_id: String,
    backup_instance_id: Uuid,
    tier: String,
    expire_time: DateTime<Utc>,
    archive_duration: String,
    archive_datastore: String,
    rehydrated_prefix: Option<String>,
    rehydrated_until: Option<DateTime<Utc>>,
    restore_active: bool,
    stages_taken: Vec<String>,
    keep_min_held: bool,
    soft_deleted_by: Option<String>,
    purge_due: bool,
}

/// Job states in which a job may still run.
const ACTIVE: &str = crate::store::jobs::ACTIVE_STATES;

/// Points (of one instance, or all) that need the sweeper, at most
/// `limit`, soonest first: live points past their standard or archive
/// expiry, unless they are among their instance's newest `keep_min` live
/// points (the policy's floor under retention) and expiry would delete
/// rather than archive them; soft-deleted points past their
/// purge time, and points whose rehydrated copy's period ended.
pub async fn due(
    db: impl PgExecutor<'_>,
    now: DateTime<Utc>,
    instance: Option<Uuid>,
    limit: i64,
) -> Result<Vec<DuePoint>> {
    let sql = format!(
        "SELECT p.id, i.vault_id, p.backup_instance_id, p.tier, p.expire_time, p.archive_duration,
                v.archive_datastore, p.rehydrated_prefix, p.rehydrated_until,
                EXISTS (SELECT 1 FROM jobs j WHERE j.recovery_point_id = p.id
                          AND j.operation IN ('RESTORE', 'COPY') AND j.state IN {ACTIVE}) AS restore_active,
                ARRAY(SELECT r.stage FROM lifecycle_runs r JOIN jobs j ON j.id = r.job_id
                       WHERE r.recovery_point_id = p.id
                         AND (j.state NOT IN ('FAILED', 'CANCELLED')
                              OR j.end_time > now() - interval '1 hour')) AS stages_taken,
                h.held AS keep_min_held, p.soft_deleted_by,
                coalesce(p.purge_after <= $1, false) AS purge_due
           FROM recovery_points p
           JOIN backup_instances i ON i.id = p.backup_instance_id
           JOIN vaults v ON v.id = i.vault_id
           LEFT JOIN policies pol ON pol.vault_id = i.vault_id AND pol.id = i.policy_id
           CROSS JOIN LATERAL (
               -- Fewer than keep_min newer live points (counting stops there).
               SELECT p.soft_delete_time IS NULL
                      AND (SELECT count(*) FROM (
                               SELECT 1 FROM recovery_points q
                                WHERE q.backup_instance_id = p.backup_instance_id
                                  AND q.delete_time IS NULL AND q.soft_delete_time IS NULL
                                  AND (q.snapshot_time, q.id) > (p.snapshot_time, p.id)
                                LIMIT coalesce(pol.keep_min, {DEFAULT_KEEP_MIN})) newer)
                          < coalesce(pol.keep_min, {DEFAULT_KEEP_MIN}) AS held) h
          WHERE p.delete_time IS NULL
            -- Candidates first, so the floor is only counted for them.
            AND (p.expire_time <= $1 OR p.purge_after <= $1 OR p.rehydrated_until <= $1)
            AND ((p.soft_delete_time IS NULL AND p.expire_time <= $1
                  AND (NOT h.held OR (p.tier = 'STANDARD' AND p.archive_duration <> ''
                                      AND v.archive_datastore <> '')))
                 OR p.purge_after <= $1 OR p.rehydrated_until <= $1)
            AND ($3::uuid IS NULL OR p.backup_instance_id = $3)
          ORDER BY least(CASE WHEN p.soft_delete_time IS NULL THEN p.expire_time END,
                         p.purge_after, p.rehydrated_until), p.id
          LIMIT $2",
        DEFAULT_KEEP_MIN = crate::data_protection::keep_min::DEFAULT_KEEP_MIN
    );
    let rows: Vec<DueRow> = sqlx::query_as(&sql)
        .bind(now)
        .bind(limit)
        .bind(instance)
        .fetch_all(db)
        .await?;
    rows.into_iter()
        .map(|r| {
            Ok(DuePoint {
                id: r.id,
                vault_id: r.vault_id,
                backup_instance_id: r.backup_instance_id,
                tier: parse_enum(&r.tier, "recovery_points.tier", Tier::parse)?,
                expire_time: r.expire_time,
                archive_duration: r.archive_duration,
                archive_datastore: r.archive_datastore,
                rehydrated_prefix: r.rehydrated_prefix,
                rehydrated_until: r.rehydrated_until,
                restore_active: r.restore_active,
                stages_taken: r.stages_taken,
                keep_min_held: r.keep_min_held,
                soft_deleted_by: r.soft_deleted_by,
                purge_due: r.purge_due,
            })
        })
        .collect()
}

/// Locks the point row (lifecycle jobs and restores are created under this
/// lock, so neither misses the other). False: no such live point.
pub async fn lock_point(db: impl PgExecutor<'_>, point_id: Uuid) -> Result<bool> {
    lock_point_row(db, point_id, false).await
}

/// Locks the point's row as [`lock_point`] does, also when its own
/// objects expired (`with_expired`): a restore from a copy, which outlives
/// the point, locks the copy too.
pub async fn lock_point_row(
    db: impl PgExecutor<'_>,
    point_id: Uuid,
    with_expired: bool,
) -> Result<bool> {
    let row: Option<(Uuid,)> = sqlx::query_as(
        "SELECT id FROM recovery_points WHERE id = $1 AND ($2 OR delete_time IS NULL) FOR UPDATE",
    )
    .bind(point_id)
    .bind(with_expired)
    .fetch_optional(db)
    .await?;
    Ok(row.is_some())
}

/// Records that `job_id` carries out `stage` of the point. False: the stage
/// already has a job that did not fail (exactly once); a failed one is
/// replaced.
pub async fn claim(
    db: impl PgExecutor<'_>,
    point_id: Uuid,
    stage: &str,
    job_id: Uuid,
) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO lifecycle_runs (recovery_point_id, stage, job_id) VALUES ($1, $2, $3)
         ON CONFLICT (recovery_point_id, stage) DO UPDATE
            SET job_id = EXCLUDED.job_id, create_time = now()
          WHERE EXISTS (SELECT 1 FROM jobs j WHERE j.id = lifecycle_runs.job_id
                          AND j.state IN ('FAILED', 'CANCELLED'))",
    )
    .bind(point_id)
    .bind(stage)
    .bind(job_id)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The active job (id, operation) removing the point or moving it off the
/// standard datastore, if any: a restore must not start then.
pub async fn active_removal(
    db: impl PgExecutor<'_>,
    point_id: Uuid,
) -> Result<Option<(Uuid, Operation)>> {
    let sql = format!(
        "SELECT id, operation FROM jobs
          WHERE recovery_point_id = $1 AND operation IN ('DELETE', 'TIER_MOVE')
            AND coalesce(lifecycle_stage, '') NOT LIKE 'REHYDRATED\\_EXPIRY%'
            AND coalesce(lifecycle_stage, '') NOT LIKE 'COPY\\_EXPIRY%' AND state IN {ACTIVE}
          ORDER BY create_time LIMIT 1"
    );
    let row: Option<(Uuid, String)> = sqlx::query_as(&sql)
        .bind(point_id)
        .fetch_optional(db)
        .await?;
    row.map(|(id, op)| Ok((id, parse_enum(&op, "jobs.operation", Operation::parse)?)))
        .transpose()
}

/// The active REHYDRATE job of the point, if any.
pub async fn active_rehydrate(db: impl PgExecutor<'_>, point_id: Uuid) -> Result<Option<Uuid>> {
    let sql = format!(
        "SELECT id FROM jobs WHERE recovery_point_id = $1 AND operation = 'REHYDRATE'
            AND state IN {ACTIVE} ORDER BY create_time LIMIT 1"
    );
    let row: Option<(Uuid,)> = sqlx::query_as(&sql)
        .bind(point_id)
        .fetch_optional(db)
        .await?;
    Ok(row.map(|(id,)| id))
}

/// Where a point's rehydrated copy is (datastore, prefix), if there is one.
pub async fn rehydrated(
    db: impl PgExecutor<'_>,
    point_id: Uuid,
) -> Result<Option<(String, String)>> {
    let row: Option<(Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT rehydrated_datastore, rehydrated_prefix FROM recovery_points
          WHERE id = $1",
    )
    .bind(point_id)
    .fetch_optional(db)
    .await?;
    Ok(match row {
        Some((Some(datastore), Some(prefix))) => Some((datastore, prefix)),
        _ => None,
    })
}

/// After a tier move: the point lives in the archive datastore until `expire_time`.
pub async fn moved_to_archive(
    db: impl PgExecutor<'_>,
    point_id: Uuid,
    datastore: &str,
    prefix: &str,
    expire_time: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "UPDATE recovery_points SET tier = 'ARCHIVE', datastore_url = $2, prefix = $3, expire_time = $4,
             archive_duration = '' WHERE id = $1",
    )
    .bind(point_id)
    .bind(datastore)
    .bind(prefix)
    .bind(expire_time)
    .execute(db)
    .await?;
    Ok(())
}

/// After a rehydrate: the copy at `prefix` in `datastore` is kept until `until`.
pub async fn set_rehydrated(
    db: impl PgExecutor<'_>,
    point_id: Uuid,
    datastore: &str,
    prefix: &str,
    until: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "UPDATE recovery_points SET rehydrated_datastore = $2, rehydrated_prefix = $3, rehydrated_until = $4
          WHERE id = $1",
    )
    .bind(point_id)
    .bind(datastore)
    .bind(prefix)
    .bind(until)
    .execute(db)
    .await?;
    Ok(())
}

/// After the rehydrated copy at `prefix` was deleted (a newer copy is kept).
pub async fn clear_rehydrated(db: impl PgExecutor<'_>, point_id: Uuid, prefix: &str) -> Result<()> {
    sqlx::query(
        "UPDATE recovery_points SET rehydrated_datastore = NULL, rehydrated_prefix = NULL,
             rehydrated_until = NULL WHERE id = $1 AND rehydrated_prefix = $2",
    )
    .bind(point_id)
    .bind(prefix)
    .execute(db)
    .await?;
    Ok(())
}

/// After a delete job: the point is gone (its row stays, hidden).
pub async fn mark_deleted(db: impl PgExecutor<'_>, point_id: Uuid) -> Result<()> {
    sqlx::query(
        "UPDATE recovery_points SET delete_time = now(), rehydrated_datastore = NULL,
             rehydrated_prefix = NULL, rehydrated_until = NULL WHERE id = $1",
    )
    .bind(point_id)
    .execute(db)
    .await?;
    Ok(())
}

/// Whether the point's own objects were deleted (by expiry or purge).
pub async fn deleted(db: impl PgExecutor<'_>, point_id: Uuid) -> Result<bool> {
    let deleted: Option<bool> =
        sqlx::query_scalar("SELECT delete_time IS NOT NULL FROM recovery_points WHERE id = $1")
            .bind(point_id)
            .fetch_optional(db)
            .await?;
    Ok(deleted.unwrap_or(false))
}

/// Releases the jobs waiting for `job_id`; returns (id, attempt) of each so
/// the caller writes their outbox rows.
pub async fn release_waiting(db: impl PgExecutor<'_>, job_id: Uuid) -> Result<Vec<(Uuid, u32)>> {
    let rows: Vec<(Uuid, i32)> = sqlx::query_as(
        "UPDATE jobs SET waits_for_job_id = NULL, update_time = now()
          WHERE waits_for_job_id = $1 AND state = 'QUEUED' RETURNING id, attempt",
    )
    .bind(job_id)
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|(id, attempt)| Ok((id, to_u32(attempt, "jobs.attempt")?)))
        .collect()
}

/// The QUEUED jobs still waiting for `job_id`.
pub async fn waiting_for(db: impl PgExecutor<'_>, job_id: Uuid) -> Result<Vec<Uuid>> {
    let rows: Vec<(Uuid,)> =
        sqlx::query_as("SELECT id FROM jobs WHERE waits_for_job_id = $1 AND state = 'QUEUED'")
            .bind(job_id)
            .fetch_all(db)
            .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// True when a restore of the point, or a copy of it to a second
/// datastore, is queued (or waiting) or running: it reads the point.
pub async fn restore_active(db: impl PgExecutor<'_>, point_id: Uuid) -> Result<bool> {
    let sql = format!(
        "SELECT EXISTS (SELECT 1 FROM jobs WHERE recovery_point_id = $1 AND operation IN ('RESTORE', 'COPY')
                          AND state IN {ACTIVE})"
    );
    let (active,): (bool,) = sqlx::query_as(&sql).bind(point_id).fetch_one(db).await?;
    Ok(active)
}

/// Fails QUEUED jobs whose awaited job failed or was cancelled; returns how
/// many. A restore waiting for a rehydrate fails with
/// `UserErrorRehydrateFailed`; one waiting for the restore of a server's
/// globals with `UserErrorGlobalsRestoreFailed`, its message naming that
/// job and its code. Each with its code's recommended action.
pub async fn fail_orphaned_waiting(db: impl PgExecutor<'_>) -> Result<u64> {
    use pgvault_errors::ErrorCode::{UserErrorGlobalsRestoreFailed, UserErrorRehydrateFailed};
    let done = sqlx::query(
        "UPDATE jobs w SET state = 'FAILED', end_time = now(), update_time = now(),
             error_code = CASE WHEN d.operation = 'RESTORE' THEN $3 ELSE $1 END,
             error_message = CASE WHEN d.operation = 'RESTORE'
                 THEN 'the restore jobs/' || w.waits_for_job_id || ' of the server''s globals this restore waited for '
                      || CASE d.state WHEN 'CANCELLED' THEN 'was cancelled'
                         ELSE 'failed' || coalesce(' with ' || d.error_code, '') END
                      || ', so this database''s restore was not started'
                 ELSE 'the rehydrate job jobs/' || w.waits_for_job_id || ' this restore waited for '
                      || CASE d.state WHEN 'CANCELLED' THEN 'was cancelled' ELSE 'failed' END
                      || ', so the archive point was not copied back to the standard datastore' END,
             error_action = CASE WHEN d.operation = 'RESTORE' THEN $4 ELSE $2 END
          FROM jobs d
         WHERE w.waits_for_job_id = d.id AND w.state = 'QUEUED' AND d.state IN ('FAILED', 'CANCELLED')",
    )
    .bind(UserErrorRehydrateFailed.as_str())
    .bind(UserErrorRehydrateFailed.recommended_action())
    .bind(UserErrorGlobalsRestoreFailed.as_str())
    .bind(UserErrorGlobalsRestoreFailed.recommended_action())
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// Removes a job created in this transaction that turned out not to be
/// needed (its stage was claimed by another job meanwhile).
pub async fn discard_job(db: impl PgExecutor<'_>, job_id: Uuid) -> Result<()> {
    sqlx::query("DELETE FROM jobs WHERE id = $1 AND state = 'QUEUED'")
        .bind(job_id)
        .execute(db)
        .await?;
    Ok(())
}

/// True when a DELETE job of the rehydrated copy at `prefix` is active.
pub async fn copy_deletion_active(
    db: impl PgExecutor<'_>,
    point_id: Uuid,
    prefix: &str,
) -> Result<bool> {
    let sql = format!(
        "SELECT EXISTS (SELECT 1 FROM jobs WHERE recovery_point_id = $1 AND operation = 'DELETE'
                          AND lifecycle_stage = 'REHYDRATED_EXPIRY/' || $2 AND state IN {ACTIVE})"
    );
    let (active,): (bool,) = sqlx::query_as(&sql)
        .bind(point_id)
        .bind(prefix)
        .fetch_one(db)
        .await?;
    Ok(active)
}

/// Keeps the rehydrated copy at least until `until`.
pub async fn extend_rehydrated(
    db: impl PgExecutor<'_>,
    point_id: Uuid,
    until: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "UPDATE recovery_points SET rehydrated_until = greatest(rehydrated_until, $2)
          WHERE id = $1 AND rehydrated_prefix IS NOT NULL",
    )
    .bind(point_id)
    .bind(until)
    .execute(db)
    .await?;
    Ok(())
}

/// True when the point is soft-deleted (its DELETE job is a purge).
pub async fn soft_deleted(db: impl PgExecutor<'_>, point_id: Uuid) -> Result<bool> {
    let row: Option<(bool,)> =
        sqlx::query_as("SELECT soft_delete_time IS NOT NULL FROM recovery_points WHERE id = $1")
            .bind(point_id)
            .fetch_optional(db)
            .await?;
    Ok(row.is_some_and(|(deleted,)| deleted))
}
