//! Chunk sub-tasks of fanned-out backups (migration 22): one row per
//! planned object of one attempt, with its own lease on the database clock.
//! A chunk is *live* for a lease holder while its row is in progress under
//! that token, the job is still in progress on the same attempt with an
//! unexpired lease, and the chunk's own lease has not expired (a chunk the
//! leader took has no expiry of its own: it follows the job's lease). Every
//! report checks liveness in its statement, so a superseded attempt or an
//! expired lease can never store a result; a chunk whose lease expired is
//! claimable again, and its next take writes a new object. A claim stamps
//! its time and starts the chunk's progress over; helpers' heartbeats and
//! every stored chunk record bytes and rows (migration 27, for throughput).
//!
//! Two kinds share the table (migration 26): a backup's DUMP chunks (on the
//! leader's snapshot) and a restore's LOAD chunks (no snapshot: each load
//! is made idempotent in the target database by the engine).

use sqlx::PgExecutor;
use uuid::Uuid;

use crate::error::Result;
use crate::store::{to_i32, to_i64, to_u32, to_u64};

/// What the leader offers: key, spec, tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub key: String,
    pub spec: String,
    pub tables: Vec<String>,
}

/// What a chunk sub-task does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkKind {
    /// Dump a backup's planned object on the leader's snapshot.
    Dump,
    /// Load a restore's planned load into the target database.
    Load,
}

impl ChunkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChunkKind::Dump => "DUMP",
            ChunkKind::Load => "LOAD",
        }
    }
}

/// A chunk just claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub key: String,
    pub spec: String,
    /// Empty for a load.
    pub snapshot_id: String,
    /// This claim's number (1 for the first take).
    pub take: u32,
}

/// What a stored chunk reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub object_path: String,
    pub size: u64,
    pub sha256: String,
    pub rows: u64,
    pub entries: String,
    /// Uncompressed COPY bytes the object holds.
    pub raw_bytes: u64,
}

/// One claimed chunk's progress, timed on the database clock.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkProgress {
    pub worker_id: String,
    pub done: bool,
    pub bytes: u64,
    /// Seconds since it was claimed.
    pub since_claim: f64,
    /// Seconds since it was stored (0 while in flight).
    pub since_done: f64,
}

/// One chunk as the leader and the job details read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRow {
    pub key: String,
    pub state: String,
    pub worker_id: Option<String>,
    pub tables: Vec<String>,
    pub entries: Option<String>,
    pub size: u64,
    pub rows: u64,
}

/// The chunk `c` is live for the lease in `c.lease_token` (joined with its
/// job `j`).
const LIVE: &str = "c.state = 'IN_PROGRESS' AND j.id = c.job_id AND j.attempt = c.attempt
     AND j.state = 'IN_PROGRESS' AND j.lease_expires_at > now()
     AND (c.lease_expires_at > now() OR (c.lease_expires_at IS NULL AND j.lease_token = c.lease_token))";

/// Whether job `job_id`'s lease is unexpired by the database's clock, as
/// every other lease check counts it: once the leader stops heartbeating,
/// its attempt is over for every chunk, even before the reaper re-queues
/// the job. (The caller has read the job's state and attempt already.)
pub async fn lease_live(db: impl PgExecutor<'_>, job_id: Uuid) -> Result<bool> {
    let live: Option<bool> =
        sqlx::query_scalar("SELECT lease_expires_at > now() FROM jobs WHERE id = $1")
            .bind(job_id)
            .fetch_optional(db)
            .await?
            .flatten();
    Ok(live.unwrap_or(false))
}

