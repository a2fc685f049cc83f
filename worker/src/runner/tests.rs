//! The runner's rules over the in-memory coordinator: a delivery is acked
//! only once its claim is recorded, garbage and unknown jobs are
//! dead-lettered, an unreachable coordinator gets the task requeued, a fenced
//! attempt reports nothing, a cancel request ends the job as cancelled,
//! heartbeats carry only what changed (resent after a failure) and every
//! table reaches the coordinator, and a report is retried until it lands.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pgvault_engine::{
    EngineError, EngineOptions, ErrorCode, Progress, ProgressSink, TableProgress, TableState,
};
use pgvault_proto::v1::{DeleteTask, LifecycleResult, complete_task_request, task};
use tokio_util::sync::CancellationToken;

use super::memory::{Event, MemoryCoordinator, Outcome};
use super::{TaskExecutor, WorkerOptions, run_with};

pub(super) const JOB: &str = "7b0c4c1e-0d6f-4c43-9a57-2f8d7e0b1a11";

/// What the scripted executor does with a task.
#[derive(Clone)]
pub(super) enum Script {
    /// Reports these tables (as done), then succeeds.
    Succeed(Vec<String>),
    /// Reports `a` and `b`, waits two heartbeats, changes `a`, waits two
    /// more, then succeeds.
    ChangeOneTable,
    /// Reports one table, then runs until cancelled.
    RunUntilCancelled,
    /// Fails with this error.
    Fail(EngineError),
    /// Makes the coordinator unreachable for `n` calls, then succeeds.
    SucceedWhileUnreachable(u32),
    /// Logs these lines, waits through two heartbeats, then fails.
    LogThenFail(Vec<String>, EngineError),
}

struct Scripted {
    script: Script,
    coordinator: Arc<MemoryCoordinator>,
}

fn table(name: &str, rows: u64) -> TableProgress {
    TableProgress {
        name: name.to_string(),
        state: TableState::Done,
        chunks_done: 1,
        chunks_total: 1,
        rows,
        raw_bytes: rows * 10,
        stored_bytes: rows,
        start_time: None,
        end_time: None,
    }
}

fn done() -> complete_task_request::Result {
    complete_task_request::Result::Lifecycle(LifecycleResult {
        objects: 1,
        bytes: 2,
    })
}

#[async_trait]
impl TaskExecutor for Scripted {
    async fn execute(
        &self,
        _kind: task::Kind,
        progress: Arc<dyn ProgressSink>,
        cancel: CancellationToken,
    ) -> Result<complete_task_request::Result, EngineError> {
        progress.report(&Progress {
            phase: "data".into(),
            ..Progress::default()
        });
        match &self.script {
            Script::Succeed(tables) => {
                for name in tables {
                    progress.report_table(&table(name, 1));
                }
                Ok(done())
            }
            Script::ChangeOneTable => {
                progress.report_table(&table("a", 1));
                progress.report_table(&table("b", 1));
                tokio::time::sleep(Duration::from_millis(2500)).await;
                progress.report_table(&table("a", 2));
                tokio::time::sleep(Duration::from_millis(2000)).await;
                Ok(done())
            }
            Script::RunUntilCancelled => {
                progress.report_table(&table("a", 1));
                cancel.cancelled().await;
                Err(EngineError::cancelled())
            }
            Script::Fail(error) => Err(error.clone()),
            Script::SucceedWhileUnreachable(calls) => {
                self.coordinator.unreachable_for(*calls);
                Ok(done())
            }
            Script::LogThenFail(lines, error) => {
                for line in lines {
                    tracing::info!("{line}");
                }
                tokio::time::sleep(Duration::from_millis(2500)).await;
                Err(error.clone())
            }
        }
    }
}

