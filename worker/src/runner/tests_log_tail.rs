//! The runner's log tail over the in-memory coordinator: a failed task's
//! report carries the last lines logged inside its span (the executor's,
//! its heartbeat's, the runner's own "task failed"), never lines from
//! outside it, at most [`LINES`] of them; without the layer the tail is
//! empty and nothing else changes.

use std::sync::atomic::{AtomicBool, Ordering};

use pgvault_engine::{EngineError, ErrorCode};
use tracing_subscriber::layer::SubscriberExt;

use super::log_tail::{LINES, LogTailLayer};
use super::memory::{Event, MemoryCoordinator, Outcome};
use super::tests::{JOB, Script, delete_task, reported, run_until};

fn full() -> EngineError {
    EngineError::new(ErrorCode::DatastoreFull, "the datastore is full")
}

#[tokio::test(start_paused = true)]
async fn a_failed_task_reports_the_lines_logged_inside_it() {
    pgvault_telemetry::capture::keep_interest_shared();
    let _subscriber =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(LogTailLayer));
    tracing::info!("a line before any task");
    let coordinator = MemoryCoordinator::new(3);
    coordinator.add_job(JOB, delete_task());
    let lines = vec![
        "dumping public.orders".to_string(),
        "copy slowed".to_string(),
    ];
    // The first heartbeat does not get through: its warning is the task's too.
    let first = coordinator.clone();
    let armed = AtomicBool::new(false);
    run_until(
        &coordinator,
        Script::LogThenFail(lines, full()),
        move |log| {
            if log.contains(&Event::Ack) && !armed.swap(true, Ordering::SeqCst) {
                first.unreachable_for(1);
            }
            reported(log)
        },
    )
    .await;
    assert!(matches!(
        coordinator.outcome(JOB),
        Some(Outcome::Failed { .. })
    ));
    let tail = coordinator.log_tail(JOB);
    let position = |text: &str| tail.iter().position(|l| l.contains(text));
    let started = position("task started").expect("the runner's start line");
    let dumping = position("INFO pgvault_worker::runner::tests: dumping public.orders")
        .expect("the executor's line, with level and target");
    let heartbeat = position("heartbeat failed; will retry").expect("the heartbeat's warning");
    let failed = position("task failed").expect("the runner's failure line");
    assert!(
        started < dumping && dumping < heartbeat && heartbeat < failed,
        "{tail:#?}"
    );
    assert!(tail[failed].contains("code=DatastoreFull"), "{tail:#?}");
    assert_eq!(position("a line before any task"), None, "{tail:#?}");
}

#[tokio::test(start_paused = true)]
async fn the_tail_keeps_only_the_last_lines() {
    pgvault_telemetry::capture::keep_interest_shared();
    let _subscriber =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(LogTailLayer));
    let coordinator = MemoryCoordinator::new(3);
    coordinator.add_job(JOB, delete_task());
    let lines = (0..2 * LINES).map(|i| format!("line {i}")).collect();
    run_until(&coordinator, Script::LogThenFail(lines, full()), reported).await;
    let tail = coordinator.log_tail(JOB);
    assert_eq!(tail.len(), LINES, "{tail:#?}");
    assert!(tail.last().unwrap().contains("task failed"), "{tail:#?}");
    assert!(!tail.iter().any(|l| l.ends_with(": line 0")), "{tail:#?}");
    assert!(tail.iter().any(|l| l.ends_with(": line 99")), "{tail:#?}");
}

#[tokio::test(start_paused = true)]
async fn without_the_layer_the_failure_carries_no_lines() {
    let coordinator = MemoryCoordinator::new(3);
    coordinator.add_job(JOB, delete_task());
    let lines = vec!["dumping".to_string()];
    run_until(&coordinator, Script::LogThenFail(lines, full()), reported).await;
    match coordinator.outcome(JOB) {
        Some(Outcome::Failed { error, .. }) => assert_eq!(error.code, "DatastoreFull"),
        other => panic!("{other:?}"),
    }
    assert!(coordinator.log_tail(JOB).is_empty());
}
