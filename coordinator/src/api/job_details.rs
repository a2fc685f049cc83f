//! Job details beyond the job row: its attempt history (with the agent of
//! each attempt and a failed attempt's log tail), why it is still queued,
//! whether it is the first backup of a database a whole-server
//! protection auto-included (from the pass's record and the slot's),
//! the progress of each table of its current attempt, and where a completed
//! job's time went. Converts them to and from the wire
//! (tables arrive from workers and are validated here) and adds them to an
//! API job for `GetJob` (everything) and `WatchJob` (changes only).

use chrono::{DateTime, Utc};
use pgvault_proto::v1 as pb;
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::api::convert::{from_timestamp, timestamp};
use crate::error::{CoordinatorError, Result};
use crate::model::{
    AttemptOutcome, BackupTrigger, Job, JobAttempt, JobSpec, TableProgress, TableState,
};
use crate::store::{Store, attempts, job_tables, server_protections};

/// Most tables one worker call may carry (workers send at most 1,000).
pub const MAX_TABLES_PER_CALL: usize = 5000;
/// Longest table name accepted (PostgreSQL's are at most 2 × 63 bytes
/// quoted, plus the dot).
const MAX_NAME: usize = 400;
/// Most changed tables one `WatchJob` message carries.
const WATCH_BATCH: i64 = 1000;

fn outcome_to_pb(outcome: AttemptOutcome) -> pb::AttemptOutcome {
    match outcome {
        AttemptOutcome::Running => pb::AttemptOutcome::Running,
        AttemptOutcome::Completed => pb::AttemptOutcome::Completed,
        AttemptOutcome::Failed => pb::AttemptOutcome::Failed,
        AttemptOutcome::LeaseExpired => pb::AttemptOutcome::LeaseExpired,
        AttemptOutcome::Fenced => pb::AttemptOutcome::Fenced,
        AttemptOutcome::Cancelled => pb::AttemptOutcome::Cancelled,
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
            log_tail: a.log_tail,
            agent: a
                .agent
                .as_deref()
                .map(crate::names::agent_name)
                .unwrap_or_default(),
        }
    }
}

