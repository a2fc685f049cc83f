//! The lease reaper: jobs IN_PROGRESS whose lease expired (database clock)
//! go back to the queue with a new outbox row and attempt + 1, or fail with
//! `SystemErrorLeaseExpired` once `max_attempts` is used up. Only the
//! coordinator holding a session advisory lock on a dedicated connection
//! reaps; the others keep trying to take the lock.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
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
    // The dedicated connection, and whether it holds the reaper lock.
    let mut lock_conn: Option<(PgConnection, bool)> = None;
    loop {
        lock_conn = match lock_conn.take() {
            None => connect(&settings.connect).await.map(|conn| (conn, false)),
            Some((conn, held)) => Some((conn, held)),
        };
        if let Some((conn, held)) = lock_conn.as_mut() {
            match hold_lock(conn, *held).await {
                Ok(now_held) => *held = now_held,
                Err(error) => {
                    // A dead connection means the lock is gone too.
                    tracing::warn!(error = %error, "reaper lost its lock connection");
                    lock_conn = None;
                }
            }
        }
        if matches!(lock_conn, Some((_, true))) {
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
    if let Some((conn, _)) = lock_conn {
        drop(conn.close().await);
    }
}

async fn connect(options: &PgConnectOptions) -> Option<PgConnection> {
    match options.connect().await {
        Ok(conn) => Some(conn),
        Err(error) => {
            tracing::warn!(error = %error, "reaper cannot connect to the state database");
            None
        }
    }
}

/// Checks the connection is alive and, if the lock is not held yet, tries to
/// take it. Returns whether this connection holds the lock.
async fn hold_lock(conn: &mut PgConnection, held: bool) -> std::result::Result<bool, sqlx::Error> {
    if held {
        sqlx::query("SELECT 1").execute(&mut *conn).await?;
        return Ok(true);
    }
    let (locked,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
        .bind(REAPER_LOCK)
        .fetch_one(&mut *conn)
        .await?;
    if locked {
        tracing::debug!("this coordinator now reaps expired leases");
    }
    Ok(locked)
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
