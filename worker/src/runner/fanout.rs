//! A fanned-out backup or restore, runner side. The leader's engine reaches the
//! fleet through [`LeaderDispatch`] (the engine's `ChunkDispatch` over the
//! [`ChunkLink`]); a delivery inviting help ([`TaskEnvelope::chunk_invite`]
//! (pgvault_proto::v1::TaskEnvelope)) runs [`help`]: claim chunks of that
//! attempt one at a time, dump each with the executor while heartbeating
//! its lease (with the chunk's progress so far), report it, and stop when none is left, the attempt is over or
//! the lease is lost (fencing: nothing more is reported). The helper's
//! `chunks` span continues the job's trace from the invitation's trace
//! context, so a fanned-out job is one trace across every worker.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pgvault_engine::fanout::{
    ChunkDispatch, OfferedChunk, RecordedChunk, StoredChunk, Take, TakenChunk,
};
use pgvault_engine::{EngineError, ErrorCode};
use pgvault_proto::v1::{
    ChunkOffer, ClaimChunkRequest, CompleteChunkRequest, FailChunkRequest, HeartbeatChunkRequest,
    JobError, ListChunksRequest, OfferChunksRequest, task,
};
use pgvault_telemetry::TraceContext;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::chunk_link::ChunkLink;
use super::executor::TaskExecutor;
use super::heartbeat::SharedProgress;
use super::link::LinkError;

/// How long a call that cannot reach the coordinator is retried.
const PATIENCE: Duration = Duration::from_secs(60);
/// How long a helper waits for a connection slot before asking again.
const SLOT_WAIT: Duration = Duration::from_secs(2);

