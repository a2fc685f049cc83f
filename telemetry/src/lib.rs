//! Traces and structured logs shared by every pgvault process.
//!
//! - [`pipeline`]: the OpenTelemetry tracer provider of a process (service
//!   name per role, OTLP/gRPC export only when an endpoint is configured;
//!   spans are always given ids, so trace ids reach logs and job details
//!   with or without a collector) and its `tracing` layer.
//! - [`context`]: a job's W3C trace context ([`TraceContext`], a
//!   `traceparent` value) — read from a span, carried in message headers and
//!   task messages, and made the remote parent of the next process's span.
//! - [`json_log`]: the JSON log line: one object per event with the fields
//!   of every enclosing span flattened in, so each line of a task carries
//!   [`fields::JOB_ID`], [`fields::ATTEMPT`], [`fields::INSTANCE_ID`] and
//!   [`fields::TRACE_ID`] under the same names in every process.
//!
//! - [`capture`]: keeps scoped subscribers in tests from losing lines to
//!   another test's first hit of a callsite.
//!
//! Spans must never carry secrets: connection strings, passwords and tokens
//! are not recorded as span fields anywhere in pgvault.

pub mod capture;
pub mod context;
pub mod json_log;
pub mod pipeline;

pub use context::TraceContext;
pub use json_log::JsonLines;
pub use pipeline::{ServiceName, TelemetryError, Tracing};

/// The field names every process uses for a task's identity, in span
/// fields and therefore in every JSON log line inside the span.
pub mod fields {
    /// The job's UUID.
    pub const JOB_ID: &str = "job_id";
    /// The job's attempt number.
    pub const ATTEMPT: &str = "attempt";
    /// The backup instance's UUID (absent for jobs of no instance).
    pub const INSTANCE_ID: &str = "instance_id";
    /// The job's trace id (32 hex digits).
    pub const TRACE_ID: &str = "trace_id";
}