/// Runs one worker slot over `coordinator` until `until` holds (or a minute
/// of paused time passes), then shuts it down.
pub(super) async fn run_until(
    coordinator: &Arc<MemoryCoordinator>,
    script: Script,
    until: impl Fn(&[Event]) -> bool,
) -> Vec<Event> {
    let shutdown = CancellationToken::new();
    let options = WorkerOptions {
        coordinator_endpoint: String::new(),
        token: String::new(),
        ca_cert: None,
        worker_id: "test-worker".into(),
        concurrency: 1,
        engine: EngineOptions::default(),
    };
    let executor = Arc::new(Scripted {
        script,
        coordinator: coordinator.clone(),
    });
    let runner = {
        let coordinator = coordinator.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            run_with(
                options,
                coordinator.clone(),
                executor,
                move || coordinator.consumer(),
                shutdown,
            )
            .await
        })
    };
    for _ in 0..600 {
        if until(&coordinator.log()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    runner.await.expect("runner");
    coordinator.log()
}

pub(super) fn reported(log: &[Event]) -> bool {
    log.iter()
        .any(|e| matches!(e, Event::Complete { .. } | Event::Fail { .. }))
}

pub(super) fn delete_task() -> task::Kind {
    task::Kind::Delete(DeleteTask { locations: vec![] })
}

#[tokio::test(start_paused = true)]
async fn the_message_is_acked_only_after_the_claim_and_the_job_completes_once() {
    let coordinator = MemoryCoordinator::new(3);
    coordinator.add_job(JOB, delete_task());
    let log = run_until(
        &coordinator,
        Script::Succeed(vec!["public.t".into()]),
        reported,
    )
    .await;
    let claim = log
        .iter()
        .position(|e| matches!(e, Event::Claim { claimed: true, .. }))
        .expect("claimed");
    let ack = log.iter().position(|e| *e == Event::Ack).expect("acked");
    assert!(claim < ack, "{log:?}");
    let completes = log
        .iter()
        .filter(|e| matches!(e, Event::Complete { .. }))
        .count();
    assert_eq!(completes, 1, "{log:?}");
    assert_eq!(coordinator.outcome(JOB), Some(Outcome::Completed(done())));
    assert!(coordinator.tables(JOB).contains_key("public.t"));
}

#[tokio::test(start_paused = true)]
async fn garbage_and_tasks_for_unknown_jobs_are_dead_lettered() {
    let coordinator = MemoryCoordinator::new(3);
    coordinator.publish(b"\xff not a task".to_vec());
    coordinator.add_job(JOB, delete_task());
    // A well-formed task naming a job the coordinator never heard of.
    coordinator.publish(prost::Message::encode_to_vec(
        &pgvault_proto::v1::TaskEnvelope {
            job_id: "11111111-2222-4333-8444-555555555555".into(),
            attempt: 1,
            trace_context: Default::default(),
            chunk_invite: false,
        },
    ));
    let log = run_until(&coordinator, Script::Succeed(vec![]), |log| {
        log.iter().filter(|e| **e == Event::Reject).count() == 2 && reported(log)
    })
    .await;
    assert_eq!(
        log.iter().filter(|e| **e == Event::Reject).count(),
        2,
        "{log:?}"
    );
    assert_eq!(coordinator.outcome(JOB), Some(Outcome::Completed(done())));
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_coordinator_gets_the_task_requeued_and_run_later() {
    let coordinator = MemoryCoordinator::new(3);
    coordinator.unreachable_for(1);
    coordinator.add_job(JOB, delete_task());
    let log = run_until(&coordinator, Script::Succeed(vec![]), reported).await;
    let unreachable = log
        .iter()
        .position(|e| *e == Event::Unreachable { call: "claim" })
        .expect("first claim refused");
    let requeue = log
        .iter()
        .position(|e| *e == Event::Requeue)
        .expect("requeued");
    let ack = log.iter().position(|e| *e == Event::Ack).expect("acked");
    assert!(unreachable < requeue && requeue < ack, "{log:?}");
    assert_eq!(coordinator.outcome(JOB), Some(Outcome::Completed(done())));
}

#[tokio::test(start_paused = true)]
async fn a_fenced_attempt_stops_and_reports_nothing() {
    let coordinator = MemoryCoordinator::new(3);
    coordinator.add_job(JOB, delete_task());
    let fenced = coordinator.clone();
    let log = run_until(&coordinator, Script::RunUntilCancelled, move |log| {
        let beats = log
            .iter()
            .filter(|e| matches!(e, Event::Heartbeat { .. }))
            .count();
        if beats == 1 {
            fenced.fence(JOB);
        }
        log.contains(&Event::Fenced { call: "heartbeat" })
    })
    .await;
    // The refused heartbeat cancelled the task before shutdown could, and
    // nothing was reported: no complete or fail was even tried.
    assert_eq!(
        log.last(),
        Some(&Event::Fenced { call: "heartbeat" }),
        "{log:?}"
    );
    assert!(!reported(&log), "{log:?}");
    assert_eq!(coordinator.outcome(JOB), None);
}

#[tokio::test(start_paused = true)]
async fn a_cancel_request_ends_the_job_as_cancelled_and_not_retryable() {
    let coordinator = MemoryCoordinator::new(3);
    coordinator.add_job(JOB, delete_task());
    coordinator.request_cancel(JOB);
    let log = run_until(&coordinator, Script::RunUntilCancelled, reported).await;
    assert!(
        log.contains(&Event::Fail {
            job_id: JOB.into(),
            code: ErrorCode::Cancelled.as_str().into(),
            retryable: false,
        }),
        "{log:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_engine_error_is_reported_with_its_code_action_and_retryability() {
    let coordinator = MemoryCoordinator::new(3);
    coordinator.add_job(JOB, delete_task());
    let error = EngineError::new(ErrorCode::DatastoreFull, "the datastore is full");
    run_until(&coordinator, Script::Fail(error), reported).await;
    match coordinator.outcome(JOB) {
        Some(Outcome::Failed { error, retryable }) => {
            assert_eq!(error.code, "DatastoreFull");
            assert_eq!(error.message, "the datastore is full");
            assert_eq!(
                error.recommended_action,
                ErrorCode::DatastoreFull.recommended_action()
            );
            assert!(retryable);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn heartbeats_carry_only_changed_tables_and_resend_after_a_failed_one() {
    let coordinator = MemoryCoordinator::new(3);
    coordinator.add_job(JOB, delete_task());
    // The first heartbeat after the claim does not get through.
    let first = coordinator.clone();
    let armed = std::sync::atomic::AtomicBool::new(false);
    let log = run_until(&coordinator, Script::ChangeOneTable, move |log| {
        if log.contains(&Event::Ack) && !armed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            first.unreachable_for(1);
        }
        reported(log)
    })
    .await;
    let beats: Vec<&Vec<String>> = log
        .iter()
        .filter_map(|e| match e {
            Event::Heartbeat { tables, .. } => Some(tables),
            _ => None,
        })
        .collect();
    assert!(
        log.contains(&Event::Unreachable { call: "heartbeat" }),
        "{log:?}"
    );
    let mut first_sent = beats[0].clone();
    first_sent.sort();
    assert_eq!(
        first_sent,
        vec!["a", "b"],
        "resent after the failure: {log:?}"
    );
    assert!(
        beats.iter().any(|t| t.is_empty()),
        "an unchanged beat carries nothing: {log:?}"
    );
    assert!(
        beats.contains(&&vec!["a".to_string()]),
        "only the change: {log:?}"
    );
    assert_eq!(coordinator.tables(JOB)["a"].rows, 2);
}

#[tokio::test(start_paused = true)]
async fn more_tables_than_one_heartbeat_carries_all_reach_the_coordinator() {
    let coordinator = MemoryCoordinator::new(3);
    coordinator.add_job(JOB, delete_task());
    let names: Vec<String> = (0..2500).map(|i| format!("s.t{i}")).collect();
    run_until(&coordinator, Script::Succeed(names), reported).await;
    assert_eq!(coordinator.tables(JOB).len(), 2500);
}

#[tokio::test(start_paused = true)]
async fn a_report_is_retried_until_the_coordinator_takes_it() {
    let coordinator = MemoryCoordinator::new(3);
    coordinator.add_job(JOB, delete_task());
    let log = run_until(&coordinator, Script::SucceedWhileUnreachable(3), reported).await;
    let refused = log
        .iter()
        .filter(|e| **e == Event::Unreachable { call: "complete" })
        .count();
    assert_eq!(refused, 3, "{log:?}");
    assert_eq!(coordinator.outcome(JOB), Some(Outcome::Completed(done())));
}
