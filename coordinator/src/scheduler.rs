//! The scheduler: turns policies into scheduled backup jobs. It runs on the
//! coordinator holding the scheduler advisory lock and ticks every few
//! seconds. Each tick, for every protected instance, it looks at the latest
//! slot at or before now (on the coordinator's [`Clock`]):
//! - already run or skipped, or before the instance's `schedule_since`:
//!   nothing to do;
//! - older than `max_lateness` (no coordinator ran for that long): recorded
//!   as SKIPPED with the reason, no job;
//! - otherwise: the slot row, the job and its outbox row are written in one
//!   transaction. The (instance, slot) primary key makes a second attempt —
//!   another coordinator, a restart mid-slot — a no-op.
//!
//! Due instances are handled in batches of [`BATCH`] per transaction with
//! multi-row statements (claim the slots, then create jobs and outbox rows
//! for exactly the slots this transaction claimed), and the dispatcher is
//! woken after each batch, so thousands of instances due in one slot are
//! queued in seconds.
//!
//! Only the latest slot is considered, so slots missed while no coordinator
//! ran fire once on return, not once each.
//!
//! Before each pass, servers protected whole get their auto-include pass
//! ([`crate::whole_server::auto_include`]): databases created since are
//! protected with their schedule counting from the due slot, so the same
//! pass queues their backups with the others'.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use sqlx::postgres::PgConnectOptions;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::api::ApiContext;
use crate::clock::Clock;
use crate::error::Result;
use crate::leader::Leadership;
use crate::model::{BackupTrigger, JobSpec};
use crate::slots::SlotSchedule;
use crate::store::jobs::NewJob;
use crate::store::schedule_runs::{self, Scheduled};
use crate::store::{Store, jobs, outbox};
use crate::whole_server::auto_include;

/// Instances queued (or skipped) per transaction.
const BATCH: usize = 1000;

/// Advisory lock key of the scheduler ("pgvsched" in ASCII, 7 bytes).
pub const SCHEDULER_LOCK: i64 = 0x0070_6776_7363_6864;

/// What the scheduler needs.
pub struct SchedulerSettings {
    pub connect: PgConnectOptions,
    pub interval: Duration,
    /// Slots older than this when first seen are skipped with a reason.
    pub max_lateness: Duration,
}

/// Runs until `cancel` fires. `ctx` asks servers protected whole for their
/// databases (directly or through their agent) and protects new ones.
pub async fn run(
    ctx: Arc<ApiContext>,
    clock: Arc<dyn Clock>,
    settings: SchedulerSettings,
    wake_dispatcher: Arc<Notify>,
    cancel: CancellationToken,
) {
    let store = ctx.store.clone();
    let mut leadership = Leadership::new(settings.connect.clone(), SCHEDULER_LOCK, "scheduler");
    loop {
        if leadership.check().await {
            let now = clock.now();
            match auto_include::pass(&ctx, now, settings.max_lateness).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(databases = n, "databases auto-included"),
                Err(error) => tracing::warn!(error = %error, "auto-include pass failed"),
            }
            match tick(&store, now, settings.max_lateness, &wake_dispatcher).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(jobs = n, "scheduled backups queued"),
                Err(error) => tracing::warn!(error = %error, "scheduler pass failed"),
            }
            if let Err(error) = crate::verify::schedule::pass(&ctx, now).await {
                tracing::warn!(error = %error, "scheduled verify pass failed");
            }
            if let Err(error) = crate::drill::schedule::pass(&ctx, now).await {
                tracing::warn!(error = %error, "scheduled drill pass failed");
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(settings.interval) => {}
        }
    }
    leadership.release().await;
}

/// What to do with an instance at `now`.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Nothing,
    Run(DateTime<Utc>),
    Skip(DateTime<Utc>, String),
}

/// Pure decision for one instance.
pub fn decide(item: &Scheduled, now: DateTime<Utc>, max_lateness: Duration) -> Decision {
    let Some(schedule) = SlotSchedule::new(&item.schedule) else {
        return Decision::Nothing;
    };
    let Some(slot) = schedule.latest_at_or_before(now) else {
        return Decision::Nothing;
    };
    if slot < item.since || item.last_slot.is_some_and(|last| last >= slot) {
        return Decision::Nothing;
    }
    let late = now - slot;
    let bound = chrono::Duration::from_std(max_lateness).unwrap_or(chrono::Duration::MAX);
    if late > bound {
        let reason = format!(
            "slot {} was missed by {} minutes while no coordinator ran; slots later than {} minutes are skipped",
            slot.to_rfc3339(),
            late.num_minutes(),
            bound.num_minutes()
        );
        return Decision::Skip(slot, reason);
    }
    Decision::Run(slot)
}

