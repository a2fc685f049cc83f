//! A job's W3C trace context: the `traceparent` value
//! (`00-<trace id>-<span id>-<flags>`) of the span that created the job.
//! It is stored on the job, carried in AMQP message headers and task
//! messages under [`TRACEPARENT`], and made the remote parent of the span
//! that continues the job in another process, so one job is one trace.

use std::collections::HashMap;

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header (and map key) a trace context travels under.
pub const TRACEPARENT: &str = "traceparent";

/// A valid `traceparent` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: TraceId,
    span_id: SpanId,
    sampled: bool,
}

impl TraceContext {
    /// Parses a `traceparent` (version 00); `None` for anything else.
    pub fn parse(value: &str) -> Option<TraceContext> {
        let mut parts = value.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || version != "00" || trace.len() != 32 || span.len() != 16 {
            return None;
        }
        let trace_id = TraceId::from_hex(trace).ok()?;
        let span_id = SpanId::from_hex(span).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
            return None;
        }
        Some(TraceContext {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// The context of `span` when the process traces (the OpenTelemetry
    /// layer is installed), else a fresh root context, so every job has a
    /// trace id even where nothing records spans.
    pub fn of_span_or_new(span: &Span) -> TraceContext {
        TraceContext::of_span(span).unwrap_or_else(TraceContext::new_root)
    }

    /// The context of `span`; `None` when no OpenTelemetry layer records it.
    pub fn of_span(span: &Span) -> Option<TraceContext> {
        let context = span.context();
        let span_ref = context.span();
        let sc = span_ref.span_context();
        sc.is_valid().then(|| TraceContext {
            trace_id: sc.trace_id(),
            span_id: sc.span_id(),
            sampled: sc.is_sampled(),
        })
    }

    /// A new trace, with random ids.
    pub fn new_root() -> TraceContext {
        let ids = RandomIdGenerator::default();
        TraceContext {
            trace_id: ids.new_trace_id(),
            span_id: ids.new_span_id(),
            sampled: true,
        }
    }

    /// Read from a carrier (message headers, a task's `trace_context` map).
    pub fn from_carrier(carrier: &HashMap<String, String>) -> Option<TraceContext> {
        carrier
            .get(TRACEPARENT)
            .and_then(|v| TraceContext::parse(v))
    }

    /// `{"traceparent": …}`, for a message's headers or a task message.
    pub fn to_carrier(&self) -> HashMap<String, String> {
        HashMap::from([(TRACEPARENT.to_string(), self.traceparent())])
    }

    /// The `traceparent` value.
    pub fn traceparent(&self) -> String {
        let flags = if self.sampled { "01" } else { "00" };
        format!("00-{}-{}-{flags}", self.trace_id, self.span_id)
    }

    /// The trace id, 32 lowercase hex digits.
    pub fn trace_id(&self) -> String {
        self.trace_id.to_string()
    }

    /// Makes this context the remote parent of `span`; call before the span
    /// is first entered. Without an OpenTelemetry layer it does nothing.
    pub fn adopt(&self, span: &Span) {
        let flags = if self.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        let remote = SpanContext::new(
            self.trace_id,
            self.span_id,
            flags,
            true,
            TraceState::default(),
        );
        span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
}

impl std::fmt::Display for TraceContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.traceparent())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALUE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_round_trips_and_names_its_trace_id() {
        let context = TraceContext::parse(VALUE).expect("valid");
        assert_eq!(context.traceparent(), VALUE);
        assert_eq!(context.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let carried = TraceContext::from_carrier(&context.to_carrier());
        assert_eq!(carried, Some(context));
    }

    #[test]
    fn malformed_or_all_zero_traceparents_are_refused() {
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-zzf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_span_without_an_opentelemetry_layer_gets_a_fresh_root_context() {
        let span = tracing::info_span!("job");
        assert_eq!(TraceContext::of_span(&span), None);
        let fresh = TraceContext::of_span_or_new(&span);
        assert_eq!(fresh.trace_id().len(), 32);
        assert_ne!(fresh, TraceContext::new_root());
    }
}
