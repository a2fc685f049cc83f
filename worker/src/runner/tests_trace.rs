//! The runner's trace and log fields over the in-memory coordinator: a
//! task whose message carries no trace context (an agent's offer, an old
//! message) still runs in the job's trace from its claim, and every JSON
//! line logged inside it names the job, attempt, instance and trace.

use std::collections::HashMap;

use pgvault_proto::v1::Task;
use pgvault_telemetry::capture::Captured;
use pgvault_telemetry::{ServiceName, TraceContext, Tracing};
use serde_json::Value;
use tracing_subscriber::layer::SubscriberExt;

use super::memory::MemoryCoordinator;
use super::tests::{JOB, Script, delete_task, reported, run_until};

const JOB_TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const INSTANCE: &str = "0c0ffee0-0000-4000-8000-000000000001";

#[tokio::test(start_paused = true)]
async fn a_task_without_trace_headers_runs_in_its_jobs_trace_and_logs_its_fields() {
    let tracing = Tracing::start(ServiceName::Agent, None).expect("starts");
    let lines = Captured::default();
    pgvault_telemetry::capture::keep_interest_shared();
    let _subscriber = tracing::subscriber::set_default(
        tracing_subscriber::registry()
            .with(tracing.layer())
            .with(lines.json_layer()),
    );
    let coordinator = MemoryCoordinator::new(3);
    let job_trace = TraceContext::parse(JOB_TRACE).expect("valid");
    coordinator.add_task(Task {
        job_id: JOB.into(),
        attempt: 1,
        kind: Some(delete_task()),
        instance_id: INSTANCE.into(),
        trace_context: job_trace.to_carrier(),
    });
    run_until(
        &coordinator,
        Script::Succeed(vec!["public.t".into()]),
        reported,
    )
    .await;
    let text = lines.text();
    let task_lines: Vec<Value> = lines
        .json_lines()
        .into_iter()
        .filter(|l| l["span"] == "task" || l["span"] == "complete")
        .collect();
    assert!(
        task_lines.iter().any(|l| l["message"] == "task started"),
        "{text}"
    );
    let expected: HashMap<&str, Value> = HashMap::from([
        ("job_id", JOB.into()),
        ("attempt", 1.into()),
        ("instance_id", INSTANCE.into()),
        ("trace_id", job_trace.trace_id().into()),
    ]);
    for line in &task_lines {
        for (key, value) in &expected {
            assert_eq!(&line[*key], value, "{key} of {line}");
        }
    }
}
