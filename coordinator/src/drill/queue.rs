//! Queuing the drill job of one recovery point: on demand
//! (`DrillRecoveryPoint`) and after every Nth completed backup of an
//! instance under a drilling policy (in the transaction that records the
//! point). The job, its target row and its outbox row are written in the
//! caller's transaction. A point with a drill queued or running gets that
//! job back, never a second one.

use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::Result;
use crate::model::{DrillSpec, Job, JobSpec, Policy, RecoveryPoint};
use crate::secret_ref::SecretRef;
use crate::store::jobs::{self, NewJob};
use crate::store::{drills, outbox, recovery_points};

/// The drill job of `point` on `server_id` with `secret`: the one queued or
/// running, or a new one (with its outbox row). Returns it and whether it
/// is new. Refused like a verify (soft-deleted or archive points).
pub async fn drill_point(
    conn: &mut PgConnection,
    point: &RecoveryPoint,
    server_id: &str,
    secret: &SecretRef,
) -> Result<(Job, bool)> {
    if let Some(error) = crate::verify::queue::refusal(point) {
        return Err(error);
    }
    if let Some(active) = drills::active_job(&mut *conn, point.id).await? {
        return Ok((jobs::get(&mut *conn, active).await?, false));
    }
    let job = jobs::insert(
        &mut *conn,
        &NewJob {
            vault_id: point.vault_id.clone(),
            spec: JobSpec::Drill(Box::new(DrillSpec {
                instance_id: point.backup_instance_id,
                point_id: point.id,
                server_id: server_id.to_string(),
                secret: secret.clone(),
            })),
            waits_for_job_id: None,
        },
    )
    .await?;
    outbox::insert(&mut *conn, job.id, job.attempt).await?;
    crate::job_span::of("job.queued", &job)
        .in_scope(|| tracing::info!(point = %point.id, server = %server_id, "drill queued"));
    Ok((job, true))
}

/// Queues the drill of the point a backup under `policy` just produced
/// (recorded in this transaction) when it is the instance's Nth, 2Nth…
/// completed backup. Returns the job's id.
pub async fn after_backup(
    conn: &mut PgConnection,
    policy: &Policy,
    instance_id: Uuid,
    point_id: Uuid,
) -> Result<Option<Uuid>> {
    let Some(rule) = &policy.drill else {
        return Ok(None);
    };
    let produced = drills::points_produced(&mut *conn, instance_id).await?;
    if !drill_due(produced, rule.every) {
        return Ok(None);
    }
    let point = recovery_points::get(&mut *conn, &policy.vault_id, instance_id, point_id).await?;
    let (job, new) = drill_point(conn, &point, &rule.server_id, &rule.secret).await?;
    Ok(new.then_some(job.id))
}

/// Whether the instance's `produced`th completed backup is drilled.
fn drill_due(produced: u64, every: u32) -> bool {
    every > 0 && produced > 0 && produced.is_multiple_of(u64::from(every))
}

#[cfg(test)]
mod tests {
    use super::drill_due;

    #[test]
    fn every_nth_completed_backup_is_drilled() {
        assert!(drill_due(1, 1) && drill_due(2, 1));
        assert!(!drill_due(1, 3) && !drill_due(2, 3) && drill_due(3, 3) && drill_due(6, 3));
        assert!(!drill_due(0, 1) && !drill_due(5, 0));
    }
}
