//! The worker's gRPC client to the coordinator's `WorkerService`, with the
//! bearer token attached to every call and retries for the calls that must
//! get through (complete and fail).

use std::time::Duration;

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
pub struct CoordinatorClient {
    inner: WorkerServiceClient<InterceptedService<Channel, BearerToken>>,
}

impl CoordinatorClient {
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
        Ok(CoordinatorClient {
            inner: WorkerServiceClient::with_interceptor(channel, BearerToken(header)),
        })
    }

    pub async fn claim(&self, job_id: &str, worker_id: &str) -> Result<ClaimTaskResponse, Status> {
        let request = ClaimTaskRequest {
            job_id: job_id.to_string(),
            worker_id: worker_id.to_string(),
        };
        Ok(self.inner.clone().claim_task(request).await?.into_inner())
    }

    pub async fn heartbeat(&self, request: HeartbeatRequest) -> Result<HeartbeatResponse, Status> {
        Ok(self.inner.clone().heartbeat(request).await?.into_inner())
    }

    /// Retries transport failures for about a minute; a refusal is final.
    pub async fn complete(&self, request: CompleteTaskRequest) -> Result<(), Status> {
        retry(|| {
            let mut inner = self.inner.clone();
            let request = request.clone();
            async move { inner.complete_task(request).await.map(|_| ()) }
        })
        .await
    }

    /// Retries transport failures for about a minute; a refusal is final.
    pub async fn fail(&self, request: FailTaskRequest) -> Result<(), Status> {
        retry(|| {
            let mut inner = self.inner.clone();
            let request = request.clone();
            async move { inner.fail_task(request).await.map(|_| ()) }
        })
        .await
    }
}

async fn retry<F, Fut>(mut call: F) -> Result<(), Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), Status>>,
{
    let mut delay = Duration::from_millis(250);
    let mut waited = Duration::ZERO;
    loop {
        match call().await {
            Ok(()) => return Ok(()),
            Err(status) if is_transient(&status) && waited < Duration::from_secs(60) => {
                tracing::warn!(error = %status.message(), retry_in_ms = delay.as_millis() as u64, "coordinator call failed; retrying");
                tokio::time::sleep(delay).await;
                waited += delay;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(status) => return Err(status),
        }
    }
}

fn is_transient(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Internal
    )
}