/// Retries `call` while the coordinator cannot be reached.
async fn patiently<T, F, Fut>(mut call: F) -> Result<T, LinkError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, LinkError>>,
{
    let mut delay = Duration::from_millis(250);
    let mut waited = Duration::ZERO;
    loop {
        match call().await {
            Err(error) if error.is_transient() && waited < PATIENCE => {
                tracing::warn!(error = %error, "coordinator call failed; retrying");
                tokio::time::sleep(delay).await;
                waited += delay;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

/// A link failure as the leader's engine sees it.
fn engine_error(error: LinkError) -> EngineError {
    match error {
        LinkError::Fenced(message) => EngineError {
            code: ErrorCode::SystemErrorLeaseExpired,
            message: format!("the job's lease was lost while fanned out: {message}"),
            retryable: true,
        },
        LinkError::Unavailable(message) => EngineError {
            code: ErrorCode::SystemErrorUnknown,
            message: format!("the coordinator could not be reached while fanned out: {message}"),
            retryable: true,
        },
        other => EngineError::internal(format!("fan-out call refused: {other}")),
    }
}

/// The leader's dispatch: its calls carry the job's lease token, so its
/// chunks follow the job's lease.
pub struct LeaderDispatch {
    pub link: Arc<dyn ChunkLink>,
    pub job_id: String,
    pub attempt: u32,
    pub lease_token: String,
    pub worker_id: String,
}

#[async_trait]
impl ChunkDispatch for LeaderDispatch {
    async fn offer(
        &self,
        snapshot_id: &str,
        chunks: Vec<OfferedChunk>,
        helpers: u32,
    ) -> Result<u32, EngineError> {
        let request = OfferChunksRequest {
            job_id: self.job_id.clone(),
            lease_token: self.lease_token.clone(),
            snapshot_id: snapshot_id.to_string(),
            chunks: chunks
                .into_iter()
                .map(|c| ChunkOffer {
                    key: c.key,
                    spec: c.spec,
                    tables: c.tables,
                })
                .collect(),
            helpers,
            kind: "DUMP".to_string(),
        };
        let response = patiently(|| self.link.offer_chunks(request.clone()))
            .await
            .map_err(engine_error)?;
        Ok(response.invited)
    }

    async fn offer_loads(
        &self,
        chunks: Vec<OfferedChunk>,
        helpers: u32,
    ) -> Result<u32, EngineError> {
        let request = OfferChunksRequest {
            job_id: self.job_id.clone(),
            lease_token: self.lease_token.clone(),
            snapshot_id: String::new(),
            chunks: chunks
                .into_iter()
                .map(|c| ChunkOffer {
                    key: c.key,
                    spec: c.spec,
                    tables: c.tables,
                })
                .collect(),
            helpers,
            kind: "LOAD".to_string(),
        };
        let response = patiently(|| self.link.offer_chunks(request.clone()))
            .await
            .map_err(engine_error)?;
        Ok(response.invited)
    }

    async fn take(&self) -> Result<Take, EngineError> {
        let request = ClaimChunkRequest {
            job_id: self.job_id.clone(),
            attempt: self.attempt,
            worker_id: self.worker_id.clone(),
            leader_lease_token: self.lease_token.clone(),
        };
        let response = patiently(|| self.link.claim_chunk(request.clone()))
            .await
            .map_err(engine_error)?;
        if response.claimed {
            let Some(task::Kind::Chunk(chunk)) = response.task.and_then(|t| t.kind) else {
                return Err(EngineError::internal(
                    "a claimed chunk carried no chunk task",
                ));
            };
            return Ok(Take::Chunk(TakenChunk {
                key: chunk.key,
                spec: chunk.spec,
                take: chunk.take,
            }));
        }
        if response.attempt_over {
            return Err(engine_error(LinkError::Fenced(response.reason)));
        }
        Ok(if response.remaining == 0 {
            Take::AllStored
        } else {
            Take::Wait
        })
    }

    async fn stored(&self, chunk: StoredChunk) -> Result<(), EngineError> {
        let request = complete_request(&self.job_id, &self.lease_token, chunk);
        patiently(|| self.link.complete_chunk(request.clone()))
            .await
            .map_err(engine_error)
    }

    async fn recorded(&self) -> Result<Vec<RecordedChunk>, EngineError> {
        let request = ListChunksRequest {
            job_id: self.job_id.clone(),
            lease_token: self.lease_token.clone(),
        };
        let response = patiently(|| self.link.list_chunks(request.clone()))
            .await
            .map_err(engine_error)?;
        response
            .chunks
            .into_iter()
            .map(|c| {
                if c.state != "DONE" {
                    return Err(EngineError::internal(format!(
                        "chunk {} is {}, not stored",
                        c.key, c.state
                    )));
                }
                Ok(RecordedChunk {
                    key: c.key,
                    entries: c.entries,
                })
            })
            .collect()
    }
}

fn complete_request(job_id: &str, lease_token: &str, chunk: StoredChunk) -> CompleteChunkRequest {
    CompleteChunkRequest {
        job_id: job_id.to_string(),
        lease_token: lease_token.to_string(),
        key: chunk.key,
        object_path: chunk.object_path,
        size: chunk.size,
        sha256: chunk.sha256,
        rows: chunk.rows,
        entries: chunk.entries,
        raw_bytes: chunk.raw_bytes,
    }
}

/// The helper's span over its chunks of one attempt: a child of the
/// invitation's trace context (the dispatch of the invitation, in the job's
/// trace), so its chunk calls (`ClaimChunk`, `CompleteChunk`, …) and the
/// engine's spans join the job's one trace; `None` (an invitation from an
/// older coordinator) starts a trace of its own. It carries the task fields
/// every log line inside it repeats: `instance_id` once a claim names it.
/// At ERROR level, like the task span, so every log filter keeps it.
fn chunks_span(
    job_id: &str,
    attempt: u32,
    trace: Option<&TraceContext>,
    worker_id: &str,
) -> tracing::Span {
    let span = tracing::error_span!(
        parent: None,
        "chunks",
        job_id = %job_id,
        attempt,
        instance_id = tracing::field::Empty,
        trace_id = %trace.map(TraceContext::trace_id).unwrap_or_default(),
        worker = %worker_id,
    );
    if let Some(trace) = trace {
        trace.adopt(&span);
    }
    span
}

/// Helps with the chunks of `job_id`'s `attempt` until none is left for
/// this worker; `trace` is the invitation's trace context.
pub(super) async fn help(
    link: Arc<dyn ChunkLink>,
    executor: &dyn TaskExecutor,
    job_id: &str,
    attempt: u32,
    trace: Option<TraceContext>,
    worker_id: &str,
    shutdown: &CancellationToken,
) {
    let span = chunks_span(job_id, attempt, trace.as_ref(), worker_id);
    let this = span.clone();
    async move {
        let mut done = 0u32;
        while !shutdown.is_cancelled() {
            let request = ClaimChunkRequest {
                job_id: job_id.to_string(),
                attempt,
                worker_id: worker_id.to_string(),
                leader_lease_token: String::new(),
            };
            let response = match patiently(|| link.claim_chunk(request.clone())).await {
                Ok(response) => response,
                Err(error) => {
                    tracing::warn!(error = %error, "cannot claim a chunk; leaving the job's chunks to others");
                    break;
                }
            };
            if !response.claimed {
                if !response.attempt_over
                    && response.remaining > 0
                    && response.reason.starts_with("waiting for a connection slot")
                {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(SLOT_WAIT) => continue,
                    }
                }
                tracing::info!(reason = %response.reason, chunks = done, "no chunk left to help with");
                break;
            }
            let Some(task) = response.task else {
                tracing::error!("a claimed chunk carried no chunk task");
                break;
            };
            if !task.instance_id.is_empty() {
                this.record("instance_id", task.instance_id.as_str());
            }
            let Some(task::Kind::Chunk(chunk)) = task.kind else {
                tracing::error!("a claimed chunk carried no chunk task");
                break;
            };
            let lease = response.lease_token;
            let interval = Duration::from_secs(u64::from(response.lease_ttl_seconds.max(3)) / 3);
            let key = chunk.key.clone();
            match run_chunk(&link, executor, job_id, &lease, interval, chunk, shutdown)
                .instrument(tracing::info_span!("chunk", chunk = %key))
                .await
            {
                ChunkEnd::Stored => done += 1,
                ChunkEnd::Stop => break,
            }
        }
    }
    .instrument(span)
    .await
}

enum ChunkEnd {
    Stored,
    /// Fenced, failed or shut down: help no more with this attempt.
    Stop,
}

async fn run_chunk(
    link: &Arc<dyn ChunkLink>,
    executor: &dyn TaskExecutor,
    job_id: &str,
    lease: &str,
    interval: Duration,
    chunk: pgvault_proto::v1::ChunkTask,
    shutdown: &CancellationToken,
) -> ChunkEnd {
    let key = chunk.key.clone();
    let cancel = shutdown.child_token();
    let fenced = CancellationToken::new();
    // Each heartbeat carries the chunk's progress so far (combined
    // throughput in job details).
    let progress = Arc::new(SharedProgress::default());
    let beat = {
        let (link, cancel, fenced) = (link.clone(), cancel.clone(), fenced.clone());
        let progress = progress.clone();
        let (job_id, lease_token) = (job_id.to_string(), lease.to_string());
        tokio::spawn(
            async move {
                loop {
                    tokio::time::sleep(interval).await;
                    let so_far = progress.snapshot();
                    let request = HeartbeatChunkRequest {
                        job_id: job_id.clone(),
                        lease_token: lease_token.clone(),
                        bytes_done: so_far.bytes_done,
                        rows_done: so_far.rows_done,
                    };
                    match link.heartbeat_chunk(request).await {
                        Ok(()) => {}
                        Err(LinkError::Fenced(reason)) => {
                            tracing::warn!(reason = %reason, "chunk lease lost; stopping it");
                            fenced.cancel();
                            cancel.cancel();
                            return;
                        }
                        Err(error) => tracing::warn!(error = %error, "chunk heartbeat failed"),
                    }
                }
            }
            .in_current_span(),
        )
    };
    let outcome = executor
        .execute_chunk(chunk, progress, cancel.clone())
        .await;
    beat.abort();
    if fenced.is_cancelled() {
        return ChunkEnd::Stop;
    }
    match outcome {
        Ok(stored) => {
            let request = complete_request(job_id, lease, stored);
            match patiently(|| link.complete_chunk(request.clone())).await {
                Ok(()) => {
                    tracing::info!(chunk = %key, "chunk stored");
                    ChunkEnd::Stored
                }
                Err(error) => {
                    tracing::warn!(chunk = %key, error = %error, "chunk report refused; its object will not be referenced");
                    ChunkEnd::Stop
                }
            }
        }
        Err(error) => {
            let failure = error.failure();
            tracing::warn!(chunk = %key, code = %failure.code_str(), error = %failure.message, "chunk failed; giving it back");
            let request = FailChunkRequest {
                job_id: job_id.to_string(),
                lease_token: lease.to_string(),
                key,
                error: Some(JobError {
                    code: failure.code_str().to_string(),
                    recommended_action: failure.recommended_action().to_string(),
                    message: failure.message,
                }),
            };
            if let Err(error) = patiently(|| link.fail_chunk(request.clone())).await {
                tracing::warn!(error = %error, "chunk failure not recorded; its lease will expire");
            }
            ChunkEnd::Stop
        }
    }
}

#[cfg(test)]
mod tests {
    use pgvault_telemetry::{ServiceName, Tracing};
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    const INVITATION: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[tokio::test]
    async fn a_helpers_chunks_span_continues_the_invitations_trace() {
        let tracing = Tracing::start(ServiceName::Worker, None).expect("starts");
        let subscriber = tracing_subscriber::registry().with(tracing.layer());
        let invitation = TraceContext::parse(INVITATION).expect("valid");
        pgvault_telemetry::capture::keep_interest_shared();
        let (continued, own) = tracing::subscriber::with_default(subscriber, || {
            (
                TraceContext::of_span(&chunks_span("j1", 2, Some(&invitation), "w2")),
                TraceContext::of_span(&chunks_span("j1", 2, None, "w2")),
            )
        });
        let continued = continued.expect("traced");
        assert_eq!(continued.trace_id(), invitation.trace_id());
        assert_ne!(continued.traceparent(), INVITATION, "a span of its own");
        assert_ne!(own.expect("traced").trace_id(), invitation.trace_id());
        tracing.shutdown().await;
    }
}
