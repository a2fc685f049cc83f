//! Scheduled verifies: for each policy with a verify schedule, the latest
//! slot at or before now (on the scheduler's clock) is claimed once, and a
//! verify job is queued for every live standard-tier point of the policy's
//! instances created before the slot — except points whose verify is still
//! queued or running (one verify per point at a time). Points are queued in
//! batches of [`BATCH`], one transaction each, every point under its own
//! savepoint: a point whose job cannot be queued is logged with its
//! instance and skipped, and the slot's other points are still queued.
//! Slots before the policy was created are never run; a slot missed while
//! no coordinator ran runs once.

use chrono::{DateTime, Utc};
use futures::FutureExt;
use uuid::Uuid;

use crate::api::ApiContext;
use crate::error::Result;
use crate::model::Policy;
use crate::slots::SlotSchedule;
use crate::store::{self, policies, recovery_points, verify_runs};

/// Points queued per transaction.
const BATCH: i64 = 500;

/// Runs the due verify slots of every policy at `now`; returns the jobs queued.
pub async fn pass(ctx: &ApiContext, now: DateTime<Utc>) -> Result<usize> {
    let mut queued = 0;
    for policy in policies::with_verify_schedule(ctx.store.pool()).await? {
        let Some(slot) = policy
            .verify_schedule
            .as_ref()
            .and_then(SlotSchedule::new)
            .and_then(|slots| slots.latest_at_or_before(now))
        else {
            continue;
        };
        if slot < policy.create_time
            || !verify_runs::claim_slot(ctx.store.pool(), &policy.vault_id, &policy.id, slot)
                .await?
        {
            continue;
        }
        queued += run_slot(ctx, &policy, slot).await?;
    }
    Ok(queued)
}

/// Queues the verifies of `policy`'s slot `slot` (claimed); returns how many.
async fn run_slot(ctx: &ApiContext, policy: &Policy, slot: DateTime<Utc>) -> Result<usize> {
    let mut after = None;
    let (mut jobs, mut failed) = (0, 0);
    loop {
        let mut tx = ctx.store.begin().await?;
        let due =
            verify_runs::due_points(&mut *tx, &policy.vault_id, &policy.id, slot, after, BATCH)
                .await?;
        let Some(&(time, _, id)) = due.last() else {
            break;
        };
        after = Some((time, id));
        for &(_, instance_id, point_id) in &due {
            let vault = policy.vault_id.clone();
            let outcome = store::in_savepoint(&mut tx, move |conn| {
                queue_one(conn, vault, instance_id, point_id).boxed()
            })
            .await?;
            match outcome {
                Ok(new) => jobs += usize::from(new),
                Err(error) => {
                    failed += 1;
                    tracing::warn!(vault = %policy.vault_id, policy = %policy.id, instance = %instance_id, point = %point_id, error = %error, "scheduled verify of a point not queued; the slot's other points go on");
                }
            }
        }
        tx.commit().await?;
        ctx.dispatch_wake.notify_one();
    }
    tracing::info!(vault = %policy.vault_id, policy = %policy.id, slot = %slot, jobs, failed, "scheduled verify queued");
    Ok(jobs)
}

/// Queues the verify of one point unless it is refused now (soft-deleted or
/// archived since it was listed); true when a new job was queued.
async fn queue_one(
    conn: &mut sqlx::PgConnection,
    vault: String,
    instance_id: Uuid,
    point_id: Uuid,
) -> Result<bool> {
    let point = recovery_points::get(&mut *conn, &vault, instance_id, point_id).await?;
    if super::queue::refusal(&point).is_some() {
        return Ok(false);
    }
    Ok(super::queue::verify_point(conn, &point).await?.1)
}