/// One pass over every protected instance. Returns how many jobs it
/// queued; wakes the dispatcher after every batch that queued some.
pub async fn tick(
    store: &Store,
    now: DateTime<Utc>,
    max_lateness: Duration,
    wake_dispatcher: &Notify,
) -> Result<usize> {
    let items = schedule_runs::protected(store.pool()).await?;
    let mut skips = Vec::new();
    let mut due = Vec::new();
    for item in items {
        match decide(&item, now, max_lateness) {
            Decision::Nothing => {}
            Decision::Skip(slot, reason) => skips.push((item.instance_id, slot, reason)),
            Decision::Run(slot) => due.push(Due {
                instance_id: item.instance_id,
                vault_id: item.vault_id,
                slot,
            }),
        }
    }
    for batch in skips.chunks(BATCH) {
        let skipped: HashSet<(Uuid, DateTime<Utc>)> =
            schedule_runs::claim_many(store.pool(), batch, "SKIPPED")
                .await?
                .into_iter()
                .collect();
        for (instance, slot, reason) in batch {
            if skipped.contains(&(*instance, *slot)) {
                tracing::warn!(instance = %instance, slot = %slot, reason = %reason, "scheduled backup skipped");
            }
        }
    }
    let mut queued = 0;
    for batch in due.chunks(BATCH) {
        let n = queue(store, batch.to_vec()).await?;
        if n > 0 {
            queued += n;
            wake_dispatcher.notify_one();
        }
    }
    Ok(queued)
}

/// An instance whose slot is due.
#[derive(Debug, Clone)]
struct Due {
    instance_id: Uuid,
    vault_id: String,
    slot: DateTime<Utc>,
}

/// Claims the slots of `batch` and queues a job for each slot this
/// transaction claimed, in one transaction; slots already claimed (another
/// coordinator, a restart mid-slot) are left alone. Returns how many jobs.
async fn queue(store: &Store, batch: Vec<Due>) -> Result<usize> {
    let queued = store
        .in_tx(move |conn| {
            async move {
                let slots: Vec<(Uuid, DateTime<Utc>, String)> = batch
                    .iter()
                    .map(|d| (d.instance_id, d.slot, String::new()))
                    .collect();
                let claimed = schedule_runs::claim_many(&mut *conn, &slots, "QUEUED").await?;
                let claimed: HashSet<(Uuid, DateTime<Utc>)> = claimed.into_iter().collect();
                let batch: Vec<Due> = batch
                    .into_iter()
                    .filter(|d| claimed.contains(&(d.instance_id, d.slot)))
                    .collect();
                let new_jobs: Vec<NewJob> = batch
                    .iter()
                    .map(|d| NewJob {
                        vault_id: d.vault_id.clone(),
                        spec: JobSpec::Backup {
                            instance_id: d.instance_id,
                            // Tagged on completion from the history of successes.
                            trigger: BackupTrigger::Scheduled,
                            produced_point_id: None,
                        },
                        waits_for_job_id: None,
                    })
                    .collect();
                let inserted = jobs::insert_many(&mut *conn, &new_jobs).await?;
                // New jobs start at attempt 1.
                let tasks: Vec<(Uuid, u32)> = inserted.iter().map(|(id, _)| (*id, 1)).collect();
                outbox::insert_many(&mut *conn, &tasks).await?;
                let runs: Vec<(Uuid, DateTime<Utc>, Uuid)> = batch
                    .iter()
                    .zip(&inserted)
                    .map(|(d, (id, _))| (d.instance_id, d.slot, *id))
                    .collect();
                schedule_runs::set_jobs(&mut *conn, &runs).await?;
                Ok(runs
                    .into_iter()
                    .zip(inserted)
                    .map(|((instance, slot, id), (_, trace))| (instance, slot, id, trace))
                    .collect::<Vec<_>>())
            }
            .boxed()
        })
        .await?;
    for (instance, slot, job_id, trace) in &queued {
        crate::job_span::of_parts("job.queued", *job_id, 1, Some(*instance), Some(trace))
            .in_scope(|| tracing::info!(slot = %slot, "scheduled backup queued"));
    }
    Ok(queued.len())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use uuid::Uuid;

    use super::*;
    use crate::model::Schedule;

    fn item(last: Option<DateTime<Utc>>) -> Scheduled {
        Scheduled {
            instance_id: Uuid::nil(),
            vault_id: "v".into(),
            schedule: Schedule {
                weekdays: vec![1, 4],
                time_of_day: "02:30".into(),
                time_zone: "Europe/Berlin".into(),
            },
            since: Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
            last_slot: last,
        }
    }

    #[test]
    fn runs_the_latest_slot_once_and_skips_stale_ones() {
        let hour = Duration::from_secs(3600);
        let monday = Utc.with_ymd_and_hms(2025, 1, 13, 1, 30, 0).unwrap();
        let thursday = Utc.with_ymd_and_hms(2025, 1, 16, 1, 30, 0).unwrap();
        // A minute after Monday's slot: run it.
        let now = monday + chrono::Duration::minutes(1);
        assert_eq!(decide(&item(None), now, hour), Decision::Run(monday));
        assert_eq!(decide(&item(Some(monday)), now, hour), Decision::Nothing);
        // Down from Sunday to Thursday 01:45: only Thursday runs, once.
        let back = thursday + chrono::Duration::minutes(15);
        assert_eq!(decide(&item(None), back, hour), Decision::Run(thursday));
        // Back on Friday: Thursday's slot is too old.
        let friday = thursday + chrono::Duration::hours(20);
        match decide(&item(Some(monday)), friday, hour) {
            Decision::Skip(slot, reason) => {
                assert_eq!(slot, thursday);
                assert!(reason.contains("missed by 1200 minutes"), "{reason}");
            }
            other => panic!("expected a skip, got {other:?}"),
        }
        // Slots before the instance was configured never run.
        let mut young = item(None);
        young.since = monday + chrono::Duration::minutes(5);
        assert_eq!(decide(&young, now, hour), Decision::Nothing);
    }
}
