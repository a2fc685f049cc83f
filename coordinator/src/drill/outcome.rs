//! The result of a drill job, recorded on its point in the transaction that
//! ends the job: `OK` with what was checked when it completes, `FAILED` with
//! the error code when it fails for good (a cancelled drill, or an attempt
//! that will be retried, records nothing).

use chrono::{DateTime, Utc};
use pgvault_proto::v1 as pb;
use sqlx::PgConnection;

use crate::error::Result;
use crate::model::{Job, JobSpec};
use crate::store::recovery_points::{self, DrillRecord};

/// Records how drill job `job` ended (no-op for other operations):
/// `Ok(result)` for a completed job, `Err(code)` for a failed one.
pub async fn record(
    conn: &mut PgConnection,
    job: &Job,
    now: DateTime<Utc>,
    ended: std::result::Result<Option<&pb::DrillResult>, &str>,
) -> Result<()> {
    let JobSpec::Drill(drill) = &job.spec else {
        return Ok(());
    };
    let result = ended.as_ref().ok().copied().flatten();
    let record = DrillRecord {
        job_id: job.id,
        at: now,
        server_id: &drill.server_id,
        error_code: ended.err(),
        tables: result.map_or(0, |r| r.tables),
        rows: result.map_or(0, |r| r.rows),
        checksums: result.is_some_and(|r| r.checksums),
    };
    recovery_points::record_drill(&mut *conn, drill.point_id, &record).await?;
    match ended {
        Ok(_) => {
            tracing::info!(job_id = %job.id, point = %drill.point_id, tables = record.tables, rows = record.rows, "recovery point verified by drill")
        }
        Err(code) => {
            tracing::warn!(job_id = %job.id, point = %drill.point_id, code, "recovery point failed its drill")
        }
    }
    Ok(())
}
