//! Scheduled drills: for each policy with a drill schedule, the latest slot
//! at or before now (on the scheduler's clock) is claimed once, and every
//! instance under the policy has its newest live standard-tier point
//! drilled (`queue::drill_point`: a point whose drill is still queued or
//! running keeps that job; instances with no such point are skipped).
//! Instances are handled in batches of [`BATCH`], one transaction each.
//! Slots before the policy was created are never run; a slot missed while
//! no coordinator ran runs once.

use chrono::{DateTime, Utc};

use crate::api::ApiContext;
use crate::error::Result;
use crate::slots::SlotSchedule;
use crate::store::{drills, policies, recovery_points};

/// Instances handled per transaction.
const BATCH: i64 = 500;

/// Runs the due drill slots of every policy at `now`; returns the jobs queued.
pub async fn pass(ctx: &ApiContext, now: DateTime<Utc>) -> Result<usize> {
    let mut queued = 0;
    for policy in policies::with_drill_schedule(ctx.store.pool()).await? {
        let Some(rule) = &policy.drill else {
            continue;
        };
        let Some(slot) = rule
            .schedule
            .as_ref()
            .and_then(SlotSchedule::new)
            .and_then(|slots| slots.latest_at_or_before(now))
        else {
            continue;
        };
        if slot < policy.create_time
            || !drills::claim_slot(ctx.store.pool(), &policy.vault_id, &policy.id, slot).await?
        {
            continue;
        }
        let mut after = None;
        let mut jobs = 0;
        loop {
            let mut tx = ctx.store.begin().await?;
            let newest =
                drills::newest_points(&mut *tx, &policy.vault_id, &policy.id, after, BATCH).await?;
            let Some(&(last, _)) = newest.last() else {
                break;
            };
            after = Some(last);
            for (instance_id, point_id) in &newest {
                let point =
                    recovery_points::get(&mut *tx, &policy.vault_id, *instance_id, *point_id)
                        .await?;
                let (_, new) =
                    super::queue::drill_point(&mut tx, &point, &rule.server_id, &rule.secret)
                        .await?;
                jobs += usize::from(new);
            }
            tx.commit().await?;
            ctx.dispatch_wake.notify_one();
        }
        tracing::info!(vault = %policy.vault_id, policy = %policy.id, slot = %slot, jobs, "scheduled drill queued");
        queued += jobs;
    }
    Ok(queued)
}
