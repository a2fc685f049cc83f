//! The agent admin calls: `CreateAgent` (the agent and its token, with the
//! role `Agent`, shown once), `GetAgent`/`ListAgents` (each agent with its
//! bound servers and the instances seen in the last 24 hours: connected,
//! running, refused for their protocol) and `DeleteAgent` (refused while
//! servers are bound; revokes the token).

use chrono::{DateTime, Utc};
use pgvault_proto::v1 as pb;

use crate::access::Role;
use crate::api::convert::timestamp;
use crate::api::{ApiContext, next_token};
use crate::auth::{generate_token, hash_token};
use crate::error::{CoordinatorError, Result};
use crate::model::{Agent, AgentInstance};
use crate::names;
use crate::store::agents::{self, Deleted};
use crate::store::{agent_instances, paging, tokens};

pub async fn create(
    ctx: &ApiContext,
    req: pb::CreateAgentRequest,
) -> Result<pb::CreateAgentResponse> {
    names::validate_short_id("agent_id", &req.agent_id)?;
    let region = req
        .agent
        .map(|a| a.region.trim().to_string())
        .unwrap_or_default();
    if region.len() > 100 || region.chars().any(char::is_control) {
        return Err(CoordinatorError::invalid(
            "agent.region",
            "at most 100 printable characters",
        ));
    }
    let secret = generate_token();
    let token_id = uuid::Uuid::new_v4();
    let mut tx = ctx.store.begin().await?;
    tokens::insert(
        &mut *tx,
        token_id,
        &format!("agent {}", req.agent_id),
        &hash_token(&secret),
        Role::Agent.as_str(),
    )
    .await?;
    let agent = agents::insert(&mut *tx, &req.agent_id, &region, token_id).await?;
    tx.commit().await?;
    tracing::info!(agent = %agent.id, region = %agent.region, token = %token_id, "agent created");
    Ok(pb::CreateAgentResponse {
        agent: Some(to_pb(agent, Vec::new(), Vec::new())),
        token: secret,
    })
}

pub async fn get(ctx: &ApiContext, name: &str) -> Result<pb::Agent> {
    let id = names::parse_agent("name", name)?;
    let agent = agents::get(ctx.store.pool(), &id).await?;
    Ok(with_details(ctx, vec![agent]).await?.remove(0))
}

pub async fn list(ctx: &ApiContext, req: pb::ListAgentsRequest) -> Result<pb::ListAgentsResponse> {
    let size = paging::page_size(req.page_size);
    let after = paging::after_id(&req.page_token)?;
    let rows = agents::list(ctx.store.pool(), after.as_deref(), size + 1).await?;
    let (page, more) = paging::split_page(rows, size);
    let next_page_token = next_token(&page, more, |a| paging::id_token(&a.id));
    Ok(pb::ListAgentsResponse {
        agents: with_details(ctx, page).await?,
        next_page_token,
    })
}

pub async fn delete(ctx: &ApiContext, name: &str) -> Result<()> {
    let id = names::parse_agent("name", name)?;
    let mut tx = ctx.store.begin().await?;
    match agents::delete(&mut tx, &id).await? {
        Deleted::Done => {
            tx.commit().await?;
            tracing::info!(agent = %id, "agent deleted; its token is revoked");
            Ok(())
        }
        Deleted::NotFound => Err(CoordinatorError::not_found("agent", id)),
        Deleted::InUse(servers) => Err(CoordinatorError::precondition(format!(
            "agent \"{id}\" is the agent of server(s) {}, whose tasks only it can run; an agent is deleted only while no server is bound to it (to replace its processes, keep the agent and start new pgvault-agent processes with its token)",
            servers
                .iter()
                .map(|s| format!("\"{s}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The agents with their servers and recent instances (two statements for
/// the whole page).
async fn with_details(ctx: &ApiContext, page: Vec<Agent>) -> Result<Vec<pb::Agent>> {
    let ids: Vec<String> = page.iter().map(|a| a.id.clone()).collect();
    let pool = ctx.store.pool();
    let servers = agents::servers_of(pool, &ids).await?;
    let mut instances = agent_instances::recent(pool, &ids).await?;
    Ok(page
        .into_iter()
        .map(|agent| {
            let own_servers = servers
                .iter()
                .filter(|(a, _)| *a == agent.id)
                .map(|(_, s)| names::server_name(s))
                .collect();
            let (own, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut instances)
                .into_iter()
                .partition(|i| i.agent_id == agent.id);
            instances = rest;
            to_pb(agent, own_servers, own)
        })
        .collect())
}

fn to_pb(agent: Agent, servers: Vec<String>, instances: Vec<AgentInstance>) -> pb::Agent {
    let connected = instances.iter().any(|i| i.live);
    let last_seen: Option<DateTime<Utc>> = instances.iter().map(|i| i.last_seen).max();
    let running_tasks = instances
        .iter()
        .filter(|i| i.live)
        .map(|i| i.running_job_ids.len())
        .sum::<usize>();
    pb::Agent {
        name: names::agent_name(&agent.id),
        region: agent.region,
        create_time: Some(timestamp(agent.create_time)),
        connected,
        last_seen_time: last_seen.map(timestamp),
        servers,
        running_tasks: u32::try_from(running_tasks).unwrap_or(u32::MAX),
        instances: instances.into_iter().map(instance_to_pb).collect(),
    }
}

fn instance_to_pb(i: AgentInstance) -> pb::AgentInstance {
    let running = if i.live { i.running_job_ids.len() } else { 0 };
    pb::AgentInstance {
        instance_id: i.instance_id.to_string(),
        hostname: i.hostname,
        version: i.version,
        protocol_version: i.protocol_version,
        supported: i.supported,
        refused_reason: i.refused_reason,
        pg_tool_majors: i.pg_tool_majors,
        concurrency: i.concurrency,
        running_tasks: u32::try_from(running).unwrap_or(u32::MAX),
        connected: i.live,
        connect_time: Some(timestamp(i.connect_time)),
        last_seen_time: Some(timestamp(i.last_seen)),
    }
}
