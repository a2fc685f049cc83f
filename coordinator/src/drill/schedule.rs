//! Scheduled drills: for each policy with a drill schedule, the latest slot
//! at or before now (on the scheduler's clock) is claimed once, and every
//! instance under the policy has its newest live standard-tier point
//! drilled (`queue::drill_point`: a point whose drill is still queued or
//! running keeps that job; instances with no such point are skipped).
//! Instances are handled in batches of [`BATCH`], one transaction each,
//! every instance under its own savepoint: an instance whose drill cannot
//! be queued is logged and skipped, and the slot's other instances are
//! still drilled. Slots before the policy was created are never run; a slot
//! missed while no coordinator ran runs once.

use chrono::{DateTime, Utc};
use futures::FutureExt;
use uuid::Uuid;

use crate::api::ApiContext;
use crate::error::Result;
use crate::model::{DrillRule, Policy};
use crate::slots::SlotSchedule;
use crate::store::{self, drills, policies, recovery_points};

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
        queued += run_slot(ctx, &policy, rule, slot).await?;
    }
    Ok(queued)
}

/// Queues the drills of `policy`'s slot `slot` (claimed) by `rule`; returns
/// how many.
async fn run_slot(
    ctx: &ApiContext,
    policy: &Policy,
    rule: &DrillRule,
    slot: DateTime<Utc>,
) -> Result<usize> {
    let mut after = None;
    let (mut jobs, mut failed) = (0, 0);
    loop {
        let mut tx = ctx.store.begin().await?;
        let newest =
            drills::newest_points(&mut *tx, &policy.vault_id, &policy.id, after, BATCH).await?;
        let Some(&(last, _)) = newest.last() else {
            break;
        };
        after = Some(last);
        for &(instance_id, point_id) in &newest {
            let (vault, owned) = (policy.vault_id.clone(), rule.clone());
            let outcome = store::in_savepoint(&mut tx, move |conn| {
                queue_one(conn, vault, owned, instance_id, point_id).boxed()
            })
            .await?;
            match outcome {
                Ok(new) => jobs += usize::from(new),
                Err(error) => {
                    failed += 1;
                    tracing::warn!(vault = %policy.vault_id, policy = %policy.id, instance = %instance_id, point = %point_id, server = %rule.server_id, error = %error, "scheduled drill of an instance not queued; the slot's other instances go on");
                }
            }
        }
        tx.commit().await?;
        ctx.dispatch_wake.notify_one();
    }
    tracing::info!(vault = %policy.vault_id, policy = %policy.id, slot = %slot, jobs, failed, "scheduled drill queued");
    Ok(jobs)
}

/// Queues the drill of one instance's newest point; true when a new job was
/// queued.
async fn queue_one(
    conn: &mut sqlx::PgConnection,
    vault: String,
    rule: DrillRule,
    instance_id: Uuid,
    point_id: Uuid,
) -> Result<bool> {
    let point = recovery_points::get(&mut *conn, &vault, instance_id, point_id).await?;
    let (_, new) = super::queue::drill_point(conn, &point, &rule.server_id, &rule.secret).await?;
    Ok(new)
}
