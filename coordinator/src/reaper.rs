//! The lease reaper: jobs IN_PROGRESS whose lease expired (database clock)
//! go back to the queue with a new outbox row and attempt + 1, or fail with
//! `SystemErrorLeaseExpired` once `max_attempts` is used up. Only the
//! coordinator holding the reaper's [`Leadership`] lock reaps; the others
//! keep trying to take it.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::leader::Leadership;
use crate::model::{JobError, JobState};
use crate::store::{Store, jobs, outbox};

/// Advisory lock key of the reaper ("pgvreap" in ASCII).
const REAPER_LOCK: i64 = 0x0070_6776_7265_6170;
const BATCH: i64 = 100;

/// Code of jobs failed because their worker stopped heartbeating.
pub const LEASE_EXPIRED: &str = "SystemErrorLeaseExpired";

/// What the reaper needs.
pub struct ReaperSettings {
    pub connect: PgConnectOptions,
    pub interval: Duration,
    pub max_attempts: u32,
}

/// Runs until `cancel` fires.
pub async fn run(
    store: Store,
    settings: ReaperSettings,
    wake_dispatcher: Arc<Notify>,
    cancel: CancellationToken,
) {
    let mut leadership = Leadership::new(settings.connect.clone(), REAPER_LOCK, "reaper");
    loop {
        if leadership.check().await {
            match reap_once(&store, settings.max_attempts).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(jobs = n, "reaped expired leases");
                    wake_dispatcher.notify_one();
                }
                Err(error) => tracing::warn!(error = %error, "reaper pass failed"),
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(settings.interval) => {}
        }
    }
    leadership.release().await;
}

/// One pass: re-queues or fails every job with an expired lease. Returns how
/// many jobs it changed.
pub async fn reap_once(store: &Store, max_attempts: u32) -> Result<usize> {
    let mut tx = store.begin().await?;
    let expired = jobs::lock_expired(&mut *tx, BATCH).await?;
    for (job_id, attempt) in &expired {
        if *attempt < max_attempts {
            let error = JobError {
                code: LEASE_EXPIRED.into(),
                message: format!(
                    "attempt {attempt} stopped: its worker sent no heartbeat before the lease expired"
                ),
                recommended_action: "No action needed: the job was queued for another attempt"
                    .into(),
            };
            let next = jobs::requeue(&mut *tx, *job_id, &error).await?;
            outbox::insert(&mut *tx, *job_id, next).await?;
            tracing::warn!(job_id = %job_id, attempt = *attempt, next_attempt = next, "lease expired; job re-queued");
        } else {
            let error = JobError {
                code: LEASE_EXPIRED.into(),
                message: format!(
                    "the worker stopped sending heartbeats and all {max_attempts} attempts are used up"
                ),
                recommended_action:
                    "Check that workers are running and can reach the coordinator, then start the \
                                     job again"
                        .into(),
            };
            jobs::finish_failed(&mut *tx, *job_id, JobState::Failed, &error).await?;
            tracing::warn!(job_id = %job_id, attempt = *attempt, "lease expired on the last attempt; job failed");
        }
    }
    tx.commit().await?;
    Ok(expired.len())
}