fn state_to_pb(state: TableState) -> pb::TableState {
    match state {
        TableState::Queued => pb::TableState::Queued,
        TableState::Running => pb::TableState::Running,
        TableState::Done => pb::TableState::Done,
        TableState::Failed => pb::TableState::Failed,
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
        let field = "tables.name";
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
        let state = match pb::TableState::try_from(t.state) {
            Ok(pb::TableState::Queued) => TableState::Queued,
            Ok(pb::TableState::Running) => TableState::Running,
            Ok(pb::TableState::Done) => TableState::Done,
            Ok(pb::TableState::Failed) => TableState::Failed,
            _ => {
                return Err(CoordinatorError::invalid(
                    "tables.state",
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
            start_time: time("tables.start_time", t.start_time)?,
            end_time: time("tables.end_time", t.end_time)?,
            name: t.name,
        })
    }
}

/// Validates the tables a worker call carries.
pub fn tables_from_pb(given: Vec<pb::TableProgress>) -> Result<Vec<TableProgress>> {
    if given.len() > MAX_TABLES_PER_CALL {
        return Err(CoordinatorError::invalid(
            "tables",
            format!(
                "{} tables in one call; send at most {MAX_TABLES_PER_CALL} (the rest with the next heartbeat)",
                given.len()
            ),
        ));
    }
    given.into_iter().map(TableProgress::try_from).collect()
}

/// Stores a worker call's tables under the job's `attempt` (`None`: its
/// current attempt, read in the same statement).
pub async fn store_tables(
    db: impl PgExecutor<'_>,
    job_id: Uuid,
    attempt: Option<u32>,
    tables: &[TableProgress],
) -> Result<()> {
    job_tables::upsert(db, job_id, attempt, tables).await
}

/// Why a queued job has not started: its agent is away, or its server's
/// connection budget is full; empty otherwise.
async fn queued_reason(store: &Store, of: &Job) -> Result<String> {
    let agent = crate::agents::queued_reason(store, of).await?;
    if !agent.is_empty() {
        return Ok(agent);
    }
    crate::budget::queued_reason(store, of).await
}

/// For the first backup of a database an auto-include pass protected:
/// the server protected whole and the pass's slot (the job's own).
async fn auto_include(store: &Store, of: &Job) -> Result<Option<pb::AutoInclude>> {
    let JobSpec::Backup {
        instance_id,
        trigger: BackupTrigger::Scheduled,
        ..
    } = &of.spec
    else {
        return Ok(None);
    };
    let found = server_protections::auto_included(store.pool(), *instance_id, of.id).await?;
    Ok(found.map(|(server_id, slot)| pb::AutoInclude {
        server: crate::names::server_name(&server_id),
        slot_time: Some(timestamp(slot)),
    }))
}

/// Adds every attempt, every table of the current attempt, why it is
/// still queued and whether an auto-include pass protected its database
/// (`GetJob`).
pub async fn add_all(store: &Store, job: &mut pb::Job, of: &Job) -> Result<()> {
    let (job_id, attempt) = (of.id, of.attempt);
    job.queued_reason = queued_reason(store, of).await?;
    job.auto_include = auto_include(store, of).await?;
    job.attempts = attempts::list(store.pool(), job_id)
        .await?
        .into_iter()
        .map(pb::JobAttempt::from)
        .collect();
    job.table_progress = job_tables::list(store.pool(), job_id, attempt)
        .await?
        .into_iter()
        .map(pb::TableProgress::from)
        .collect();
    job.table_progress_delta = false;
    job.stage_split = attempts::completed_stage_split(store.pool(), job_id)
        .await?
        .map(pb::StageSplit::from);
    crate::api::fanout_details::add(store, job, of).await
}

/// Where a `WatchJob` stream is in the tables it has sent.
#[derive(Debug, Default)]
pub struct WatchCursor {
    /// Attempt the cursor belongs to; a new attempt starts over.
    attempt: Option<u32>,
    /// Latest change already sent (database clock).
    since: Option<DateTime<Utc>>,
}

/// Adds every attempt, why it is still queued and the tables changed
/// since the last message (`WatchJob`), moving the cursor on.
pub async fn add_changes(
    store: &Store,
    job: &mut pb::Job,
    of: &Job,
    cursor: &mut WatchCursor,
) -> Result<()> {
    let (job_id, attempt) = (of.id, of.attempt);
    job.queued_reason = queued_reason(store, of).await?;
    job.auto_include = auto_include(store, of).await?;
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
    job.table_progress = tables.into_iter().map(pb::TableProgress::from).collect();
    job.table_progress_delta = true;
    job.stage_split = attempts::completed_stage_split(store.pool(), job_id)
        .await?
        .map(pb::StageSplit::from);
    crate::api::fanout_details::add(store, job, of).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(name: &str, state: pb::TableState) -> pb::TableProgress {
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
    fn a_table_survives_the_round_trip_through_the_wire() {
        let given = wire("public.orders", pb::TableState::Running);
        let table = TableProgress::try_from(given.clone()).unwrap();
        assert_eq!(table.state, TableState::Running);
        assert_eq!(pb::TableProgress::from(table), given);
    }

    #[test]
    fn tables_without_a_name_or_state_are_refused_naming_the_field() {
        let unnamed = tables_from_pb(vec![wire(" ", pb::TableState::Done)]);
        assert!(unnamed.unwrap_err().to_string().contains("tables.name"));
        let stateless = tables_from_pb(vec![wire("public.t", pb::TableState::Unspecified)]);
        assert!(stateless.unwrap_err().to_string().contains("tables.state"));
        let too_many = vec![wire("a.b", pb::TableState::Done); MAX_TABLES_PER_CALL + 1];
        assert!(tables_from_pb(too_many).is_err());
    }

    #[test]
    fn an_attempt_converts_with_its_outcome_and_error() {
        let attempt = JobAttempt {
            attempt: 2,
            worker: "host:1".into(),
            agent: Some("dc1".into()),
            log_tail: vec!["connecting".into()],
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
        assert_eq!(out.outcome, pb::AttemptOutcome::LeaseExpired as i32);
        assert_eq!(out.error.unwrap().code, "SystemErrorLeaseExpired");
        assert_eq!(out.agent, "agents/dc1");
        assert_eq!(out.log_tail, vec!["connecting".to_string()]);
        assert!(out.end_time.is_none());
    }
}
