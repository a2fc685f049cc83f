//! The span of a runner's call (`ClaimTask`, `CompleteTask`, `FailTask`):
//! a child of the runner's span, whose W3C `traceparent` arrives in the
//! request's metadata, so the coordinator's side of a task is in the job's
//! trace and its log lines carry the task's fields (`job_id`, `trace_id`,
//! and once the claim or the leased job names them `attempt` and
//! `instance_id`). Heartbeats get none: a
//! job's heartbeats are one summary span on the runner's side.

use pgvault_proto::v1 as pb;
use pgvault_telemetry::TraceContext;
use pgvault_telemetry::context::TRACEPARENT;
use tonic::Request;
use tracing::Span;

use crate::model::Job;

/// The span of call `name` (its OpenTelemetry span name) about `job_id`.
pub(super) fn of<T>(name: &'static str, request: &Request<T>, job_id: &str) -> Span {
    let parent = request
        .metadata()
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceContext::parse);
    // At ERROR level so a log filtered to warnings keeps the call's fields
    // on the warnings logged inside it (the level decides only whether the
    // span exists, not how its lines print).
    let span = tracing::error_span!(
        parent: None,
        "worker_call",
        otel.name = name,
        job_id = %job_id.trim(),
        trace_id = %parent.as_ref().map(TraceContext::trace_id).unwrap_or_default(),
        attempt = tracing::field::Empty,
        instance_id = tracing::field::Empty,
    );
    if let Some(parent) = &parent {
        parent.adopt(&span);
    }
    span
}

/// Adds what a claim learned to its span.
pub(super) fn record_task(span: &Span, task: &pb::Task) {
    span.record("attempt", task.attempt);
    if !task.instance_id.is_empty() {
        span.record("instance_id", task.instance_id.as_str());
    }
}

/// Adds the leased job's attempt and instance to a report's span
/// (`CompleteTask`, `FailTask`), before anything is logged in it.
pub(super) fn record_job(span: &Span, job: &Job) {
    span.record("attempt", job.attempt);
    if let Some(instance) = job.spec.instance_id() {
        span.record("instance_id", tracing::field::display(instance));
    }
}

#[cfg(test)]
mod tests {
    use pgvault_telemetry::{ServiceName, Tracing};
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[tokio::test]
    async fn a_call_continues_the_trace_its_metadata_names() {
        let tracing = Tracing::start(ServiceName::Coordinator, None).expect("starts");
        let subscriber = tracing_subscriber::registry().with(tracing.layer());
        let mut request = Request::new(());
        request
            .metadata_mut()
            .insert(TRACEPARENT, PARENT.parse().expect("ascii"));
        pgvault_telemetry::capture::keep_interest_shared();
        let (continued, fresh) = tracing::subscriber::with_default(subscriber, || {
            let continued = TraceContext::of_span(&of("ClaimTask", &request, "j1"));
            let fresh = TraceContext::of_span(&of("ClaimTask", &Request::new(()), "j1"));
            (continued, fresh)
        });
        let continued = continued.expect("traced");
        assert_eq!(continued.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(continued.traceparent(), PARENT, "a span of its own");
        let fresh = fresh.expect("traced");
        assert_ne!(fresh.trace_id(), continued.trace_id());
        tracing.shutdown().await;
    }
}
