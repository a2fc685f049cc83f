//! Connection slots: the rows of the per-server connection budgets
//! ([`crate::budget`]). One row per lease holds slots of one server; a row
//! counts only while its job still holds that lease (in progress or
//! cancelling, lease not expired on the database clock), so an expired
//! lease frees its slots even before anything deletes the row. A fan-out
//! helper's row is keyed by its chunk's lease and counts while that chunk
//! is live (its own lease unexpired, its attempt the job's current one).

use std::collections::HashMap;

use sqlx::PgExecutor;
use uuid::Uuid;

use crate::error::{CoordinatorError, Result};
use crate::store::{to_i32, to_u32};

/// The predicate that makes a slot row count (joined as `j` on `s.job_id`).
const LIVE: &str = "j.state IN ('IN_PROGRESS', 'CANCELLING') AND j.lease_expires_at > now()
     AND (j.lease_token = s.lease_token OR EXISTS (SELECT 1 FROM chunk_tasks c
          WHERE c.job_id = j.id AND c.attempt = j.attempt AND c.lease_token = s.lease_token
            AND c.state = 'IN_PROGRESS' AND c.lease_expires_at > now()))";

/// Locks the server's budget row for this transaction (claims of one
/// server take slots one after another) and returns its size; `None` when
/// the server does not exist.
pub async fn lock_budget(db: impl PgExecutor<'_>, server_id: &str) -> Result<Option<u32>> {
    let row: Option<(i32,)> =
        sqlx::query_as("SELECT max_connections FROM servers WHERE id = $1 FOR NO KEY UPDATE")
            .bind(server_id)
            .fetch_optional(db)
            .await?;
    row.map(|(max,)| to_u32(max, "servers.max_connections"))
        .transpose()
}

/// Slots of the server held by live leases now.
pub async fn in_use(db: impl PgExecutor<'_>, server_id: &str) -> Result<u32> {
    let sql = format!(
        "SELECT coalesce(sum(s.slots), 0)::int8 FROM connection_slots s JOIN jobs j ON j.id = s.job_id
         WHERE s.server_id = $1 AND {LIVE}"
    );
    let (used,): (i64,) = sqlx::query_as(&sql).bind(server_id).fetch_one(db).await?;
    u32::try_from(used)
        .map_err(|_| CoordinatorError::internal("connection slots in use out of range"))
}

/// Slots held by live leases, per server holding any.
pub async fn in_use_by_server(db: impl PgExecutor<'_>) -> Result<HashMap<String, u32>> {
    let sql = format!(
        "SELECT s.server_id, sum(s.slots)::int8 FROM connection_slots s JOIN jobs j ON j.id = s.job_id
         WHERE {LIVE} GROUP BY s.server_id"
    );
    let rows: Vec<(String, i64)> = sqlx::query_as(&sql).fetch_all(db).await?;
    Ok(rows
        .into_iter()
        .map(|(server, used)| (server, u32::try_from(used).unwrap_or(u32::MAX)))
        .collect())
}

/// Records that the lease `lease_token` of the job holds `slots` of the server.
pub async fn take(
    db: impl PgExecutor<'_>,
    lease_token: Uuid,
    job_id: Uuid,
    server_id: &str,
    slots: u32,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO connection_slots (lease_token, job_id, server_id, slots) VALUES ($1, $2, $3, $4)",
    )
    .bind(lease_token)
    .bind(job_id)
    .bind(server_id)
    .bind(to_i32(slots))
    .execute(db)
    .await?;
    Ok(())
}

/// Frees the slot a helper's chunk lease holds (the chunk was stored or
/// failed); a job's own lease (the leader's chunks) keeps its slots.
pub async fn release_lease(db: impl PgExecutor<'_>, lease_token: Uuid) -> Result<()> {
    sqlx::query(
        "DELETE FROM connection_slots WHERE lease_token = $1
         AND NOT EXISTS (SELECT 1 FROM jobs WHERE lease_token = $1)",
    )
    .bind(lease_token)
    .execute(db)
    .await?;
    Ok(())
}

/// Frees every slot the job's leases hold (its attempt ended, or another
/// attempt took over). Returns how many rows went.
pub async fn release_job(db: impl PgExecutor<'_>, job_id: Uuid) -> Result<u64> {
    let done = sqlx::query("DELETE FROM connection_slots WHERE job_id = $1")
        .bind(job_id)
        .execute(db)
        .await?;
    Ok(done.rows_affected())
}
