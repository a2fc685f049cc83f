//! Copies of recovery points in a second datastore (`recovery_point_copies`):
//! recorded when a COPY job completes (its manifest is durable by then),
//! read to show and restore them, marked DELETED by the DELETE job of an
//! expired or purged copy, and found by the sweeper once past their own
//! expiry — unless the point is one of its instance's newest `keep_min`
//! copied points in that datastore, or soft-deleted.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::error::Result;

/// One copy of a point.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct PointCopy {
    pub recovery_point_id: Uuid,
    /// Root URL of the copy's datastore (never credentials).
    pub datastore_url: String,
    /// The point's directory under it (the point's own prefix).
    pub prefix: String,
    /// `COPIED` (restorable) or `DELETED`.
    pub state: String,
    pub job_id: Uuid,
    pub copied_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// State of a copy that can be read.
pub const COPIED: &str = "COPIED";

const COLUMNS: &str =
    "recovery_point_id, datastore_url, prefix, state, job_id, copied_at, expires_at";

/// Records the verified copy a COPY job wrote (again: a copy deleted
/// before and copied anew is live again).
pub async fn record(db: impl PgExecutor<'_>, copy: &PointCopy) -> Result<()> {
    sqlx::query(
        "INSERT INTO recovery_point_copies
             (recovery_point_id, datastore_url, prefix, state, job_id, copied_at, expires_at)
         VALUES ($1, $2, $3, 'COPIED', $4, $5, $6)
         ON CONFLICT (recovery_point_id, datastore_url) DO UPDATE
            SET prefix = EXCLUDED.prefix, state = 'COPIED', job_id = EXCLUDED.job_id,
                copied_at = EXCLUDED.copied_at,
                expires_at = greatest(EXCLUDED.expires_at,
                                      CASE WHEN recovery_point_copies.state = 'COPIED'
                                           THEN recovery_point_copies.expires_at END),
                delete_time = NULL",
    )
    .bind(copy.recovery_point_id)
    .bind(&copy.datastore_url)
    .bind(&copy.prefix)
    .bind(copy.job_id)
    .bind(copy.copied_at)
    .bind(copy.expires_at)
    .execute(db)
    .await?;
    Ok(())
}

/// Every copy of the points, live and deleted, by point then datastore.
pub async fn of_points(db: impl PgExecutor<'_>, points: &[Uuid]) -> Result<Vec<PointCopy>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM recovery_point_copies WHERE recovery_point_id = ANY($1)
          ORDER BY recovery_point_id, datastore_url"
    );
    Ok(sqlx::query_as(&sql).bind(points).fetch_all(db).await?)
}

/// The live copy of the point in `datastore_url`, if there is one.
pub async fn live(
    db: impl PgExecutor<'_>,
    point_id: Uuid,
    datastore_url: &str,
) -> Result<Option<PointCopy>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM recovery_point_copies
          WHERE recovery_point_id = $1 AND datastore_url = $2 AND state = 'COPIED'"
    );
    Ok(sqlx::query_as(&sql)
        .bind(point_id)
        .bind(datastore_url)
        .fetch_optional(db)
        .await?)
}

/// Locks the live copy's row (copy deletions and restores from the copy
/// are created under it). False: no live copy there.
pub async fn lock_live(
    db: impl PgExecutor<'_>,
    point_id: Uuid,
    datastore_url: &str,
) -> Result<bool> {
    let row: Option<(Uuid,)> = sqlx::query_as(
        "SELECT recovery_point_id FROM recovery_point_copies
          WHERE recovery_point_id = $1 AND datastore_url = $2 AND state = 'COPIED' FOR UPDATE",
    )
    .bind(point_id)
    .bind(datastore_url)
    .fetch_optional(db)
    .await?;
    Ok(row.is_some())
}

/// Whether the point has a copy (in any datastore) that is restorable.
pub async fn any_live(db: impl PgExecutor<'_>, point_id: Uuid) -> Result<bool> {
    let live: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM recovery_point_copies
                         WHERE recovery_point_id = $1 AND state = 'COPIED')",
    )
    .bind(point_id)
    .fetch_one(db)
    .await?;
    Ok(live)
}

/// After the DELETE job of the copy in `datastore_url`, or of every copy
/// (`None`: the point was purged).
pub async fn mark_deleted(
    db: impl PgExecutor<'_>,
    point_id: Uuid,
    datastore_url: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "UPDATE recovery_point_copies SET state = 'DELETED', delete_time = now()
          WHERE recovery_point_id = $1 AND state = 'COPIED'
            AND ($2::text IS NULL OR datastore_url = $2)",
    )
    .bind(point_id)
    .bind(datastore_url)
    .execute(db)
    .await?;
    Ok(())
}

