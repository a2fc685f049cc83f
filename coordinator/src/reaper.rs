//! The lease reaper: jobs IN_PROGRESS whose lease expired (database clock)
//! go back to the queue with a new outbox row due after an exponential
//! backoff and attempt + 1, or fail with `SystemErrorLeaseExpired` once
//! `max_attempts` is used up; jobs being cancelled end CANCELLED. The
//! expired attempt's objects are recorded for the [`collector`], which the
//! same leader runs after each pass. The attempt's history row is closed
//! as lease-expired (or cancelled) and its connection slots are freed
//! (they stopped counting when the lease expired). Only the
//! coordinator holding the reaper's [`Leadership`] lock reaps; the others
//! keep trying to take it. What it does to a job is logged in the job's
//! span ([`crate::job_span`]): in its trace, with its log fields.

use std::sync::Arc;
use std::time::Duration;

use pgvault_errors::ErrorCode;
use sqlx::postgres::PgConnectOptions;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::leader::Leadership;
use crate::model::{AttemptOutcome, JobError, JobState};
use crate::store::{Store, attempts, connection_slots, garbage, jobs, outbox};
use crate::{backoff, collector};

/// Advisory lock key of the reaper ("pgvreap" in ASCII).
const REAPER_LOCK: i64 = 0x0070_6776_7265_6170;
const BATCH: i64 = 100;

/// What the reaper needs.
pub struct ReaperSettings {
    pub connect: PgConnectOptions,
    pub interval: Duration,
    pub policy: RetryPolicy,
}

/// How expired attempts are retried and cleaned up.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts per job (counted from its last manual retry).
    pub max_attempts: u32,
    /// First delay of the exponential backoff between attempts.
    pub backoff: Duration,
    /// How long a superseded attempt's objects are left alone before they
    /// are collected (its worker may still be finishing an upload).
    pub garbage_grace: Duration,
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
            match reap_once(&store, &settings.policy).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(jobs = n, "reaped expired leases");
                    wake_dispatcher.notify_one();
                }
                Err(error) => tracing::warn!(error = %error, "reaper pass failed"),
            }
            match collector::collect_once(&store).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(prefixes = n, "collected objects of failed attempts"),
                Err(error) => tracing::warn!(error = %error, "garbage collection pass failed"),
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(settings.interval) => {}
        }
    }
    leadership.release().await;
}

/// One pass over every job with an expired lease: a job being cancelled
/// ends CANCELLED; others are re-queued after a backoff, or fail once their
/// attempts are used up. The expired attempt's objects become garbage.
/// Returns how many jobs it changed.
pub async fn reap_once(store: &Store, policy: &RetryPolicy) -> Result<usize> {
    let mut tx = store.begin().await?;
    let expired = jobs::lock_expired(&mut *tx, BATCH).await?;
    for job in &expired {
        let (job_id, attempt) = (job.id, job.attempt);
        let used = attempt.saturating_sub(job.attempts_before_retry);
        garbage::record_attempt(&mut *tx, job_id, attempt, policy.garbage_grace).await?;
        connection_slots::release_job(&mut *tx, job_id).await?;
        if job.state == JobState::Cancelling {
            let error = JobError::new(
                ErrorCode::Cancelled,
                "cancelled; its worker stopped before confirming",
            );
            jobs::finish_failed(&mut *tx, job_id, JobState::Cancelled, &error).await?;
            attempts::end(&mut *tx, job_id, AttemptOutcome::Cancelled, Some(&error)).await?;
            crate::job_span::of("lease.expired", job).in_scope(|| {
                tracing::info!("cancelled job's lease expired; job cancelled");
            });
        } else if used < policy.max_attempts {
            let error = JobError::new(
                ErrorCode::SystemErrorLeaseExpired,
                format!(
                    "attempt {attempt} stopped: its worker sent no heartbeat before the lease expired; the job was queued for another attempt"
                ),
            );
            let next = jobs::requeue(&mut *tx, job_id, &error).await?;
            attempts::end(&mut *tx, job_id, AttemptOutcome::LeaseExpired, Some(&error)).await?;
            let delay = backoff::retry_delay(policy.backoff, used);
            outbox::insert_delayed(&mut *tx, job_id, next, delay).await?;
            crate::job_span::of("lease.expired", job).in_scope(|| {
                tracing::warn!(
                    next_attempt = next,
                    delay_s = delay.as_secs_f64(),
                    "lease expired; job re-queued"
                );
            });
        } else {
            let max_attempts = policy.max_attempts;
            let error = JobError::new(
                ErrorCode::SystemErrorLeaseExpired,
                format!(
                    "the worker stopped sending heartbeats and all {max_attempts} attempts are used up"
                ),
            );
            jobs::finish_failed(&mut *tx, job_id, JobState::Failed, &error).await?;
            attempts::end(&mut *tx, job_id, AttemptOutcome::LeaseExpired, Some(&error)).await?;
            crate::job_span::of("lease.expired", job).in_scope(|| {
                tracing::warn!("lease expired on the last attempt; job failed");
            });
        }
    }
    tx.commit().await?;
    Ok(expired.len())
}
