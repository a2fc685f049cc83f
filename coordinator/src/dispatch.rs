//! The outbox dispatcher: publishes outbox rows as encoded `TaskEnvelope`s
//! (message id `{job_id}:{attempt}`; a fan-out's invitations to help with
//! an attempt's chunks `{job_id}:{attempt}:chunks:{row}`) and deletes each row only after the
//! broker confirmed it. A batch is published pipelined (all messages sent,
//! then all confirms awaited), so a burst of scheduled jobs costs a few
//! broker round trips, not one per job. Woken by an in-process notification when a row is
//! written, and by a 1 s poll for rows written by other coordinators. Broker
//! errors are logged and retried with backoff; a row is never lost, and a
//! crash between confirm and delete re-publishes it (duplicates are expected
//! downstream).
//!
//! Each message is published inside a `dispatch` span, a child of the
//! job's trace context, and carries that span's W3C `traceparent` in its
//! AMQP headers (and the envelope), so the worker's claim continues the
//! job's trace — on every attempt, since each attempt is a new row.

use std::sync::Arc;
use std::time::Duration;

use pgvault_proto::v1::TaskEnvelope;
use pgvault_queue::{OutgoingTask, TaskPublisher};
use pgvault_telemetry::TraceContext;
use prost::Message;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::store::{Store, outbox};

const BATCH: i64 = 500;
const POLL: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Runs until `cancel` fires.
pub async fn run(
    store: Store,
    publisher: Arc<dyn TaskPublisher>,
    wake: Arc<Notify>,
    cancel: CancellationToken,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        if cancel.is_cancelled() {
            return;
        }
        match publish_batch(&store, publisher.as_ref()).await {
            Ok(Outcome {
                published,
                failed: false,
            }) => {
                backoff = Duration::from_millis(200);
                if published == usize::try_from(BATCH).unwrap_or(usize::MAX) {
                    continue; // more may be waiting
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(POLL) => {}
                }
            }
            Ok(Outcome { failed: true, .. }) => {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(error) => {
                tracing::warn!(error = %error, "outbox dispatcher cannot read the outbox; retrying");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// The span of one row's publish: a child of the job's trace, with the
/// job's log fields.
fn dispatch_span(row: &outbox::OutboxRow) -> tracing::Span {
    let span = tracing::info_span!(
        parent: None,
        "dispatch",
        job_id = %row.job_id,
        attempt = row.attempt,
        instance_id = %row.instance_id.map(|i| i.to_string()).unwrap_or_default(),
        trace_id = %row.trace_context.as_ref().map(TraceContext::trace_id).unwrap_or_default(),
        confirmed = tracing::field::Empty,
    );
    if let Some(context) = &row.trace_context {
        context.adopt(&span);
    }
    span
}

struct Outcome {
    published: usize,
    /// A publish failed: back off before the next batch.
    failed: bool,
}

/// Publishes one locked batch, deleting the confirmed rows in the same
/// transaction; rows the broker did not confirm stay for the next try.
async fn publish_batch(store: &Store, publisher: &dyn TaskPublisher) -> Result<Outcome> {
    let mut tx = store.begin().await?;
    let rows = outbox::lock_batch(&mut *tx, BATCH).await?;
    if rows.is_empty() {
        tx.commit().await?;
        return Ok(Outcome {
            published: 0,
            failed: false,
        });
    }
    let spans: Vec<tracing::Span> = rows.iter().map(dispatch_span).collect();
    let tasks: Vec<OutgoingTask> = rows
        .iter()
        .zip(&spans)
        .map(|(row, span)| {
            let carrier = TraceContext::of_span(span)
                .or_else(|| row.trace_context.clone())
                .map(|c| c.to_carrier())
                .unwrap_or_default();
            OutgoingTask {
                message_id: if row.chunk_invite {
                    format!("{}:{}:chunks:{}", row.job_id, row.attempt, row.id)
                } else {
                    format!("{}:{}", row.job_id, row.attempt)
                },
                payload: TaskEnvelope {
                    job_id: row.job_id.to_string(),
                    attempt: row.attempt,
                    trace_context: carrier.clone(),
                    chunk_invite: row.chunk_invite,
                }
                .encode_to_vec(),
                headers: carrier,
            }
        })
        .collect();
    let sent = publisher.publish_many(&tasks).await;
    let mut done = Vec::with_capacity(rows.len());
    for ((row, confirmed), span) in rows.iter().zip(&sent.confirmed).zip(&spans) {
        span.record("confirmed", *confirmed);
        if *confirmed {
            done.push(row.id);
            span.in_scope(|| tracing::debug!("task published"));
        }
    }
    outbox::delete_many(&mut *tx, &done).await?;
    tx.commit().await?;
    if let Some(error) = &sent.error {
        let unsent = rows.len() - done.len();
        tracing::warn!(unpublished = unsent, error = %error, "cannot publish tasks; will retry");
    }
    Ok(Outcome {
        published: done.len(),
        failed: sent.error.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use pgvault_telemetry::{ServiceName, Tracing};
    use tracing_subscriber::layer::SubscriberExt;
    use uuid::Uuid;

    use super::*;

    const JOB_TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn row(attempt: u32) -> outbox::OutboxRow {
        outbox::OutboxRow {
            id: 1,
            job_id: Uuid::nil(),
            attempt,
            instance_id: None,
            trace_context: TraceContext::parse(JOB_TRACE),
            chunk_invite: false,
        }
    }

    #[tokio::test]
    async fn every_attempts_dispatch_continues_the_jobs_trace() {
        let tracing = Tracing::start(ServiceName::Coordinator, None).expect("starts");
        let subscriber = tracing_subscriber::registry().with(tracing.layer());
        pgvault_telemetry::capture::keep_interest_shared();
        let (first, retry) = tracing::subscriber::with_default(subscriber, || {
            (
                TraceContext::of_span(&dispatch_span(&row(1))),
                TraceContext::of_span(&dispatch_span(&row(2))),
            )
        });
        let (first, retry) = (first.expect("traced"), retry.expect("traced"));
        assert_eq!(first.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(retry.trace_id(), first.trace_id());
        assert_ne!(
            retry.traceparent(),
            first.traceparent(),
            "a span per attempt"
        );
        tracing.shutdown().await;
    }
}
