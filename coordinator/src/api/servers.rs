//! `ServerService`: register, get (with its whole-server protection and
//! latest auto-include pass), list and update servers (their connection
//! budgets, [`crate::budget`], shown with the slots in use), and list the
//! databases
//! of a server that can be protected (connecting with a stored secret,
//! directly or through the server's agent: [`crate::server_probe`]).
//!
//! A server registered with an agent names one that exists, in the
//! server's region; the agent's row is held while the server is written,
//! so the agent cannot be deleted in between. Rows stored before agents
//! existed keep the agent they named and read as before. An update may
//! rebind a server to another agent or to none (an agent host replaced, a
//! network opened up) once no job routed through it is queued or running:
//! a job keeps the agent it was created with.

use std::sync::Arc;

use pgvault_proto::v1 as pb;
use pgvault_proto::v1::server_service_server::ServerService;
use tonic::{Request, Response, Status};

use crate::api::{ApiContext, databases, next_token, resolve};
use crate::error::{CoordinatorError, Result};
use crate::model::Server;
use crate::secret_ref::SecretRef;
use crate::server_probe::Unanswered;
use crate::store::{agents, connection_slots, jobs, paging, server_protections, servers};
use crate::{budget, names};

pub struct ServerApi {
    ctx: Arc<ApiContext>,
}

impl ServerApi {
    pub fn new(ctx: Arc<ApiContext>) -> Self {
        ServerApi { ctx }
    }

    async fn register(&self, req: pb::RegisterServerRequest) -> Result<pb::Server> {
        names::validate_short_id("server_id", &req.server_id)?;
        let input = req
            .server
            .ok_or_else(|| CoordinatorError::invalid("server", "is required"))?;
        let host = input.host.trim().to_string();
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(CoordinatorError::invalid(
                "server.host",
                "a host name or IP address is required",
            ));
        }
        let port = match input.port {
            0 => 5432,
            p => u16::try_from(p)
                .map_err(|_| CoordinatorError::invalid("server.port", "must be 1-65535"))?,
        };
        let max_connections = match input.max_connections {
            0 => budget::DEFAULT_MAX_CONNECTIONS,
            n => budget::validate_max("server.max_connections", n)?,
        };
        let server = Server {
            id: req.server_id,
            host,
            port,
            region: input.region.trim().to_string(),
            agent: input.agent.trim().to_string(),
            max_connections,
            create_time: chrono::Utc::now(),
        };
        let mut tx = self.ctx.store.begin().await?;
        check_agent(
            &mut tx,
            &server,
            "server.agent",
            "register the server again",
        )
        .await?;
        let created = servers::insert(&mut *tx, &server).await?;
        tx.commit().await?;
        tracing::info!(server = %created.id, host = %created.host, port = created.port, agent = %created.agent, max_connections = created.max_connections, "server registered");
        Ok(created.into())
    }

    async fn update(&self, req: pb::UpdateServerRequest) -> Result<pb::Server> {
        let id = names::parse_server("name", &req.name)?;
        let max = match req.max_connections {
            0 => None,
            n => Some(budget::validate_max("max_connections", n)?),
        };
        let agent = match req.agent.as_deref().map(str::trim) {
            None => None,
            Some("") => Some(String::new()),
            Some(agent) => {
                names::validate_short_id("agent", agent)?;
                Some(agent.to_string())
            }
        };
        if max.is_none() && agent.is_none() {
            let server = servers::get(self.ctx.store.pool(), &id).await?;
            return self.with_usage(server).await;
        }
        let mut tx = self.ctx.store.begin().await?;
        let mut server = servers::hold(&mut *tx, &id)
            .await?
            .ok_or_else(|| CoordinatorError::not_found("server", &id))?;
        if let Some(agent) = agent.filter(|a| *a != server.agent) {
            let from = std::mem::replace(&mut server.agent, agent);
            check_agent(&mut tx, &server, "agent", "update the server again").await?;
            refuse_rebind_while_routed(&mut tx, &server, &from).await?;
            server = servers::set_agent(&mut *tx, &id, &server.agent).await?;
            tracing::info!(server = %server.id, from = %from, to = %server.agent, "server rebound");
        }
        if let Some(max) = max {
            server = servers::set_max_connections(&mut *tx, &id, max)
                .await?
                .ok_or_else(|| CoordinatorError::not_found("server", &id))?;
            tracing::info!(server = %server.id, max_connections = max, "server connection budget changed");
        }
        tx.commit().await?;
        self.with_usage(server).await
    }

    /// The server as the API shows it, with the slots in use now.
    async fn with_usage(&self, server: Server) -> Result<pb::Server> {
        let in_use = connection_slots::in_use(self.ctx.store.pool(), &server.id).await?;
        let mut shown = pb::Server::from(server);
        shown.connections_in_use = in_use;
        Ok(shown)
    }

    async fn list_databases(&self, req: pb::ListDatabasesRequest) -> Result<Vec<String>> {
        let server_id = names::parse_server("name", &req.name)?;
        let secret = SecretRef::parse("secret", &req.secret)?;
        let server = servers::get(self.ctx.store.pool(), &server_id).await?;
        // No vault is involved: the caller's global Configure right suffices.
        let mut conn = self.ctx.store.pool().acquire().await?;
        let credentials = resolve::reference_credentials(
            &mut conn,
            &self.ctx.cipher,
            &self.ctx.external_secrets,
            None,
            &secret,
        )
        .await?;
        drop(conn);
        let listed =
            databases::protectable(&self.ctx, &server, &secret, &credentials, None).await?;
        match listed {
            Ok(names) => Ok(names),
            Err(Unanswered::Connect(error)) => Err(CoordinatorError::precondition(format!(
                "{}: cannot connect to server \"{server_id}\": {}",
                error.code, error.message
            ))),
            Err(Unanswered::Query(message)) => Err(CoordinatorError::precondition(format!(
                "server \"{server_id}\": {message}"
            ))),
            Err(Unanswered::Agent(error)) => Err(CoordinatorError::Unavailable(error.message)),
        }
    }
}

