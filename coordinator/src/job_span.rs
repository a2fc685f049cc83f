//! The span of something the coordinator does to one job on its own (the
//! reaper's lease expiry, the agent sweeper's failure) or at an API call
//! (queue, retry, cancel): a child of the job's stored trace context, with
//! the fields every log line about a task carries in every process
//! (`job_id`, `attempt`, `instance_id`, `trace_id`), so those lines read
//! like the worker's and the action shows in the job's trace. Log inside it
//! with [`tracing::Span::in_scope`]. (A worker's calls have their own span,
//! continued from the worker's: `worker_api::call_span`.)

use tracing::Span;

use crate::model::Job;

/// The span of `action` (its OpenTelemetry name, e.g. `lease.expired`) on
/// `job`; a job stored without a trace context gets a trace of its own. At
/// ERROR level, like the runner's task span, so a log filtered to warnings
/// still writes the job's fields on the warnings logged inside it.
pub fn of(action: &'static str, job: &Job) -> Span {
    let span = tracing::error_span!(
        parent: None,
        "job",
        otel.name = action,
        job_id = %job.id,
        attempt = job.attempt,
        instance_id = %job.spec.instance_id().map(|i| i.to_string()).unwrap_or_default(),
        trace_id = %job.trace_context.as_ref().map(|c| c.trace_id()).unwrap_or_default(),
    );
    if let Some(context) = &job.trace_context {
        context.adopt(&span);
    }
    span
}
