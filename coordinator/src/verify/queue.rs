//! Queuing the verify job of one recovery point (the API's
//! `VerifyRecoveryPoint` and the scheduled pass): the job and its outbox
//! row in the caller's transaction. A point with a verify queued or running
//! gets that job back, never a second one.

use sqlx::PgConnection;

use crate::error::{CoordinatorError, Result};
use crate::model::{Job, JobSpec, RecoveryPoint, Tier};
use crate::names;
use crate::store::jobs::{self, NewJob};
use crate::store::{outbox, verify_runs};

/// Why `point` cannot be verified now, if it cannot.
pub fn refusal(point: &RecoveryPoint) -> Option<CoordinatorError> {
    let name = names::recovery_point_name(&point.vault_id, point.backup_instance_id, point.id);
    if let Some(deleted) = &point.soft_delete {
        return Some(CoordinatorError::refused(
            pgvault_errors::ErrorCode::UserErrorRecoveryPointDeleted,
            format!(
                "recovery point {name} was deleted by {}; undelete it first: pgvault recovery-point undelete {name}",
                deleted.by
            ),
        ));
    }
    if point.tier == Tier::Archive {
        return Some(CoordinatorError::precondition(format!(
            "recovery point {name} is on the archive tier, which pgvault does not read in place; \
             restore it (which rehydrates it) or verify a point on the standard tier"
        )));
    }
    None
}

/// The verify job of `point`: the one queued or running, or a new one
/// (with its outbox row). Returns it and whether it is new.
pub async fn verify_point(conn: &mut PgConnection, point: &RecoveryPoint) -> Result<(Job, bool)> {
    if let Some(error) = refusal(point) {
        return Err(error);
    }
    if let Some(active) = verify_runs::active_job(&mut *conn, point.id).await? {
        return Ok((jobs::get(&mut *conn, active).await?, false));
    }
    let job = jobs::insert(
        &mut *conn,
        &NewJob {
            vault_id: point.vault_id.clone(),
            spec: JobSpec::Verify {
                instance_id: point.backup_instance_id,
                point_id: point.id,
            },
            waits_for_job_id: None,
        },
    )
    .await?;
    outbox::insert(&mut *conn, job.id, job.attempt).await?;
    crate::job_span::of("job.queued", &job)
        .in_scope(|| tracing::info!(point = %point.id, "verify queued"));
    Ok((job, true))
}
