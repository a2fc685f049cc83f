//! Job details beyond the job row: its attempt history and the per-table
//! sub-tasks of its current attempt. Converts them to and from the wire
//! (sub-tasks arrive from workers and are validated here) and adds them to
//! an API job for `GetJob` (everything) and `WatchJob` (changes only).

use chrono::{DateTime, Utc};
use pgvault_proto::v1 as pb;
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::api::convert::{from_timestamp, timestamp};
use crate::error::{CoordinatorError, Result};
use crate::model::{AttemptOutcome, JobAttempt, SubTaskState, TableProgress};
use crate::store::{Store, attempts, job_tables};

/// Most sub-tasks one worker call may carry (workers send at most 1,000).
pub const MAX_SUB_TASKS_PER_CALL: usize = 5000;
/// Longest table name accepted (PostgreSQL's are at most 2 × 63 bytes
/// quoted, plus the dot).
const MAX_NAME: usize = 400;
/// Most changed sub-tasks one `WatchJob` message carries.
const WATCH_BATCH: i64 = 1000;

fn outcome_to_pb(outcome: AttemptOutcome) -> pb::AttemptOutcome {
    match outcome {
        AttemptOutcome::Running => pb::AttemptOutcome::AttemptRunning,
        AttemptOutcome::Completed => pb::AttemptOutcome::AttemptCompleted,
        AttemptOutcome::Failed => pb::AttemptOutcome::AttemptFailed,
        AttemptOutcome::LeaseExpired => pb::AttemptOutcome::AttemptLeaseExpired,
        AttemptOutcome::Fenced => pb::AttemptOutcome::AttemptFenced,
        AttemptOutcome::Cancelled => pb::AttemptOutcome::AttemptCancelled,
    }
}

impl From<JobAttempt> for pb::JobAttempt {
    fn from(a: JobAttempt) -> Self {
        pb::JobAttempt {
            attempt: a.attempt,
            worker: a.worker,
            start_time: Some(timestamp(a.start_time)),
            end_time: a.end_time.map(timestamp),
            outcome: outcome_to_pb(a.outcome) as i32,
            error: a.error.map(pb::JobError::from),
        }
    }
}

fn state_to_pb(state: SubTaskState) -> pb::SubTaskState {
    match state {
        SubTaskState::Queued => pb::SubTaskState::SubTaskQueued,
        SubTaskState::Running => pb::SubTaskState::SubTaskRunning,
        SubTaskState::Done => pb::SubTaskState::SubTaskDone,
        SubTaskState::Failed => pb::SubTaskState::SubTaskFailed,
    }
}

impl From<TableProgress> for pb::TableProgress {
    fn from(t: TableProgress) -> Self {
        pb::TableProgress {
            name: t.name,
            state: state_to_pb(t.state) as i32,
            chunks_done: t.chunks_done,
            chunks_total: t.chunks_total,
            rows: t.rows,
            raw_bytes: t.raw_bytes,
            stored_bytes: t.stored_bytes,
            start_time: t.start_time.map(timestamp),
            end_time: t.end_time.map(timestamp),
        }
    }
}

impl TryFrom<pb::TableProgress> for TableProgress {
    type Error = CoordinatorError;
    fn try_from(t: pb::TableProgress) -> Result<Self> {
        let field = "sub_tasks.name";
        if t.name.trim().is_empty() {
            return Err(CoordinatorError::invalid(field, "a table name is required"));
        }
        if t.name.len() > MAX_NAME || t.name.chars().any(char::is_control) {
            return Err(CoordinatorError::invalid(
                field,
                format!(
                    "\"{}\" is not a table name (at most {MAX_NAME} bytes, no control characters)",
                    t.name.escape_debug()
                ),
            ));
        }
        let state = match pb::SubTaskState::try_from(t.state) {
            Ok(pb::SubTaskState::SubTaskQueued) => SubTaskState::Queued,
            Ok(pb::SubTaskState::SubTaskRunning) => SubTaskState::Running,
            Ok(pb::SubTaskState::SubTaskDone) => SubTaskState::Done,
            Ok(pb::SubTaskState::SubTaskFailed) => SubTaskState::Failed,
            _ => {
                return Err(CoordinatorError::invalid(
                    "sub_tasks.state",
                    format!(
                        "table {}: state {} is not QUEUED, RUNNING, DONE or FAILED",
                        t.name, t.state
                    ),
                ));
            }
        };
        let time =
            |field: &str, ts: Option<prost_types::Timestamp>| -> Result<Option<DateTime<Utc>>> {
                ts.map(|ts| from_timestamp(field, &ts)).transpose()
            };
        Ok(TableProgress {
            state,
            chunks_done: t.chunks_done,
            chunks_total: t.chunks_total,
            rows: t.rows,
            raw_bytes: t.raw_bytes,
            stored_bytes: t.stored_bytes,
            start_time: time("sub_tasks.start_time", t.start_time)?,
            end_time: time("sub_tasks.end_time", t.end_time)?,
            name: t.name,
        })
    }
}

