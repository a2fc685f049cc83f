//! The leader's feed: the coordinator holding the feed's advisory lock
//! reads, every interval, the jobs and attempts that ended and the
//! scheduled jobs created since its watermark, and counts each once — so a
//! job is counted once in the cluster whichever coordinator ended it
//! (worker calls, the reaper, a cancel, the agent sweeper, a dead letter).
//! A new leader starts at the database's "now": history is not counted
//! again, and what ends during a hand-over (one interval) may go uncounted.
//!
//! Rows are stamped by `now()`, the start of the transaction that wrote
//! them, so a row may commit a little after a later-stamped one: each read
//! reaches [`OVERLAP`] back behind the watermark and [`Cursor`] drops rows
//! it has already counted.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pgvault_errors::ErrorCode;
use sqlx::postgres::PgConnectOptions;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::Result;
use crate::leader::Leadership;
use crate::metrics::Metrics;
use crate::metrics::families::{AttemptLabels, ErrorLabels, JobLabels, OperationLabels};
use crate::store::{Store, metrics as queries};

/// Advisory lock key of the feed ("pgvmetr" in ASCII).
const FEED_LOCK: i64 = 0x0070_6776_6d65_7472;
/// How far behind its watermark each read reaches.
pub const OVERLAP: Duration = Duration::from_secs(60);

/// What the feed needs.
pub struct FeedSettings {
    pub connect: PgConnectOptions,
    pub interval: Duration,
}

/// A watermark over rows stamped with a time, and the keys seen within
/// [`OVERLAP`] of it: each row is admitted once.
#[derive(Debug)]
pub struct Cursor<K> {
    /// Nothing at or before this is admitted (where the feed started).
    floor: DateTime<Utc>,
    /// The newest time admitted so far.
    watermark: DateTime<Utc>,
    seen: HashMap<K, DateTime<Utc>>,
}

impl<K: Hash + Eq> Cursor<K> {
    pub fn starting_at(now: DateTime<Utc>) -> Self {
        Cursor {
            floor: now,
            watermark: now,
            seen: HashMap::new(),
        }
    }

    /// Where the next read starts.
    pub fn since(&self) -> DateTime<Utc> {
        let back = chrono::Duration::from_std(OVERLAP).unwrap_or_default();
        (self.watermark - back).max(self.floor)
    }

    /// True the first time `key` is offered (and not before the floor).
    pub fn admit(&mut self, key: K, time: DateTime<Utc>) -> bool {
        if time <= self.floor || self.seen.contains_key(&key) {
            return false;
        }
        self.seen.insert(key, time);
        self.watermark = self.watermark.max(time);
        true
    }

    /// Forgets keys too old to be read again.
    pub fn prune(&mut self) {
        let since = self.since();
        self.seen.retain(|_, time| *time >= since);
    }
}

/// The three cursors of one leadership term.
struct Cursors {
    jobs: Cursor<(Uuid, DateTime<Utc>)>,
    attempts: Cursor<(Uuid, i32)>,
    scheduled: Cursor<Uuid>,
}

/// Runs until `cancel` fires.
pub async fn run(
    store: Store,
    metrics: Metrics,
    settings: FeedSettings,
    cancel: CancellationToken,
) {
    let mut leadership = Leadership::new(settings.connect.clone(), FEED_LOCK, "metrics feed");
    let mut cursors: Option<Cursors> = None;
    loop {
        if leadership.check().await {
            metrics.families().feed_leader.set(1);
            if let Err(error) = pass(&store, &metrics, &mut cursors).await {
                tracing::warn!(error = %error, "metrics feed pass failed");
            }
        } else {
            metrics.families().feed_leader.set(0);
            cursors = None;
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(settings.interval) => {}
        }
    }
    leadership.release().await;
}

