//! Progress of each table of a job's attempt, keyed by (job, attempt, name).
//! Heartbeats carry only what changed; [`upsert`] writes a heartbeat's
//! batch in one statement (UNNEST arrays). A new attempt starts with a fresh
//! set ([`clear_other_attempts`] at claim). `update_time` lets `WatchJob`
//! send only changes.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::error::Result;
use crate::model::{TableProgress, TableState};
use crate::store::{parse_enum, to_i32, to_i64, to_u32, to_u64};

#[derive(sqlx::FromRow)]
struct TableRow {
    name: String,
    state: String,
    chunks_done: i32,
    chunks_total: i32,
    rows_done: i64,
    raw_bytes: i64,
    stored_bytes: i64,
    start_time: Option<DateTime<Utc>>,
    end_time: Option<DateTime<Utc>>,
}

impl TryFrom<TableRow> for TableProgress {
    type Error = crate::error::CoordinatorError;
    fn try_from(r: TableRow) -> Result<Self> {
        Ok(TableProgress {
            name: r.name,
            state: parse_enum(&r.state, "job_tables.state", TableState::parse)?,
            chunks_done: to_u32(r.chunks_done, "job_tables.chunks_done")?,
            chunks_total: to_u32(r.chunks_total, "job_tables.chunks_total")?,
            rows: to_u64(r.rows_done, "job_tables.rows_done")?,
            raw_bytes: to_u64(r.raw_bytes, "job_tables.raw_bytes")?,
            stored_bytes: to_u64(r.stored_bytes, "job_tables.stored_bytes")?,
            start_time: r.start_time,
            end_time: r.end_time,
        })
    }
}

const COLUMNS: &str = "name, state, chunks_done, chunks_total, rows_done, raw_bytes, stored_bytes, start_time, end_time";

/// Writes a batch of tables of `attempt` (`None`: the job's current
/// attempt) in one statement; the last entry wins when a name repeats.
pub async fn upsert(
    db: impl PgExecutor<'_>,
    job_id: Uuid,
    attempt: Option<u32>,
    tables: &[TableProgress],
) -> Result<()> {
    // ON CONFLICT may not touch a row twice in one statement: keep the last.
    let mut seen = std::collections::HashSet::new();
    let batch: Vec<&TableProgress> = tables
        .iter()
        .rev()
        .filter(|t| seen.insert(t.name.as_str()))
        .collect();
    if batch.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = batch.iter().map(|t| t.name.as_str()).collect();
    let states: Vec<&str> = batch.iter().map(|t| t.state.as_str()).collect();
    let chunks_done: Vec<i32> = batch.iter().map(|t| to_i32(t.chunks_done)).collect();
    let chunks_total: Vec<i32> = batch.iter().map(|t| to_i32(t.chunks_total)).collect();
    let rows: Vec<i64> = batch.iter().map(|t| to_i64(t.rows)).collect();
    let raw: Vec<i64> = batch.iter().map(|t| to_i64(t.raw_bytes)).collect();
    let stored: Vec<i64> = batch.iter().map(|t| to_i64(t.stored_bytes)).collect();
    let starts: Vec<Option<DateTime<Utc>>> = batch.iter().map(|t| t.start_time).collect();
    let ends: Vec<Option<DateTime<Utc>>> = batch.iter().map(|t| t.end_time).collect();
    sqlx::query(
        "INSERT INTO job_tables (job_id, attempt, name, state, chunks_done, chunks_total, rows_done,
                                 raw_bytes, stored_bytes, start_time, end_time)
         SELECT $1, coalesce($2::int, (SELECT attempt FROM jobs WHERE id = $1)), * FROM UNNEST($3::text[], $4::text[], $5::int[], $6::int[], $7::bigint[],
                                      $8::bigint[], $9::bigint[], $10::timestamptz[], $11::timestamptz[])
         ON CONFLICT (job_id, attempt, name) DO UPDATE SET
             state = EXCLUDED.state, chunks_done = EXCLUDED.chunks_done,
             chunks_total = EXCLUDED.chunks_total, rows_done = EXCLUDED.rows_done,
             raw_bytes = EXCLUDED.raw_bytes, stored_bytes = EXCLUDED.stored_bytes,
             start_time = EXCLUDED.start_time, end_time = EXCLUDED.end_time, update_time = now()",
    )
    .bind(job_id)
    .bind(attempt.map(to_i32))
    .bind(&names)
    .bind(&states)
    .bind(&chunks_done)
    .bind(&chunks_total)
    .bind(&rows)
    .bind(&raw)
    .bind(&stored)
    .bind(&starts)
    .bind(&ends)
    .execute(db)
    .await?;
    Ok(())
}

/// Removes the tables of the job's other attempts: a new attempt starts
/// with a fresh set.
pub async fn clear_other_attempts(
    db: impl PgExecutor<'_>,
    job_id: Uuid,
    attempt: u32,
) -> Result<()> {
    sqlx::query("DELETE FROM job_tables WHERE job_id = $1 AND attempt <> $2")
        .bind(job_id)
        .bind(to_i32(attempt))
        .execute(db)
        .await?;
    Ok(())
}

/// Every table of `attempt`, by name.
pub async fn list(
    db: impl PgExecutor<'_>,
    job_id: Uuid,
    attempt: u32,
) -> Result<Vec<TableProgress>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM job_tables WHERE job_id = $1 AND attempt = $2 ORDER BY name"
    );
    let rows = sqlx::query_as::<_, TableRow>(&sql)
        .bind(job_id)
        .bind(to_i32(attempt))
        .fetch_all(db)
        .await?;
    rows.into_iter().map(TableProgress::try_from).collect()
}

/// Sub-tasks of `attempt` changed after `since` (all running or failed ones
/// when `since` is `None`), at most `limit`, with the latest change time seen.
pub async fn changed(
    db: impl PgExecutor<'_>,
    job_id: Uuid,
    attempt: u32,
    since: Option<DateTime<Utc>>,
    limit: i64,
) -> Result<(Vec<TableProgress>, Option<DateTime<Utc>>)> {
    #[derive(sqlx::FromRow)]
    struct Changed {
        #[sqlx(flatten)]
        table: TableRow,
        update_time: DateTime<Utc>,
    }
    let sql = format!(
        "SELECT {COLUMNS}, update_time FROM job_tables
         WHERE job_id = $1 AND attempt = $2
           AND (CASE WHEN $3::timestamptz IS NULL THEN state IN ('RUNNING', 'FAILED') ELSE update_time > $3 END)
         ORDER BY update_time LIMIT $4"
    );
    let rows = sqlx::query_as::<_, Changed>(&sql)
        .bind(job_id)
        .bind(to_i32(attempt))
        .bind(since)
        .bind(limit)
        .fetch_all(db)
        .await?;
    let latest = rows.iter().map(|r| r.update_time).max();
    let tables = rows
        .into_iter()
        .map(|r| TableProgress::try_from(r.table))
        .collect::<Result<Vec<_>>>()?;
    Ok((tables, latest))
}