/// A server bound to an agent names one that exists, in the server's
/// region; the agent's row is held until the transaction ends, so it
/// cannot be deleted in between. `field` names the request field, `retry`
/// what to do once the agent exists.
async fn check_agent(
    tx: &mut sqlx::PgConnection,
    server: &Server,
    field: &str,
    retry: &str,
) -> Result<()> {
    if server.agent.is_empty() {
        return Ok(());
    }
    let agent = agents::hold(tx, &server.agent)
        .await?
        .ok_or_else(|| unknown_agent(server, retry))?;
    if agent.region != server.region {
        return Err(CoordinatorError::invalid(
            field,
            format!(
                "agent \"{}\" is in region \"{}\" but the server is in region \"{}\"; bind the server to an agent of its region",
                agent.id, agent.region, server.region
            ),
        ));
    }
    Ok(())
}

/// How many of the jobs that block a rebind its refusal names.
const BLOCKING_JOBS_SHOWN: i64 = 5;

/// A job keeps the agent it was created with, so a server is rebound only
/// when no backup, restore, verify or drill routed through it is queued or
/// running: the refusal names them (the oldest few) and what to do.
async fn refuse_rebind_while_routed(
    tx: &mut sqlx::PgConnection,
    server: &Server,
    from: &str,
) -> Result<()> {
    let blocking =
        jobs::unfinished_through_server(&mut *tx, &server.id, BLOCKING_JOBS_SHOWN + 1).await?;
    if blocking.is_empty() {
        return Ok(());
    }
    let route = if from.is_empty() {
        "the workers".to_string()
    } else {
        format!("agent \"{from}\"")
    };
    let mut shown: Vec<String> = blocking
        .iter()
        .take(BLOCKING_JOBS_SHOWN as usize)
        .map(|id| id.to_string())
        .collect();
    if blocking.len() > BLOCKING_JOBS_SHOWN as usize {
        shown.push("…".into());
    }
    Err(CoordinatorError::precondition(format!(
        "server \"{}\" has jobs queued or running through {route} ({}); wait for them to end or cancel them (pgvault job cancel JOB), then rebind the server",
        server.id,
        shown.join(", ")
    )))
}

