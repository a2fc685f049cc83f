//! Recovery points: completed backups, where they are stored, how they are
//! tagged for retention and when they expire. Deleted points keep their row
//! (`delete_time` set) for tagging history and job history, and are hidden
//! from every reader here. Soft-deleted points (`soft_delete_time` set, see
//! `store::soft_delete`) are read by [`get`] (with their
//! [`SoftDelete`](crate::model::SoftDelete)) and listed only when asked for;
//! every other reader skips them.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::error::{CoordinatorError, Result};
use crate::model::{LastDrill, LastVerify, RecoveryPoint, RuleKind, SoftDelete, Tier};
use crate::store::{parse_enum, to_i32, to_i64, to_u32, to_u64};

#[derive(sqlx::FromRow)]
struct PointRow {
    id: Uuid,
    vault_id: String,
    backup_instance_id: Uuid,
    job_id: Uuid,
    database: String,
    snapshot_time: DateTime<Utc>,
    tier: String,
    datastore_url: String,
    prefix: String,
    stored_bytes: i64,
    raw_bytes: i64,
    chunk_count: i32,
    manifest_sha256: String,
    server_version: String,
    retention_tag: String,
    expire_time: DateTime<Utc>,
    archive_duration: String,
    create_time: DateTime<Utc>,
    soft_delete_time: Option<DateTime<Utc>>,
    soft_deleted_by: Option<String>,
    purge_after: Option<DateTime<Utc>>,
    last_verified_at: Option<DateTime<Utc>>,
    last_verify_result: Option<String>,
    last_verify_error_code: Option<String>,
    last_verify_job_id: Option<Uuid>,
    last_drill_at: Option<DateTime<Utc>>,
    last_drill_result: Option<String>,
    last_drill_error_code: Option<String>,
    last_drill_job_id: Option<Uuid>,
    last_drill_server: Option<String>,
    last_drill_tables: Option<i64>,
    last_drill_rows: Option<i64>,
    last_drill_checksums: Option<bool>,
    copies_only: bool,
}

impl TryFrom<PointRow> for RecoveryPoint {
    type Error = CoordinatorError;
    fn try_from(r: PointRow) -> Result<Self> {
        Ok(RecoveryPoint {
            id: r.id,
            vault_id: r.vault_id,
            backup_instance_id: r.backup_instance_id,
            job_id: r.job_id,
            database: r.database,
            snapshot_time: r.snapshot_time,
            tier: parse_enum(&r.tier, "recovery_points.tier", Tier::parse)?,
            datastore_url: r.datastore_url,
            prefix: r.prefix,
            stored_bytes: to_u64(r.stored_bytes, "recovery_points.stored_bytes")?,
            raw_bytes: to_u64(r.raw_bytes, "recovery_points.raw_bytes")?,
            chunk_count: to_u32(r.chunk_count, "recovery_points.chunk_count")?,
            manifest_sha256: r.manifest_sha256,
            server_version: r.server_version,
            retention_tag: parse_enum(
                &r.retention_tag,
                "recovery_points.retention_tag",
                RuleKind::parse,
            )?,
            expire_time: r.expire_time,
            archive_duration: r.archive_duration,
            create_time: r.create_time,
            soft_delete: match (r.soft_delete_time, r.purge_after) {
                (Some(time), Some(purge_after)) => Some(SoftDelete {
                    time,
                    by: r.soft_deleted_by.unwrap_or_default(),
                    purge_after,
                }),
                _ => None,
            },
            last_verify: r.last_verified_at.map(|time| LastVerify {
                time,
                error_code: match r.last_verify_result.as_deref() {
                    Some("OK") => None,
                    _ => Some(r.last_verify_error_code.unwrap_or_default()),
                },
                job_id: r.last_verify_job_id,
            }),
            last_drill: match r.last_drill_at {
                None => None,
                Some(time) => Some(LastDrill {
                    time,
                    error_code: match r.last_drill_result.as_deref() {
                        Some("OK") => None,
                        _ => Some(r.last_drill_error_code.unwrap_or_default()),
                    },
                    job_id: r.last_drill_job_id,
                    server_id: r.last_drill_server.unwrap_or_default(),
                    tables: to_u64(
                        r.last_drill_tables.unwrap_or(0),
                        "recovery_points.last_drill_tables",
                    )?,
                    rows: to_u64(
                        r.last_drill_rows.unwrap_or(0),
                        "recovery_points.last_drill_rows",
                    )?,
                    checksums: r.last_drill_checksums.unwrap_or(false),
                }),
            },
            copies_only: r.copies_only,
        })
    }
}

