//! The span of something the coordinator does to one job on its own (the
//! reaper's lease expiry, the agent sweeper's failure) or at an API call
//! (queue, retry, cancel): a child of the job's stored trace context, with
//! the fields every log line about a task carries in every process
//! (`job_id`, `attempt`, `instance_id`, `trace_id`), so those lines read
//! like the worker's and the action shows in the job's trace. Log inside it
//! with [`tracing::Span::in_scope`]. (A worker's calls have their own span,
//! continued from the worker's: `worker_api::call_span`.)

use pgvault_telemetry::TraceContext;
use tracing::Span;
use uuid::Uuid;

use crate::model::Job;

/// The span of `action` (its OpenTelemetry name, e.g. `lease.expired`) on
/// `job`; a job stored without a trace context gets a trace of its own. At
/// ERROR level, like the runner's task span, so a log filtered to warnings
/// still writes the job's fields on the warnings logged inside it.
pub fn of(action: &'static str, job: &Job) -> Span {
    of_parts(
        action,
        job.id,
        job.attempt,
        job.spec.instance_id(),
        job.trace_context.as_ref(),
    )
}

/// [`of`] for a job known by its parts (the scheduler's batch inserts
/// return ids and trace contexts, not rows).
pub fn of_parts(
    action: &'static str,
    job_id: Uuid,
    attempt: u32,
    instance_id: Option<Uuid>,
    trace: Option<&TraceContext>,
) -> Span {
    let span = tracing::error_span!(
        parent: None,
        "job",
        otel.name = action,
        job_id = %job_id,
        attempt,
        instance_id = %instance_id.map(|i| i.to_string()).unwrap_or_default(),
        trace_id = %trace.map(|c| c.trace_id()).unwrap_or_default(),
    );
    if let Some(context) = trace {
        context.adopt(&span);
    }
    span
}

/// The JSON lines logged while `f` runs on this thread, as the binaries
/// write them.
#[cfg(test)]
pub(crate) fn logged_lines(f: impl FnOnce()) -> Vec<serde_json::Value> {
    pgvault_telemetry::capture::logged_json(f)
}

#[cfg(test)]
mod tests {
    use pgvault_telemetry::TraceContext;
    use uuid::Uuid;

    use super::{logged_lines, of_parts};

    #[test]
    fn a_line_logged_when_a_job_is_queued_names_the_job_attempt_instance_and_trace() {
        let job = Uuid::new_v4();
        let instance = Uuid::new_v4();
        let trace = TraceContext::new_root();
        let lines = logged_lines(|| {
            of_parts("job.queued", job, 1, Some(instance), Some(&trace)).in_scope(|| {
                tracing::info!(slot = "2026-12-05T02:00:00Z", "scheduled backup queued")
            })
        });
        let line = lines.first().expect("one line");
        assert_eq!(line["message"], "scheduled backup queued", "{line}");
        assert_eq!(line["job_id"], job.to_string(), "{line}");
        assert_eq!(line["attempt"], 1, "{line}");
        assert_eq!(line["instance_id"], instance.to_string(), "{line}");
        assert_eq!(line["trace_id"], trace.trace_id(), "{line}");
    }
}