/// A copy past its expiry, as the sweeper sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct DueCopy {
    pub recovery_point_id: Uuid,
    pub vault_id: String,
    pub backup_instance_id: Uuid,
    pub datastore_url: String,
    pub expires_at: DateTime<Utc>,
    /// The copy's point is one of its instance's newest `keep_min` points
    /// with a live copy in this datastore: expiry must not touch it.
    pub keep_min_held: bool,
    /// The point is soft-deleted: its copies never expire (the purge
    /// removes them with it).
    pub soft_deleted: bool,
    /// A restore or copy reads the point now.
    pub read_active: bool,
    /// The copy's expiry already has a job that did not fail (or failed
    /// less than an hour ago).
    pub expiry_taken: bool,
}

#[derive(sqlx::FromRow)]
struct DueRow {
    recovery_point_id: Uuid,
    vault_id: String,
    backup_instance_id: Uuid,
    datastore_url: String,
    expires_at: DateTime<Utc>,
    keep_min_held: bool,
    soft_deleted: bool,
    read_active: bool,
    expiry_taken: bool,
}

/// Live copies past their expiry (soonest first, at most `limit`), with
/// what [`crate::copies::decide`] needs to decide on each.
pub async fn due(db: impl PgExecutor<'_>, now: DateTime<Utc>, limit: i64) -> Result<Vec<DueCopy>> {
    let sql = format!(
        "SELECT c.recovery_point_id, i.vault_id, p.backup_instance_id, c.datastore_url, c.expires_at,
                h.held AS keep_min_held, p.soft_delete_time IS NOT NULL AS soft_deleted,
                EXISTS (SELECT 1 FROM jobs j WHERE j.recovery_point_id = p.id
                          AND j.operation IN ('RESTORE', 'COPY')
                          AND j.state IN ('QUEUED', 'IN_PROGRESS', 'CANCELLING')) AS read_active,
                EXISTS (SELECT 1 FROM lifecycle_runs r JOIN jobs j ON j.id = r.job_id
                         WHERE r.recovery_point_id = p.id
                           AND r.stage = '{COPY_EXPIRY}' || c.datastore_url
                           AND (j.state NOT IN ('FAILED', 'CANCELLED')
                                OR j.end_time > now() - interval '1 hour')) AS expiry_taken
           FROM recovery_point_copies c
           JOIN recovery_points p ON p.id = c.recovery_point_id
           JOIN backup_instances i ON i.id = p.backup_instance_id
           LEFT JOIN policies pol ON pol.vault_id = i.vault_id AND pol.id = i.policy_id
           CROSS JOIN LATERAL (
               -- Fewer than keep_min newer points with a live copy here.
               SELECT (SELECT count(*) FROM (
                           SELECT 1 FROM recovery_point_copies qc
                             JOIN recovery_points q ON q.id = qc.recovery_point_id
                            WHERE q.backup_instance_id = p.backup_instance_id
                              AND qc.datastore_url = c.datastore_url AND qc.state = 'COPIED'
                              AND q.soft_delete_time IS NULL
                              AND (q.snapshot_time, q.id) > (p.snapshot_time, p.id)
                            LIMIT coalesce(pol.keep_min, {DEFAULT_KEEP_MIN})) newer)
                      < coalesce(pol.keep_min, {DEFAULT_KEEP_MIN}) AS held) h
          WHERE c.state = 'COPIED' AND c.expires_at <= $1
            -- Held and soft-deleted copies stay; left out so they never
            -- crowd the batch.
            AND NOT h.held AND p.soft_delete_time IS NULL
          ORDER BY c.expires_at, c.recovery_point_id
          LIMIT $2",
        COPY_EXPIRY = crate::model::stage::COPY_EXPIRY,
        DEFAULT_KEEP_MIN = crate::data_protection::keep_min::DEFAULT_KEEP_MIN
    );
    let rows: Vec<DueRow> = sqlx::query_as(&sql)
        .bind(now)
        .bind(limit)
        .fetch_all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| DueCopy {
            recovery_point_id: r.recovery_point_id,
            vault_id: r.vault_id,
            backup_instance_id: r.backup_instance_id,
            datastore_url: r.datastore_url,
            expires_at: r.expires_at,
            keep_min_held: r.keep_min_held,
            soft_deleted: r.soft_deleted,
            read_active: r.read_active,
            expiry_taken: r.expiry_taken,
        })
        .collect())
}