const SELECT: &str =
    "SELECT p.id, i.vault_id, p.backup_instance_id, p.job_id, p.database, p.snapshot_time, p.tier,
        p.datastore_url, p.prefix, p.stored_bytes, p.raw_bytes, p.chunk_count, p.manifest_sha256,
        p.server_version, p.retention_tag, p.expire_time, p.archive_duration, p.create_time,
        p.soft_delete_time, p.soft_deleted_by, p.purge_after, p.last_verified_at,
        p.last_verify_result, p.last_verify_error_code, p.last_verify_job_id,
        p.last_drill_at, p.last_drill_result, p.last_drill_error_code, p.last_drill_job_id,
        p.last_drill_server, p.last_drill_tables, p.last_drill_rows, p.last_drill_checksums,
        p.delete_time IS NOT NULL AS copies_only
   FROM recovery_points p JOIN backup_instances i ON i.id = p.backup_instance_id";

/// The point `p` expired (its own objects are deleted) but has a live copy.
const COPIES_ONLY: &str = "p.delete_time IS NOT NULL AND EXISTS (
        SELECT 1 FROM recovery_point_copies c WHERE c.recovery_point_id = p.id AND c.state = 'COPIED')";

pub async fn insert(db: impl PgExecutor<'_>, p: &RecoveryPoint) -> Result<()> {
    sqlx::query(
        "INSERT INTO recovery_points (id, backup_instance_id, job_id, database, snapshot_time, tier, datastore_url,
             prefix, stored_bytes, raw_bytes, chunk_count, manifest_sha256, server_version, retention_tag, expire_time,
             archive_duration)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
    )
    .bind(p.id)
    .bind(p.backup_instance_id)
    .bind(p.job_id)
    .bind(&p.database)
    .bind(p.snapshot_time)
    .bind(p.tier.as_str())
    .bind(&p.datastore_url)
    .bind(&p.prefix)
    .bind(to_i64(p.stored_bytes))
    .bind(to_i64(p.raw_bytes))
    .bind(to_i32(p.chunk_count))
    .bind(&p.manifest_sha256)
    .bind(&p.server_version)
    .bind(p.retention_tag.as_str())
    .bind(p.expire_time)
    .bind(&p.archive_duration)
    .execute(db)
    .await?;
    Ok(())
}

/// The point `id` of instance `instance_id` in vault `vault_id`.
pub async fn get(
    db: impl PgExecutor<'_>,
    vault_id: &str,
    instance_id: Uuid,
    id: Uuid,
) -> Result<RecoveryPoint> {
    let sql = format!(
        "{SELECT} WHERE p.id = $1 AND p.backup_instance_id = $2 AND i.vault_id = $3
           AND p.delete_time IS NULL"
    );
    sqlx::query_as::<_, PointRow>(&sql)
        .bind(id)
        .bind(instance_id)
        .bind(vault_id)
        .fetch_optional(db)
        .await?
        .map(RecoveryPoint::try_from)
        .transpose()?
        .ok_or_else(|| {
            CoordinatorError::not_found(
                "recovery point",
                crate::names::recovery_point_name(vault_id, instance_id, id),
            )
        })
}

