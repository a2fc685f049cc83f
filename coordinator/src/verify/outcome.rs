//! The result of a verify job, recorded on its point in the transaction
//! that ends the job: `OK` when it completes, `FAILED` with the error code
//! when it fails for good (a cancelled verify, or an attempt that will be
//! retried, records nothing).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::error::Result;
use crate::model::{Job, JobSpec};
use crate::store::recovery_points;

/// Records how verify job `job` ended (no-op for other operations):
/// `error_code` `None` for a completed job.
pub async fn record(
    conn: &mut PgConnection,
    job: &Job,
    now: DateTime<Utc>,
    error_code: Option<&str>,
) -> Result<()> {
    let JobSpec::Verify { point_id, .. } = &job.spec else {
        return Ok(());
    };
    recovery_points::record_verify(&mut *conn, *point_id, job.id, now, error_code).await?;
    match error_code {
        None => tracing::info!(job_id = %job.id, point = %point_id, "recovery point verified"),
        Some(code) => {
            tracing::warn!(job_id = %job.id, point = %point_id, code, "recovery point failed verification")
        }
    }
    Ok(())
}
