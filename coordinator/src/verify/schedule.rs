//! Scheduled verifies: for each policy with a verify schedule, the latest
//! slot at or before now (on the scheduler's clock) is claimed once, and a
//! verify job is queued for every live standard-tier point of the policy's
//! instances created before the slot — except points whose verify is still
//! queued or running (one verify per point at a time). Points are queued in
//! batches of [`BATCH`], one transaction each. Slots before the policy was
//! created are never run; a slot missed while no coordinator ran runs once.

use chrono::{DateTime, Utc};

use crate::api::ApiContext;
use crate::error::Result;
use crate::slots::SlotSchedule;
use crate::store::{policies, recovery_points, verify_runs};

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
        let mut after = None;
        let mut jobs = 0;
        loop {
            let mut tx = ctx.store.begin().await?;
            let due =
                verify_runs::due_points(&mut *tx, &policy.vault_id, &policy.id, slot, after, BATCH)
                    .await?;
            let Some(&(time, _, id)) = due.last() else {
                break;
            };
            after = Some((time, id));
            for (_, instance_id, point_id) in &due {
                let point =
                    recovery_points::get(&mut *tx, &policy.vault_id, *instance_id, *point_id)
                        .await?;
                if super::queue::refusal(&point).is_none() {
                    let (_, new) = super::queue::verify_point(&mut tx, &point).await?;
                    jobs += usize::from(new);
                }
            }
            tx.commit().await?;
            ctx.dispatch_wake.notify_one();
        }
        tracing::info!(vault = %policy.vault_id, policy = %policy.id, slot = %slot, jobs, "scheduled verify queued");
        queued += jobs;
    }
    Ok(queued)
}