/// The point `id` as a restore (or a look at it) finds it: a live point,
/// or one whose own objects expired while a copy lives on
/// ([`RecoveryPoint::copies_only`]; it restores only from that copy).
pub async fn get_with_copies_only(
    db: impl PgExecutor<'_>,
    vault_id: &str,
    instance_id: Uuid,
    id: Uuid,
) -> Result<RecoveryPoint> {
    let sql = format!(
        "{SELECT} WHERE p.id = $1 AND p.backup_instance_id = $2 AND i.vault_id = $3
           AND (p.delete_time IS NULL OR ({COPIES_ONLY}))"
    );
    sqlx::query_as::<_, PointRow>(&sql)
        .bind(id)
        .bind(instance_id)
        .bind(vault_id)
        .fetch_optional(db)
        .await?
        .map(RecoveryPoint::try_from)
        .transpose()?
        .ok_or_else(|| {
            CoordinatorError::not_found(
                "recovery point",
                crate::names::recovery_point_name(vault_id, instance_id, id),
            )
        })
}

/// Points of one instance whose own objects expired while a copy lives
/// on, newest first.
pub async fn list_copies_only(
    db: impl PgExecutor<'_>,
    instance_id: Uuid,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<RecoveryPoint>> {
    let sql = format!(
        "{SELECT} WHERE p.backup_instance_id = $1 AND {COPIES_ONLY}
           AND ($2::timestamptz IS NULL OR (p.create_time, p.id) < ($2, $3))
         ORDER BY p.create_time DESC, p.id DESC LIMIT $4"
    );
    let rows = sqlx::query_as::<_, PointRow>(&sql)
        .bind(instance_id)
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1))
        .bind(limit)
        .fetch_all(db)
        .await?;
    rows.into_iter().map(RecoveryPoint::try_from).collect()
}

/// Points of one instance, newest first: the live ones, or with `deleted`
/// only the soft-deleted ones.
pub async fn list(
    db: impl PgExecutor<'_>,
    instance_id: Uuid,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
    deleted: bool,
) -> Result<Vec<RecoveryPoint>> {
    let sql = format!(
        "{SELECT} WHERE p.backup_instance_id = $1 AND p.delete_time IS NULL
           AND (p.soft_delete_time IS NOT NULL) = $5
           AND ($2::timestamptz IS NULL OR (p.create_time, p.id) < ($2, $3))
         ORDER BY p.create_time DESC, p.id DESC LIMIT $4"
    );
    let rows = sqlx::query_as::<_, PointRow>(&sql)
        .bind(instance_id)
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1))
        .bind(limit)
        .bind(deleted)
        .fetch_all(db)
        .await?;
    rows.into_iter().map(RecoveryPoint::try_from).collect()
}

/// The latest snapshot of a scheduled backup of `instance_id` taken before
/// `before`: what decides whether a new point is the first of its period.
pub async fn latest_scheduled_before(
    db: impl PgExecutor<'_>,
    instance_id: Uuid,
    before: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>> {
    let (latest,): (Option<DateTime<Utc>>,) = sqlx::query_as(
        "SELECT max(p.snapshot_time) FROM recovery_points p JOIN jobs j ON j.id = p.job_id
          WHERE p.backup_instance_id = $1 AND p.snapshot_time < $2 AND j.operation = 'SCHEDULED_BACKUP'",
    )
    .bind(instance_id)
    .bind(before)
    .fetch_one(db)
    .await?;
    Ok(latest)
}

/// Every live (not soft-deleted) point of one instance, oldest snapshot first.
pub async fn all_of_instance(
    db: impl PgExecutor<'_>,
    instance_id: Uuid,
) -> Result<Vec<RecoveryPoint>> {
    let sql = format!(
        "{SELECT} WHERE p.backup_instance_id = $1 AND p.delete_time IS NULL
           AND p.soft_delete_time IS NULL ORDER BY p.snapshot_time, p.id"
    );
    let rows = sqlx::query_as::<_, PointRow>(&sql)
        .bind(instance_id)
        .fetch_all(db)
        .await?;
    rows.into_iter().map(RecoveryPoint::try_from).collect()
}

/// Sets a point's tag, standard expiry and archive period.
pub async fn set_retention(
    db: impl PgExecutor<'_>,
    id: Uuid,
    tag: RuleKind,
    expire_time: DateTime<Utc>,
    archive_duration: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE recovery_points SET retention_tag = $2, expire_time = $3, archive_duration = $4 WHERE id = $1",
    )
    .bind(id)
    .bind(tag.as_str())
    .bind(expire_time)
    .bind(archive_duration)
    .execute(db)
    .await?;
    Ok(())
}