/// Records the attempt's planned chunks (a repeated offer changes nothing);
/// `snapshot_id` is `None` for loads.
pub async fn offer(
    db: impl PgExecutor<'_>,
    job_id: Uuid,
    attempt: u32,
    kind: ChunkKind,
    snapshot_id: Option<&str>,
    offers: &[Offer],
) -> Result<u64> {
    let keys: Vec<&str> = offers.iter().map(|o| o.key.as_str()).collect();
    let specs: Vec<&str> = offers.iter().map(|o| o.spec.as_str()).collect();
    // text[] per row travels as one text of the joined names (names never
    // hold a newline: they are quoted identifiers).
    let tables: Vec<String> = offers.iter().map(|o| o.tables.join("\n")).collect();
    let positions: Vec<i32> = (0..offers.len() as i32).collect();
    let done = sqlx::query(
        "INSERT INTO chunk_tasks (job_id, attempt, chunk_key, position, snapshot_id, spec, tables, kind)
         SELECT $1, $2, k, p, $3, s, string_to_array(t, E'\\n'), $8
         FROM UNNEST($4::text[], $5::int4[], $6::text[], $7::text[]) AS u (k, p, s, t)
         ON CONFLICT DO NOTHING",
    )
    .bind(job_id)
    .bind(to_i32(attempt))
    .bind(snapshot_id)
    .bind(&keys)
    .bind(&positions)
    .bind(&specs)
    .bind(&tables)
    .bind(kind.as_str())
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// Claims the attempt's first chunk that is queued or whose lease expired.
/// `ttl`: the chunk's lease in seconds; `None`: it follows the job's lease
/// (the leader's claims).
pub async fn claim_next(
    db: impl PgExecutor<'_>,
    job_id: Uuid,
    attempt: u32,
    worker: &str,
    lease_token: Uuid,
    ttl: Option<f64>,
) -> Result<Option<Claimed>> {
    let row: Option<(String, String, Option<String>, i32)> = sqlx::query_as(
        "UPDATE chunk_tasks c SET state = 'IN_PROGRESS', takes = c.takes + 1, lease_token = $4,
             lease_expires_at = CASE WHEN $5::float8 IS NULL THEN NULL ELSE now() + make_interval(secs => $5) END,
             worker_id = $3, claim_time = now(), bytes_done = 0, rows_done = 0
         WHERE (c.job_id, c.attempt, c.chunk_key) = (
             SELECT job_id, attempt, chunk_key FROM chunk_tasks
             WHERE job_id = $1 AND attempt = $2
               AND (state = 'QUEUED' OR (state = 'IN_PROGRESS' AND lease_expires_at < now()))
             ORDER BY position LIMIT 1 FOR UPDATE SKIP LOCKED)
         RETURNING c.chunk_key, c.spec, c.snapshot_id, c.takes",
    )
    .bind(job_id)
    .bind(to_i32(attempt))
    .bind(worker)
    .bind(lease_token)
    .bind(ttl)
    .fetch_optional(db)
    .await?;
    row.map(|(key, spec, snapshot_id, take)| {
        Ok(Claimed {
            key,
            spec,
            snapshot_id: snapshot_id.unwrap_or_default(),
            take: to_u32(take, "chunk_tasks.takes")?,
        })
    })
    .transpose()
}

/// Chunks of the attempt not yet stored.
pub async fn remaining(db: impl PgExecutor<'_>, job_id: Uuid, attempt: u32) -> Result<u32> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM chunk_tasks WHERE job_id = $1 AND attempt = $2 AND state <> 'DONE'",
    )
    .bind(job_id)
    .bind(to_i32(attempt))
    .fetch_one(db)
    .await?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// Extends a helper's chunk lease and records its progress (bytes, rows
/// read so far; never lowered); false when the chunk is not live for it.
pub async fn heartbeat(
    db: impl PgExecutor<'_>,
    job_id: Uuid,
    lease_token: Uuid,
    ttl: f64,
    progress: (u64, u64),
) -> Result<bool> {
    let sql = format!(
        "UPDATE chunk_tasks c SET lease_expires_at = now() + make_interval(secs => $3),
             bytes_done = GREATEST(c.bytes_done, $4), rows_done = GREATEST(c.rows_done, $5)
         FROM jobs j WHERE c.job_id = $1 AND c.lease_token = $2 AND c.lease_expires_at IS NOT NULL AND {LIVE}"
    );
    let done = sqlx::query(&sql)
        .bind(job_id)
        .bind(lease_token)
        .bind(ttl)
        .bind(to_i64(progress.0))
        .bind(to_i64(progress.1))
        .execute(db)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Stores a chunk's result; false when the chunk is not live for the lease
/// (the report is refused and nothing is recorded).
pub async fn complete(
    db: impl PgExecutor<'_>,
    job_id: Uuid,
    lease_token: Uuid,
    key: &str,
    stored: &Stored,
) -> Result<bool> {
    let sql = format!(
        "UPDATE chunk_tasks c SET state = 'DONE', object_path = $4, size = $5, sha256 = $6, rows = $7,
             entries = $8, done_time = now(), lease_expires_at = NULL, bytes_done = $9, rows_done = $7
         FROM jobs j WHERE c.job_id = $1 AND c.lease_token = $2 AND c.chunk_key = $3 AND {LIVE}"
    );
    let done = sqlx::query(&sql)
        .bind(job_id)
        .bind(lease_token)
        .bind(key)
        .bind(&stored.object_path)
        .bind(to_i64(stored.size))
        .bind(&stored.sha256)
        .bind(to_i64(stored.rows))
        .bind(&stored.entries)
        .bind(to_i64(stored.raw_bytes))
        .execute(db)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Gives a failed chunk back to the attempt (queued again, its error kept);
/// false when the chunk is not live for the lease.
pub async fn fail(
    db: impl PgExecutor<'_>,
    job_id: Uuid,
    lease_token: Uuid,
    key: &str,
    error: &str,
) -> Result<bool> {
    let sql = format!(
        "UPDATE chunk_tasks c SET state = 'QUEUED', lease_token = NULL, lease_expires_at = NULL,
             worker_id = NULL, last_error = $4, claim_time = NULL, bytes_done = 0, rows_done = 0
         FROM jobs j WHERE c.job_id = $1 AND c.lease_token = $2 AND c.chunk_key = $3 AND {LIVE}"
    );
    let done = sqlx::query(&sql)
        .bind(job_id)
        .bind(lease_token)
        .bind(key)
        .bind(error)
        .execute(db)
        .await?;
    Ok(done.rows_affected() > 0)
}

type RowColumns = (
    String,
    String,
    Option<String>,
    Vec<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
);

fn read(rows: Vec<RowColumns>) -> Result<Vec<ChunkRow>> {
    rows.into_iter()
        .map(|(key, state, worker_id, tables, entries, size, rows)| {
            Ok(ChunkRow {
                key,
                state,
                worker_id,
                tables,
                entries,
                size: to_u64(size.unwrap_or(0), "chunk_tasks.size")?,
                rows: to_u64(rows.unwrap_or(0), "chunk_tasks.rows")?,
            })
        })
        .collect()
}

const COLUMNS: &str = "chunk_key, state, worker_id, tables, entries, size, rows";

/// Every chunk of one attempt, in offer order.
pub async fn list(db: impl PgExecutor<'_>, job_id: Uuid, attempt: u32) -> Result<Vec<ChunkRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM chunk_tasks WHERE job_id = $1 AND attempt = $2 ORDER BY position"
    );
    let rows: Vec<RowColumns> = sqlx::query_as(&sql)
        .bind(job_id)
        .bind(to_i32(attempt))
        .fetch_all(db)
        .await?;
    read(rows)
}

/// The chunks of the job's latest attempt that offered any (job details).
pub async fn latest(db: impl PgExecutor<'_>, job_id: Uuid) -> Result<Vec<ChunkRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM chunk_tasks WHERE job_id = $1
           AND attempt = (SELECT max(attempt) FROM chunk_tasks WHERE job_id = $1)
         ORDER BY position"
    );
    let rows: Vec<RowColumns> = sqlx::query_as(&sql).bind(job_id).fetch_all(db).await?;
    read(rows)
}

/// The progress of every claimed chunk of the job's latest attempt that
/// offered any (job details' throughput).
pub async fn progress(db: impl PgExecutor<'_>, job_id: Uuid) -> Result<Vec<ChunkProgress>> {
    let rows: Vec<(String, String, i64, f64, f64)> = sqlx::query_as(
        "SELECT worker_id, state, bytes_done,
                extract(epoch FROM now() - claim_time)::float8,
                COALESCE(extract(epoch FROM now() - done_time)::float8, 0)
         FROM chunk_tasks WHERE job_id = $1 AND worker_id IS NOT NULL AND claim_time IS NOT NULL
           AND attempt = (SELECT max(attempt) FROM chunk_tasks WHERE job_id = $1)
         ORDER BY position",
    )
    .bind(job_id)
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|(worker_id, state, bytes, since_claim, since_done)| {
            Ok(ChunkProgress {
                worker_id,
                done: state == "DONE",
                bytes: to_u64(bytes, "chunk_tasks.bytes_done")?,
                since_claim,
                since_done,
            })
        })
        .collect()
}

/// Records that a backup job asked to fan out across `workers` workers.
pub async fn request_fanout(db: impl PgExecutor<'_>, job_id: Uuid, workers: u32) -> Result<()> {
    sqlx::query("INSERT INTO fanout_requests (job_id, workers) VALUES ($1, $2)")
        .bind(job_id)
        .bind(to_i32(workers))
        .execute(db)
        .await?;
    Ok(())
}

/// The workers a job asked for (0: none asked).
pub async fn requested_workers(db: impl PgExecutor<'_>, job_id: Uuid) -> Result<u32> {
    let row: Option<(i32,)> =
        sqlx::query_as("SELECT workers FROM fanout_requests WHERE job_id = $1")
            .bind(job_id)
            .fetch_optional(db)
            .await?;
    row.map(|(w,)| to_u32(w, "fanout_requests.workers"))
        .transpose()
        .map(Option::unwrap_or_default)
}
