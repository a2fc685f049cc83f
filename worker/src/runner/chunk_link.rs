//! The runner's seam to the coordinator for a fanned-out backup's chunk
//! sub-tasks: offer (the leader), claim, heartbeat, report, list. A link
//! that carries them says so through [`CoordinatorLink::chunks`]
//! (super::CoordinatorLink::chunks); one that does not (the in-memory
//! coordinator) makes every backup dump its data alone.

use async_trait::async_trait;
use pgvault_proto::v1::{
    ClaimChunkRequest, ClaimChunkResponse, CompleteChunkRequest, FailChunkRequest,
    HeartbeatChunkRequest, ListChunksRequest, ListChunksResponse, OfferChunksRequest,
    OfferChunksResponse,
};

use super::link::LinkError;

#[async_trait]
pub trait ChunkLink: Send + Sync + 'static {
    async fn offer_chunks(
        &self,
        request: OfferChunksRequest,
    ) -> Result<OfferChunksResponse, LinkError>;
    async fn claim_chunk(
        &self,
        request: ClaimChunkRequest,
    ) -> Result<ClaimChunkResponse, LinkError>;
    /// A chunk lease no longer live is [`LinkError::Fenced`].
    async fn heartbeat_chunk(&self, request: HeartbeatChunkRequest) -> Result<(), LinkError>;
    async fn complete_chunk(&self, request: CompleteChunkRequest) -> Result<(), LinkError>;
    async fn fail_chunk(&self, request: FailChunkRequest) -> Result<(), LinkError>;
    async fn list_chunks(
        &self,
        request: ListChunksRequest,
    ) -> Result<ListChunksResponse, LinkError>;
}