/// Keeps points of the instance until `forever`: all of them, or only the
/// newest. Returns how many changed.
pub async fn keep_until(
    db: impl PgExecutor<'_>,
    instance_id: Uuid,
    forever: DateTime<Utc>,
    only_newest: bool,
) -> Result<u64> {
    let done = sqlx::query(
        "UPDATE recovery_points SET expire_time = $2, archive_duration = ''
          WHERE backup_instance_id = $1 AND delete_time IS NULL
            AND (NOT $3 OR id = (SELECT id FROM recovery_points WHERE backup_instance_id = $1
                                  AND delete_time IS NULL
                                  ORDER BY snapshot_time DESC, id DESC LIMIT 1))",
    )
    .bind(instance_id)
    .bind(forever)
    .bind(only_newest)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

pub async fn count_in_vault(db: impl PgExecutor<'_>, vault_id: &str) -> Result<i64> {
    // A point kept only as copies counts: its data key goes with the vault.
    let sql = format!(
        "SELECT count(*) FROM recovery_points p JOIN backup_instances i ON i.id = p.backup_instance_id
         WHERE i.vault_id = $1 AND (p.delete_time IS NULL OR ({COPIES_ONLY}))"
    );
    let (n,): (i64,) = sqlx::query_as(&sql).bind(vault_id).fetch_one(db).await?;
    Ok(n)
}

/// Records how verify job `job_id` of point `id` ended (`error_code`
/// `None`: the point is sound).
pub async fn record_verify(
    db: impl PgExecutor<'_>,
    id: Uuid,
    job_id: Uuid,
    at: DateTime<Utc>,
    error_code: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "UPDATE recovery_points SET last_verified_at = $3, last_verify_job_id = $2,
             last_verify_result = CASE WHEN $4::text IS NULL THEN 'OK' ELSE 'FAILED' END,
             last_verify_error_code = $4
          WHERE id = $1",
    )
    .bind(id)
    .bind(job_id)
    .bind(at)
    .bind(error_code)
    .execute(db)
    .await?;
    Ok(())
}

/// What a drill that ended recorded on its point.
pub struct DrillRecord<'a> {
    pub job_id: Uuid,
    pub at: DateTime<Utc>,
    pub server_id: &'a str,
    /// `None`: passed.
    pub error_code: Option<&'a str>,
    pub tables: u64,
    pub rows: u64,
    pub checksums: bool,
}

/// Records how the point's latest drill ended (restore drills).
pub async fn record_drill(db: impl PgExecutor<'_>, id: Uuid, d: &DrillRecord<'_>) -> Result<()> {
    sqlx::query(
        "UPDATE recovery_points SET last_drill_at = $3, last_drill_job_id = $2,
             last_drill_result = CASE WHEN $4::text IS NULL THEN 'OK' ELSE 'FAILED' END,
             last_drill_error_code = $4, last_drill_server = $5, last_drill_tables = $6,
             last_drill_rows = $7, last_drill_checksums = $8
          WHERE id = $1",
    )
    .bind(id)
    .bind(d.job_id)
    .bind(d.at)
    .bind(d.error_code)
    .bind(d.server_id)
    .bind(to_i64(d.tables))
    .bind(to_i64(d.rows))
    .bind(d.checksums)
    .execute(db)
    .await?;
    Ok(())
}