/// The server's whole-server protection and its latest pass, if protected whole.
async fn whole_server_protection(
    pool: &sqlx::PgPool,
    server_id: &str,
) -> Result<Option<pb::WholeServerProtection>> {
    let Some(protection) = server_protections::find(pool, server_id).await? else {
        return Ok(None);
    };
    let latest = server_protections::latest_run(pool, server_id).await?;
    let (last_slot, run) = match latest {
        Some((slot, run)) => (Some(crate::api::convert::timestamp(slot)), run),
        None => (None, Default::default()),
    };
    Ok(Some(pb::WholeServerProtection {
        vault: names::vault_name(&protection.vault_id),
        policy: names::policy_name(&protection.vault_id, &protection.policy_id),
        last_slot,
        included: run.included,
        refused: run.refused,
        missing: run.missing,
        error: run.error,
        role_passwords: protection.role_passwords,
    }))
}

/// NOT_FOUND for a server naming an agent that does not exist.
fn unknown_agent(server: &Server, retry: &str) -> CoordinatorError {
    let region = if server.region.is_empty() {
        "REGION"
    } else {
        server.region.as_str()
    };
    CoordinatorError::not_found_fix(
        "agent",
        &server.agent,
        format!(
            "create it with pgvault agent create {} --region {region}, then {retry}",
            server.agent
        ),
    )
}

#[tonic::async_trait]
impl ServerService for ServerApi {
    async fn register_server(
        &self,
        request: Request<pb::RegisterServerRequest>,
    ) -> Result<Response<pb::Server>, Status> {
        Ok(Response::new(self.register(request.into_inner()).await?))
    }

    async fn get_server(
        &self,
        request: Request<pb::GetServerRequest>,
    ) -> Result<Response<pb::Server>, Status> {
        let id = names::parse_server("name", &request.get_ref().name)?;
        let pool = self.ctx.store.pool();
        let server = servers::get(pool, &id).await?;
        let mut server = self.with_usage(server).await?;
        server.whole_server_protection = whole_server_protection(pool, &id).await?;
        Ok(Response::new(server))
    }

    async fn list_servers(
        &self,
        request: Request<pb::ListServersRequest>,
    ) -> Result<Response<pb::ListServersResponse>, Status> {
        let req = request.into_inner();
        let size = paging::page_size(req.page_size);
        let after = paging::after_id(&req.page_token)?;
        let rows = servers::list(self.ctx.store.pool(), after.as_deref(), size + 1).await?;
        let (page, more) = paging::split_page(rows, size);
        let next_page_token = next_token(&page, more, |s| paging::id_token(&s.id));
        let in_use = connection_slots::in_use_by_server(self.ctx.store.pool()).await?;
        let servers = page
            .into_iter()
            .map(|s| {
                let used = in_use.get(&s.id).copied().unwrap_or(0);
                let mut shown = pb::Server::from(s);
                shown.connections_in_use = used;
                shown
            })
            .collect();
        Ok(Response::new(pb::ListServersResponse {
            servers,
            next_page_token,
        }))
    }

    async fn update_server(
        &self,
        request: Request<pb::UpdateServerRequest>,
    ) -> Result<Response<pb::Server>, Status> {
        Ok(Response::new(self.update(request.into_inner()).await?))
    }

    async fn list_databases(
        &self,
        request: Request<pb::ListDatabasesRequest>,
    ) -> Result<Response<pb::ListDatabasesResponse>, Status> {
        let databases = self.list_databases(request.into_inner()).await?;
        Ok(Response::new(pb::ListDatabasesResponse { databases }))
    }
}