/// One read of each feed; the first pass of a term only sets the cursors.
async fn pass(store: &Store, metrics: &Metrics, cursors: &mut Option<Cursors>) -> Result<()> {
    let Some(c) = cursors.as_mut() else {
        let now = queries::now(store.pool()).await?;
        *cursors = Some(Cursors {
            jobs: Cursor::starting_at(now),
            attempts: Cursor::starting_at(now),
            scheduled: Cursor::starting_at(now),
        });
        return Ok(());
    };
    let f = metrics.families();
    for job in queries::jobs_ended_since(store.pool(), c.jobs.since()).await? {
        if !c.jobs.admit((job.id, job.end_time), job.end_time) {
            continue;
        }
        let labels = JobLabels {
            operation: job.operation.clone(),
            state: job.state.clone(),
        };
        f.jobs_finished.get_or_create(&labels).inc();
        if let Some(seconds) = job.run_seconds {
            f.job_duration
                .get_or_create(&labels)
                .observe(seconds.max(0.0));
        }
        if job.state.starts_with("COMPLETED") {
            f.job_bytes
                .get_or_create(&OperationLabels {
                    operation: job.operation,
                })
                .observe(job.bytes.max(0) as f64);
        }
    }
    for attempt in queries::attempts_ended_since(store.pool(), c.attempts.since()).await? {
        if !c
            .attempts
            .admit((attempt.job_id, attempt.attempt), attempt.end_time)
        {
            continue;
        }
        f.attempts_ended
            .get_or_create(&AttemptLabels {
                operation: attempt.operation.clone(),
                outcome: attempt.outcome,
            })
            .inc();
        if let Some(code) = attempt.error_code.filter(|c| !c.is_empty()) {
            f.job_errors
                .get_or_create(&error_labels(attempt.operation, &code))
                .inc();
        }
    }
    for (job_id, lag, created) in
        queries::scheduled_since(store.pool(), c.scheduled.since()).await?
    {
        if c.scheduled.admit(job_id, created) {
            f.scheduler_lag.observe(lag.max(0.0));
        }
    }
    c.jobs.prune();
    c.attempts.prune();
    c.scheduled.prune();
    Ok(())
}

/// A code of the catalogue with its category; anything else is `other`.
pub fn error_labels(operation: String, code: &str) -> ErrorLabels {
    match ErrorCode::lookup(code) {
        Some(known) => ErrorLabels {
            operation,
            code: known.as_str().to_string(),
            category: known.category().as_str().to_string(),
        },
        None => ErrorLabels {
            operation,
            code: "other".into(),
            category: "other".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn a_cursor_admits_each_key_once_and_nothing_from_before_it_started() {
        let mut cursor = Cursor::starting_at(at(0));
        assert!(!cursor.admit("history", at(0)));
        assert!(!cursor.admit("older history", at(-5)));
        assert!(cursor.admit("a", at(10)));
        assert!(!cursor.admit("a", at(10)), "the same row read again");
        assert_eq!(cursor.since(), at(0), "never before the floor");
    }

    #[test]
    fn a_cursor_reads_back_over_the_overlap_to_catch_late_commits() {
        let mut cursor = Cursor::starting_at(at(0));
        assert!(cursor.admit("b", at(200)));
        assert_eq!(cursor.since(), at(200 - OVERLAP.as_secs() as i64));
        // A transaction stamped before b committed after b was read.
        assert!(cursor.admit("late", at(180)));
        cursor.prune();
        assert!(
            !cursor.admit("b", at(200)),
            "still remembered after pruning"
        );
        assert!(cursor.admit("c", at(400)));
        cursor.prune();
        assert_eq!(
            cursor.seen.len(),
            1,
            "keys older than the overlap are forgotten"
        );
    }

    #[test]
    fn unknown_error_codes_are_counted_as_other() {
        let known = error_labels("RESTORE".into(), "DatastoreUnavailable");
        assert_eq!(
            (known.code.as_str(), known.category.as_str()),
            ("DatastoreUnavailable", "system")
        );
        let unknown = error_labels("RESTORE".into(), "SomethingNew");
        assert_eq!(
            (unknown.code.as_str(), unknown.category.as_str()),
            ("other", "other")
        );
    }
}