/// Validates the sub-tasks a worker call carries.
pub fn sub_tasks_from_pb(given: Vec<pb::TableProgress>) -> Result<Vec<TableProgress>> {
    if given.len() > MAX_SUB_TASKS_PER_CALL {
        return Err(CoordinatorError::invalid(
            "sub_tasks",
            format!(
                "{} sub-tasks in one call; send at most {MAX_SUB_TASKS_PER_CALL} (the rest with the next heartbeat)",
                given.len()
            ),
        ));
    }
    given.into_iter().map(TableProgress::try_from).collect()
}

/// Stores a worker call's sub-tasks under the job's `attempt` (`None`: its
/// current attempt, read in the same statement).
pub async fn store_sub_tasks(
    db: impl PgExecutor<'_>,
    job_id: Uuid,
    attempt: Option<u32>,
    tables: &[TableProgress],
) -> Result<()> {
    job_tables::upsert(db, job_id, attempt, tables).await
}

/// Adds every attempt and every sub-task of the current attempt (`GetJob`).
pub async fn add_all(store: &Store, job: &mut pb::Job, job_id: Uuid, attempt: u32) -> Result<()> {
    job.attempts = attempts::list(store.pool(), job_id)
        .await?
        .into_iter()
        .map(pb::JobAttempt::from)
        .collect();
    job.sub_tasks = job_tables::list(store.pool(), job_id, attempt)
        .await?
        .into_iter()
        .map(pb::TableProgress::from)
        .collect();
    job.sub_tasks_delta = false;
    Ok(())
}

/// Where a `WatchJob` stream is in the sub-tasks it has sent.
#[derive(Debug, Default)]
pub struct WatchCursor {
    /// Attempt the cursor belongs to; a new attempt starts over.
    attempt: Option<u32>,
    /// Latest change already sent (database clock).
    since: Option<DateTime<Utc>>,
}

/// Adds every attempt and the sub-tasks changed since the last message
/// (`WatchJob`), moving the cursor on.
pub async fn add_changes(
    store: &Store,
    job: &mut pb::Job,
    job_id: Uuid,
    attempt: u32,
    cursor: &mut WatchCursor,
) -> Result<()> {
    if cursor.attempt != Some(attempt) {
        *cursor = WatchCursor {
            attempt: Some(attempt),
            since: None,
        };
    }
    job.attempts = attempts::list(store.pool(), job_id)
        .await?
        .into_iter()
        .map(pb::JobAttempt::from)
        .collect();
    let (tables, latest) =
        job_tables::changed(store.pool(), job_id, attempt, cursor.since, WATCH_BATCH).await?;
    if latest.is_some() {
        cursor.since = latest;
    }
    job.sub_tasks = tables.into_iter().map(pb::TableProgress::from).collect();
    job.sub_tasks_delta = true;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(name: &str, state: pb::SubTaskState) -> pb::TableProgress {
        pb::TableProgress {
            name: name.into(),
            state: state as i32,
            chunks_done: 2,
            chunks_total: 3,
            rows: 40,
            raw_bytes: 400,
            stored_bytes: 100,
            start_time: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            end_time: None,
        }
    }

    #[test]
    fn a_sub_task_survives_the_round_trip_through_the_wire() {
        let given = wire("public.orders", pb::SubTaskState::SubTaskRunning);
        let table = TableProgress::try_from(given.clone()).unwrap();
        assert_eq!(table.state, SubTaskState::Running);
        assert_eq!(pb::TableProgress::from(table), given);
    }

    #[test]
    fn sub_tasks_without_a_name_or_state_are_refused_naming_the_field() {
        let unnamed = sub_tasks_from_pb(vec![wire(" ", pb::SubTaskState::SubTaskDone)]);
        assert!(unnamed.unwrap_err().to_string().contains("sub_tasks.name"));
        let stateless = sub_tasks_from_pb(vec![wire("public.t", pb::SubTaskState::Unspecified)]);
        assert!(
            stateless
                .unwrap_err()
                .to_string()
                .contains("sub_tasks.state")
        );
        let too_many = vec![wire("a.b", pb::SubTaskState::SubTaskDone); MAX_SUB_TASKS_PER_CALL + 1];
        assert!(sub_tasks_from_pb(too_many).is_err());
    }

    #[test]
    fn an_attempt_converts_with_its_outcome_and_error() {
        let attempt = JobAttempt {
            attempt: 2,
            worker: "host:1".into(),
            start_time: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            end_time: None,
            outcome: AttemptOutcome::LeaseExpired,
            error: Some(crate::model::JobError {
                code: "SystemErrorLeaseExpired".into(),
                message: "m".into(),
                recommended_action: "a".into(),
            }),
        };
        let out = pb::JobAttempt::from(attempt);
        assert_eq!(out.outcome, pb::AttemptOutcome::AttemptLeaseExpired as i32);
        assert_eq!(out.error.unwrap().code, "SystemErrorLeaseExpired");
        assert!(out.end_time.is_none());
    }
}
