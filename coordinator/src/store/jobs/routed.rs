//! Which unfinished jobs run through a server: those whose route
//! ([`crate::model::JobSpec::route`]) is that server — a backup, verify or
//! restore as files of one of its instances, a restore as a database or a
//! drill into it. A job's agent is fixed from its route when it is created,
//! so rebinding a server waits until these have ended.

use sqlx::PgExecutor;
use uuid::Uuid;

use super::ACTIVE_STATES;
use crate::error::Result;

/// Up to `limit` jobs queued, in progress or cancelling whose route is
/// `server_id`, oldest first. The route is read as `JobSpec::route` decides
/// it: a restore target's server (restores as a database, drills), else the
/// server of the job's instance; lifecycle jobs have none.
pub async fn unfinished_through_server(
    db: impl PgExecutor<'_>,
    server_id: &str,
    limit: i64,
) -> Result<Vec<Uuid>> {
    let sql = format!(
        "SELECT j.id FROM jobs j
           LEFT JOIN restore_targets t ON t.job_id = j.id
           LEFT JOIN backup_instances i ON i.id = j.backup_instance_id
          WHERE j.state IN {ACTIVE_STATES}
            AND j.operation IN ('SCHEDULED_BACKUP', 'ON_DEMAND_BACKUP', 'RESTORE', 'VERIFY', 'DRILL')
            AND coalesce(t.target_server_id, i.server_id) = $1
          ORDER BY j.create_time, j.id
          LIMIT $2"
    );
    Ok(sqlx::query_scalar(&sql)
        .bind(server_id)
        .bind(limit)
        .fetch_all(db)
        .await?)
}
