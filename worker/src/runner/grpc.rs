//! [`CoordinatorLink`] over the coordinator's unary `WorkerService` (tonic),
//! the bearer token attached to every call. Workers use it beside their AMQP
//! consumers; an agent on the channel that also carries its stream.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use pgvault_proto::v1::worker_service_client::WorkerServiceClient;
use pgvault_proto::v1::{
    ClaimChunkRequest, ClaimChunkResponse, ClaimTaskRequest, ClaimTaskResponse,
    CompleteChunkRequest, CompleteTaskRequest, FailChunkRequest, FailTaskRequest,
    HeartbeatChunkRequest, HeartbeatRequest, HeartbeatResponse, ListChunksRequest,
    ListChunksResponse, OfferChunksRequest, OfferChunksResponse,
};
use pgvault_telemetry::TraceContext;
use pgvault_telemetry::context::TRACEPARENT;
use tonic::{Code, Request, Status};

use super::channel::{AuthChannel, ChannelError, authenticated_channel};
use super::chunk_link::ChunkLink;
use super::link::{CoordinatorLink, LinkError};

/// Cheap to clone; all clones share one HTTP/2 channel.
#[derive(Clone)]
pub struct GrpcLink {
    inner: WorkerServiceClient<AuthChannel>,
    /// Reported with every claim (see `ClaimTaskRequest.pg_tool_majors`).
    pg_tool_majors: Vec<u32>,
    /// Data connections per task, reported with every claim (see
    /// `ClaimTaskRequest.connections`).
    connections: u32,
}

impl GrpcLink {
    /// Connects on first use, so a worker can start before its coordinator.
    /// `https://` endpoints are verified against `ca_cert` (a PEM file)
    /// when given, else against the system's roots.
    pub fn connect_lazy(
        endpoint: &str,
        token: &str,
        ca_cert: Option<&Path>,
    ) -> Result<Self, ChannelError> {
        Ok(GrpcLink::new(authenticated_channel(
            endpoint, token, ca_cert,
        )?))
    }

    /// Calls over an existing authenticated channel.
    pub fn new(channel: AuthChannel) -> Self {
        GrpcLink {
            inner: WorkerServiceClient::new(channel),
            pg_tool_majors: Vec::new(),
            connections: 0,
        }
    }

    /// Reports `majors` (of this process's client tool sets) with every claim.
    pub fn with_tool_majors(mut self, majors: Vec<u32>) -> Self {
        self.pg_tool_majors = majors;
        self
    }

    /// Reports `connections` (data connections per task, the engine's
    /// `connections`) with every claim: the coordinator grants up to that
    /// plus what the engine opens besides, within the server's budget.
    pub fn with_connections(mut self, connections: usize) -> Self {
        self.connections = u32::try_from(connections).unwrap_or(u32::MAX);
        self
    }
}

/// `message` as a request carrying the current span's trace context in its
/// `traceparent` metadata, so the coordinator's handling joins the job's
/// trace. (Heartbeats go without: the coordinator keeps no span per beat.)
fn traced<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(value) =
        TraceContext::of_span(&tracing::Span::current()).and_then(|c| c.traceparent().parse().ok())
    {
        request.metadata_mut().insert(TRACEPARENT, value);
    }
    request
}

/// The gRPC status of a call, as the runner acts on it.
fn link_error(status: Status) -> LinkError {
    let message = status.message().to_string();
    match status.code() {
        Code::NotFound => LinkError::UnknownJob(message),
        Code::FailedPrecondition => LinkError::Fenced(message),
        Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Internal => {
            LinkError::Unavailable(message)
        }
        _ => LinkError::Refused(message),
    }
}

#[async_trait]
impl CoordinatorLink for GrpcLink {
    async fn claim(&self, job_id: &str, worker_id: &str) -> Result<ClaimTaskResponse, LinkError> {
        let request = ClaimTaskRequest {
            job_id: job_id.to_string(),
            worker_id: worker_id.to_string(),
            pg_tool_majors: self.pg_tool_majors.clone(),
            connections: self.connections,
        };
        let response = self.inner.clone().claim_task(traced(request)).await;
        response.map(|r| r.into_inner()).map_err(link_error)
    }

    async fn heartbeat(&self, request: HeartbeatRequest) -> Result<HeartbeatResponse, LinkError> {
        let response = self.inner.clone().heartbeat(request).await;
        response.map(|r| r.into_inner()).map_err(link_error)
    }

    async fn complete(&self, request: CompleteTaskRequest) -> Result<(), LinkError> {
        let response = self.inner.clone().complete_task(traced(request)).await;
        response.map(|_| ()).map_err(link_error)
    }

    async fn fail(&self, request: FailTaskRequest) -> Result<(), LinkError> {
        let response = self.inner.clone().fail_task(traced(request)).await;
        response.map(|_| ()).map_err(link_error)
    }

    fn chunks(self: Arc<Self>) -> Option<Arc<dyn ChunkLink>> {
        Some(self)
    }
}

#[async_trait]
impl ChunkLink for GrpcLink {
    async fn offer_chunks(
        &self,
        request: OfferChunksRequest,
    ) -> Result<OfferChunksResponse, LinkError> {
        let response = self.inner.clone().offer_chunks(traced(request)).await;
        response.map(|r| r.into_inner()).map_err(link_error)
    }

    async fn claim_chunk(
        &self,
        request: ClaimChunkRequest,
    ) -> Result<ClaimChunkResponse, LinkError> {
        let response = self.inner.clone().claim_chunk(traced(request)).await;
        response.map(|r| r.into_inner()).map_err(link_error)
    }

    async fn heartbeat_chunk(&self, request: HeartbeatChunkRequest) -> Result<(), LinkError> {
        let response = self.inner.clone().heartbeat_chunk(request).await;
        response.map(|_| ()).map_err(link_error)
    }

    async fn complete_chunk(&self, request: CompleteChunkRequest) -> Result<(), LinkError> {
        let response = self.inner.clone().complete_chunk(traced(request)).await;
        response.map(|_| ()).map_err(link_error)
    }

    async fn fail_chunk(&self, request: FailChunkRequest) -> Result<(), LinkError> {
        let response = self.inner.clone().fail_chunk(traced(request)).await;
        response.map(|_| ()).map_err(link_error)
    }

    async fn list_chunks(
        &self,
        request: ListChunksRequest,
    ) -> Result<ListChunksResponse, LinkError> {
        let response = self.inner.clone().list_chunks(request).await;
        response.map(|r| r.into_inner()).map_err(link_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_what_the_runner_does_next() {
        assert!(matches!(
            link_error(Status::not_found("job")),
            LinkError::UnknownJob(_)
        ));
        assert!(matches!(
            link_error(Status::failed_precondition("stale lease")),
            LinkError::Fenced(_)
        ));
        assert!(link_error(Status::unavailable("down")).is_transient());
        assert!(!link_error(Status::permission_denied("no")).is_transient());
    }
}
