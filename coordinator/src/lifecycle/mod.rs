//! Lifecycle of recovery points after they are taken: the sweeper (on the
//! coordinator holding its [`Leadership`] lock, reading time through the
//! [`Clock`]) finds points past their expiry and queues, exactly once per
//! point and stage, a TIER_MOVE or DELETE job through the job + outbox path;
//! workers copy or delete the objects and the coordinator then updates the
//! point (archive tier, new location and expiry) or marks it deleted.
//! Restores from archive points first rehydrate a copy into the standard
//! datastore for 10–30 days; the restore job waits for that REHYDRATE job.
//! Copies in a policy's second datastore expire here too, by their own
//! retention (see [`crate::copies`]).
//!
//! # Layout
//! - `decide`: the pure decision per point and instant (unit-tested).
//! - `queue`: creating lifecycle jobs (expiry, and the purge of
//!   soft-deleted points, see `data_protection`) and restores (chained to a
//!   rehydrate for archive points; refused for soft-deleted points).
//! - `tasks`: the worker task of a lifecycle job, built at claim time.
//! - `complete`: what a completed lifecycle job changes on its point.

pub mod complete;
pub mod decide;
pub mod queue;
pub mod tasks;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgConnectOptions;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::error::Result;
use crate::leader::Leadership;
use crate::store::{Store, lifecycle};

/// Advisory lock key of the lifecycle sweeper ("pgvlife" in ASCII).
pub const SWEEPER_LOCK: i64 = 0x0070_6776_6c69_6665;
/// Points looked at per pass.
const BATCH: i64 = 200;

/// What the sweeper needs.
pub struct SweeperSettings {
    pub connect: PgConnectOptions,
    pub interval: Duration,
}

/// Runs until `cancel` fires.
pub async fn run(
    store: Store,
    clock: Arc<dyn Clock>,
    settings: SweeperSettings,
    wake_dispatcher: Arc<Notify>,
    cancel: CancellationToken,
) {
    let mut leadership = Leadership::new(settings.connect.clone(), SWEEPER_LOCK, "sweeper");
    loop {
        if leadership.check().await {
            match sweep(&store, clock.now()).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(jobs = n, "lifecycle jobs queued");
                    wake_dispatcher.notify_one();
                }
                Err(error) => tracing::warn!(error = %error, "lifecycle pass failed"),
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(settings.interval) => {}
        }
    }
    leadership.release().await;
}

/// One pass over the due points. Returns how many jobs it queued.
pub async fn sweep(store: &Store, now: DateTime<Utc>) -> Result<usize> {
    let orphans = lifecycle::fail_orphaned_waiting(store.pool()).await?;
    if orphans > 0 {
        tracing::warn!(
            jobs = orphans,
            "restores failed: the rehydrate or globals restore they waited for failed"
        );
    }
    let mut queued = 0;
    for point in lifecycle::due(store.pool(), now, None, BATCH).await? {
        let decision = decide::decide(&point, now);
        if let decide::Decision::Postpone { stage } = &decision {
            tracing::info!(point = %point.id, stage = %stage, "lifecycle postponed: a restore reads the point");
            continue;
        }
        if queue::lifecycle_job(store, &point, &decision)
            .await?
            .is_some()
        {
            queued += 1;
        }
    }
    queued += crate::copies::queue::sweep(store, now).await?;
    Ok(queued)
}
