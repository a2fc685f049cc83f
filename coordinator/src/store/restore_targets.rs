//! Restore targets: for each restore job, whether it writes a database or a
//! SQL file (and where), the selection it restores, and on completion the
//! file written and what a selective restore left out. Kept beside the job
//! row so the jobs table stays about lifecycle (lease, attempts, progress).

use std::collections::HashMap;

use sqlx::PgExecutor;
use uuid::Uuid;

use crate::error::{CoordinatorError, Result};
use crate::model::{RestoreKind, RestoreTarget};
use crate::store::{parse_enum, to_i64, to_u64};

#[derive(sqlx::FromRow)]
struct TargetRow {
    job_id: Uuid,
    kind: String,
    target_url: Option<String>,
    target_file: Option<String>,
    schemas: Vec<String>,
    tables: Vec<String>,
    output_size: Option<i64>,
    output_sha256: Option<String>,
    warnings: Vec<String>,
}

impl TryFrom<TargetRow> for RestoreTarget {
    type Error = CoordinatorError;
    fn try_from(r: TargetRow) -> Result<Self> {
        Ok(RestoreTarget {
            kind: parse_enum(&r.kind, "restore_targets.kind", RestoreKind::parse)?,
            target_url: r.target_url,
            target_file: r.target_file,
            schemas: r.schemas,
            tables: r.tables,
            output_size: r
                .output_size
                .map(|s| to_u64(s, "restore_targets.output_size"))
                .transpose()?,
            output_sha256: r.output_sha256,
            warnings: r.warnings,
        })
    }
}

const COLUMNS: &str =
    "job_id, kind, target_url, target_file, schemas, tables, output_size, output_sha256, warnings";

pub async fn insert(db: impl PgExecutor<'_>, job_id: Uuid, target: &RestoreTarget) -> Result<()> {
    sqlx::query(
        "INSERT INTO restore_targets (job_id, kind, target_url, target_file, schemas, tables)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(job_id)
    .bind(target.kind.as_str())
    .bind(&target.target_url)
    .bind(&target.target_file)
    .bind(&target.schemas)
    .bind(&target.tables)
    .execute(db)
    .await?;
    Ok(())
}

/// The restore target of one job; `None` for jobs that are not restores (and
/// restores queued before restore targets existed: whole-database restores).
pub async fn find(db: impl PgExecutor<'_>, job_id: Uuid) -> Result<Option<RestoreTarget>> {
    let sql = format!("SELECT {COLUMNS} FROM restore_targets WHERE job_id = $1");
    sqlx::query_as::<_, TargetRow>(&sql)
        .bind(job_id)
        .fetch_optional(db)
        .await?
        .map(RestoreTarget::try_from)
        .transpose()
}

/// The restore targets of several jobs (a page of a job listing).
pub async fn find_many(
    db: impl PgExecutor<'_>,
    job_ids: &[Uuid],
) -> Result<HashMap<Uuid, RestoreTarget>> {
    let sql = format!("SELECT {COLUMNS} FROM restore_targets WHERE job_id = ANY($1)");
    let rows = sqlx::query_as::<_, TargetRow>(&sql)
        .bind(job_ids)
        .fetch_all(db)
        .await?;
    rows.into_iter()
        .map(|r| Ok((r.job_id, RestoreTarget::try_from(r)?)))
        .collect()
}

/// Records what a completed restore produced: the file (restores as files)
/// and the objects it left out.
pub async fn record_result(
    db: impl PgExecutor<'_>,
    job_id: Uuid,
    output: Option<(u64, &str)>,
    warnings: &[String],
) -> Result<()> {
    sqlx::query(
        "UPDATE restore_targets SET output_size = $2, output_sha256 = $3, warnings = $4 WHERE job_id = $1",
    )
    .bind(job_id)
    .bind(output.map(|(size, _)| to_i64(size)))
    .bind(output.map(|(_, sha)| sha))
    .bind(warnings)
    .execute(db)
    .await?;
    Ok(())
}
