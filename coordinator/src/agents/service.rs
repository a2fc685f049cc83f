//! `AgentService`: the admin calls ([`super::admin`]), the agent's stream
//! ([`super::stream`]) and its probe calls ([`super::probe_api`]). The
//! access gate has admitted every call; the stream and probe calls then
//! need the token to be an agent's own.

use std::sync::Arc;

use pgvault_proto::v1 as pb;
use pgvault_proto::v1::agent_service_server::AgentService;
use tonic::{Request, Response, Status, Streaming};

use super::{AgentHub, admin, own_agent, probe_api, stream};
use crate::access;
use crate::api::ApiContext;

pub struct AgentApi {
    ctx: Arc<ApiContext>,
    hub: Arc<AgentHub>,
}

impl AgentApi {
    pub(super) fn new(ctx: Arc<ApiContext>, hub: Arc<AgentHub>) -> Self {
        AgentApi { ctx, hub }
    }
}

#[tonic::async_trait]
impl AgentService for AgentApi {
    async fn create_agent(
        &self,
        request: Request<pb::CreateAgentRequest>,
    ) -> Result<Response<pb::CreateAgentResponse>, Status> {
        Ok(Response::new(
            admin::create(&self.ctx, request.into_inner()).await?,
        ))
    }

    async fn get_agent(
        &self,
        request: Request<pb::GetAgentRequest>,
    ) -> Result<Response<pb::Agent>, Status> {
        Ok(Response::new(
            admin::get(&self.ctx, &request.get_ref().name).await?,
        ))
    }

    async fn list_agents(
        &self,
        request: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        Ok(Response::new(
            admin::list(&self.ctx, request.into_inner()).await?,
        ))
    }

    async fn delete_agent(
        &self,
        request: Request<pb::DeleteAgentRequest>,
    ) -> Result<Response<pb::DeleteAgentResponse>, Status> {
        admin::delete(&self.ctx, &request.get_ref().name).await?;
        Ok(Response::new(pb::DeleteAgentResponse {}))
    }

    type ConnectStream = stream::Outgoing;

    async fn connect(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let caller = access::caller(&request)?;
        let outgoing = stream::open(&self.hub, &caller, request.into_inner()).await?;
        Ok(Response::new(outgoing))
    }

    async fn claim_probe(
        &self,
        request: Request<pb::ClaimProbeRequest>,
    ) -> Result<Response<pb::ClaimProbeResponse>, Status> {
        let agent = own_agent(&self.ctx.store, &access::caller(&request)?).await?;
        Ok(Response::new(
            probe_api::claim(&self.ctx, &agent, request.into_inner()).await?,
        ))
    }

    async fn complete_probe(
        &self,
        request: Request<pb::CompleteProbeRequest>,
    ) -> Result<Response<pb::CompleteProbeResponse>, Status> {
        let agent = own_agent(&self.ctx.store, &access::caller(&request)?).await?;
        probe_api::complete(&self.ctx, &agent, request.into_inner()).await?;
        Ok(Response::new(pb::CompleteProbeResponse {}))
    }
}
