//! [`CoordinatorLink`] over the coordinator's unary `WorkerService` (tonic),
//! the bearer token attached to every call. Workers use it beside their AMQP
//! consumers.

use std::time::Duration;

use async_trait::async_trait;
use pgvault_proto::v1::worker_service_client::WorkerServiceClient;
use pgvault_proto::v1::{
    ClaimTaskRequest, ClaimTaskResponse, CompleteTaskRequest, FailTaskRequest, HeartbeatRequest,
    HeartbeatResponse,
};
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

use super::link::{CoordinatorLink, LinkError};

/// Adds `authorization: Bearer <token>`.
#[derive(Clone)]
struct BearerToken(MetadataValue<tonic::metadata::Ascii>);

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// Cheap to clone; all clones share one HTTP/2 channel.
#[derive(Clone)]
pub struct GrpcLink {
    inner: WorkerServiceClient<InterceptedService<Channel, BearerToken>>,
}

impl GrpcLink {
    /// Connects on first use, so a worker can start before its coordinator.
    pub fn connect_lazy(endpoint: &str, token: &str) -> anyhow::Result<Self> {
        let mut builder = Endpoint::from_shared(endpoint.to_string())
            .map_err(|e| anyhow::anyhow!("invalid coordinator endpoint {endpoint:?}: {e}"))?;
        if endpoint.starts_with("https://") {
            // A coordinator serving TLS is verified against the system's roots.
            builder = builder
                .tls_config(tonic::transport::ClientTlsConfig::new().with_native_roots())
                .map_err(|e| anyhow::anyhow!("cannot set up TLS to {endpoint:?}: {e}"))?;
        }
        let channel = builder
            .connect_timeout(Duration::from_secs(5))
            .tcp_keepalive(Some(Duration::from_secs(30)))
            .connect_lazy();
        let header = MetadataValue::try_from(format!("Bearer {token}")).map_err(|_| {
            anyhow::anyhow!("the worker token contains characters not allowed in an HTTP header")
        })?;
        Ok(GrpcLink {
            inner: WorkerServiceClient::with_interceptor(channel, BearerToken(header)),
        })
    }
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
        };
        let response = self.inner.clone().claim_task(request).await;
        response.map(|r| r.into_inner()).map_err(link_error)
    }

    async fn heartbeat(&self, request: HeartbeatRequest) -> Result<HeartbeatResponse, LinkError> {
        let response = self.inner.clone().heartbeat(request).await;
        response.map(|r| r.into_inner()).map_err(link_error)
    }

    async fn complete(&self, request: CompleteTaskRequest) -> Result<(), LinkError> {
        let response = self.inner.clone().complete_task(request).await;
        response.map(|_| ()).map_err(link_error)
    }

    async fn fail(&self, request: FailTaskRequest) -> Result<(), LinkError> {
        let response = self.inner.clone().fail_task(request).await;
        response.map(|_| ()).map_err(link_error)
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
