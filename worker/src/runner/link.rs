//! The runner's one seam to the coordinator: take a job's lease, keep it
//! alive with progress, report the outcome. Workers reach the coordinator
//! over unary gRPC ([`GrpcLink`](super::GrpcLink)); an agent over its own
//! outbound connection; unit tests over [`MemoryCoordinator`]
//! (super::memory::MemoryCoordinator). Whatever the transport, the runner's
//! rules — claim before ack, stop when fenced, report exactly once — live
//! in the runner, not in the link.

use std::sync::Arc;

use async_trait::async_trait;
use pgvault_proto::v1::{
    ClaimTaskResponse, CompleteTaskRequest, FailTaskRequest, HeartbeatRequest, HeartbeatResponse,
};

use super::chunk_link::ChunkLink;

/// Why a call to the coordinator did not go through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The job does not exist: retrying can never help.
    #[error("unknown job: {0}")]
    UnknownJob(String),
    /// The lease is not this runner's any more (taken over, expired, the job
    /// ended): stop and report nothing.
    #[error("lease lost: {0}")]
    Fenced(String),
    /// The coordinator could not be reached or failed for a passing
    /// reason: the call may be retried.
    #[error("coordinator unavailable: {0}")]
    Unavailable(String),
    /// Refused for good (a malformed request, a token without the right).
    #[error("refused by the coordinator: {0}")]
    Refused(String),
}

impl LinkError {
    /// True for failures worth another try.
    pub fn is_transient(&self) -> bool {
        matches!(self, LinkError::Unavailable(_))
    }
}

/// Calls the runner makes to the coordinator. Cheap to share between the
/// runner's task slots.
#[async_trait]
pub trait CoordinatorLink: Send + Sync + 'static {
    /// Takes the lease of `job_id` for `worker_id` and returns the task, or
    /// `claimed: false` with the reason when the job is finished or leased
    /// to another live runner.
    async fn claim(&self, job_id: &str, worker_id: &str) -> Result<ClaimTaskResponse, LinkError>;

    /// Extends the lease and records progress; a stale lease token is
    /// [`LinkError::Fenced`].
    async fn heartbeat(&self, request: HeartbeatRequest) -> Result<HeartbeatResponse, LinkError>;

    /// Reports success; called once, after every object is durable.
    async fn complete(&self, request: CompleteTaskRequest) -> Result<(), LinkError>;

    /// Reports failure with a stable error code.
    async fn fail(&self, request: FailTaskRequest) -> Result<(), LinkError>;

    /// The calls of a fanned-out backup's chunk sub-tasks, when this link
    /// carries them (`None`: backups dump their data alone).
    fn chunks(self: Arc<Self>) -> Option<Arc<dyn ChunkLink>> {
        None
    }
}
