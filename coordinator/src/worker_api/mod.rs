//! `WorkerService`, the calls workers and agents make: claim a task (taking
//! the lease), heartbeat, complete, fail. Callers authenticate with a bearer
//! token like every other API caller; an agent's token claims only its
//! agent's jobs, and only it claims them.
//!
//! # Layout
//! - `claim`: the lease and the task (credentials only for the lease holder).
//! - `lease`: heartbeat, complete and fail, all fenced by the lease token.
//! - `chunks`: a fanned-out backup's chunk sub-tasks (offer, claim,
//!   heartbeat, complete, fail, list), fenced by attempt and chunk lease.

mod call_span;
mod chunks;
mod claim;
mod lease;

use std::sync::Arc;

use pgvault_proto::v1 as pb;
use pgvault_proto::v1::worker_service_server::WorkerService;
use tonic::{Request, Response, Status};
use tracing::Instrument;
use uuid::Uuid;

use crate::api::ApiContext;
use crate::error::{CoordinatorError, Result};
use crate::{access, agents};

pub struct WorkerApi {
    ctx: Arc<ApiContext>,
}

impl WorkerApi {
    pub fn new(ctx: Arc<ApiContext>) -> Self {
        WorkerApi { ctx }
    }
}

fn job_id(raw: &str) -> Result<Uuid> {
    Uuid::parse_str(raw.trim())
        .map_err(|_| CoordinatorError::invalid("job_id", "must be a job UUID"))
}

/// The claimer's stable identity, required on every claim.
fn worker_id(raw: &str) -> Result<&str> {
    let worker = raw.trim();
    if worker.is_empty() {
        return Err(CoordinatorError::invalid(
            "worker_id",
            "a stable worker identity (e.g. host:pid) is required",
        ));
    }
    Ok(worker)
}

fn lease_token(raw: &str) -> Result<Uuid> {
    Uuid::parse_str(raw.trim()).map_err(|_| {
        CoordinatorError::invalid("lease_token", "must be the token returned by ClaimTask")
    })
}

#[tonic::async_trait]
impl WorkerService for WorkerApi {
    async fn claim_task(
        &self,
        request: Request<pb::ClaimTaskRequest>,
    ) -> Result<Response<pb::ClaimTaskResponse>, Status> {
        let span = call_span::of("ClaimTask", &request, &request.get_ref().job_id);
        async {
            let caller = access::caller(&request)?;
            let agent = agents::claimer_agent(&self.ctx.store, &caller).await?;
            let response = claim::claim(&self.ctx, agent.as_deref(), request.into_inner()).await?;
            if let Some(task) = &response.task {
                call_span::record_task(&tracing::Span::current(), task);
            }
            Ok(Response::new(response))
        }
        .instrument(span)
        .await
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        Ok(Response::new(
            lease::heartbeat(&self.ctx, request.into_inner()).await?,
        ))
    }

    async fn complete_task(
        &self,
        request: Request<pb::CompleteTaskRequest>,
    ) -> Result<Response<pb::CompleteTaskResponse>, Status> {
        let span = call_span::of("CompleteTask", &request, &request.get_ref().job_id);
        lease::complete(&self.ctx, request.into_inner())
            .instrument(span)
            .await?;
        Ok(Response::new(pb::CompleteTaskResponse {}))
    }

    async fn fail_task(
        &self,
        request: Request<pb::FailTaskRequest>,
    ) -> Result<Response<pb::FailTaskResponse>, Status> {
        let span = call_span::of("FailTask", &request, &request.get_ref().job_id);
        lease::fail(&self.ctx, request.into_inner())
            .instrument(span)
            .await?;
        Ok(Response::new(pb::FailTaskResponse {}))
    }

    async fn offer_chunks(
        &self,
        request: Request<pb::OfferChunksRequest>,
    ) -> Result<Response<pb::OfferChunksResponse>, Status> {
        let span = call_span::of("OfferChunks", &request, &request.get_ref().job_id);
        let response = chunks::offer(&self.ctx, request.into_inner())
            .instrument(span)
            .await?;
        Ok(Response::new(response))
    }

    async fn claim_chunk(
        &self,
        request: Request<pb::ClaimChunkRequest>,
    ) -> Result<Response<pb::ClaimChunkResponse>, Status> {
        let span = call_span::of("ClaimChunk", &request, &request.get_ref().job_id);
        async {
            let caller = access::caller(&request)?;
            let agent = agents::claimer_agent(&self.ctx.store, &caller).await?;
            let response = chunks::claim(&self.ctx, agent.as_deref(), request.into_inner()).await?;
            if let Some(task) = &response.task {
                call_span::record_task(&tracing::Span::current(), task);
            }
            Ok(Response::new(response))
        }
        .instrument(span)
        .await
    }

    async fn heartbeat_chunk(
        &self,
        request: Request<pb::HeartbeatChunkRequest>,
    ) -> Result<Response<pb::HeartbeatChunkResponse>, Status> {
        chunks::heartbeat(&self.ctx, request.into_inner()).await?;
        Ok(Response::new(pb::HeartbeatChunkResponse {}))
    }

    async fn complete_chunk(
        &self,
        request: Request<pb::CompleteChunkRequest>,
    ) -> Result<Response<pb::CompleteChunkResponse>, Status> {
        let span = call_span::of("CompleteChunk", &request, &request.get_ref().job_id);
        chunks::complete(&self.ctx, request.into_inner())
            .instrument(span)
            .await?;
        Ok(Response::new(pb::CompleteChunkResponse {}))
    }

    async fn fail_chunk(
        &self,
        request: Request<pb::FailChunkRequest>,
    ) -> Result<Response<pb::FailChunkResponse>, Status> {
        let span = call_span::of("FailChunk", &request, &request.get_ref().job_id);
        chunks::fail(&self.ctx, request.into_inner())
            .instrument(span)
            .await?;
        Ok(Response::new(pb::FailChunkResponse {}))
    }

    async fn list_chunks(
        &self,
        request: Request<pb::ListChunksRequest>,
    ) -> Result<Response<pb::ListChunksResponse>, Status> {
        Ok(Response::new(
            chunks::list(&self.ctx, request.into_inner()).await?,
        ))
    }
}
