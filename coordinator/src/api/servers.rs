//! `ServerService`: register, get, list and update servers (their
//! connection budgets, [`crate::budget`], shown with the slots in use), and
//! list the databases
//! of a server that can be protected (connecting with a stored secret,
//! directly or through the server's agent: [`crate::server_probe`]).
//!
//! A server registered with an agent names one that exists, in the
//! server's region; the agent's row is held while the server is written,
//! so the agent cannot be deleted in between. Rows stored before agents
//! existed keep the agent they named and read as before.

use std::sync::Arc;

use pgvault_proto::v1 as pb;
use pgvault_proto::v1::server_service_server::ServerService;
use tonic::{Request, Response, Status};

use crate::api::{ApiContext, next_token, resolve};
use crate::error::{CoordinatorError, Result};
use crate::model::Server;
use crate::secret_ref::SecretRef;
use crate::server_probe::{ProbeTarget, Unanswered};
use crate::store::{agents, connection_slots, paging, servers};
use crate::validation::unprotectable_reason;
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
        if !server.agent.is_empty() {
            let agent = agents::hold(&mut tx, &server.agent)
                .await?
                .ok_or_else(|| unknown_agent(&server))?;
            if agent.region != server.region {
                return Err(CoordinatorError::invalid(
                    "server.agent",
                    format!(
                        "agent \"{}\" is in region \"{}\" but the server is in region \"{}\"; bind the server to an agent of its region",
                        agent.id, agent.region, server.region
                    ),
                ));
            }
        }
        let created = servers::insert(&mut *tx, &server).await?;
        tx.commit().await?;
        tracing::info!(server = %created.id, host = %created.host, port = created.port, agent = %created.agent, max_connections = created.max_connections, "server registered");
        Ok(created.into())
    }

    async fn update(&self, req: pb::UpdateServerRequest) -> Result<pb::Server> {
        let id = names::parse_server("name", &req.name)?;
        if req.max_connections == 0 {
            let server = servers::get(self.ctx.store.pool(), &id).await?;
            return self.with_usage(server).await;
        }
        let max = budget::validate_max("max_connections", req.max_connections)?;
        let server = servers::set_max_connections(self.ctx.store.pool(), &id, max)
            .await?
            .ok_or_else(|| CoordinatorError::not_found("server", &id))?;
        tracing::info!(server = %server.id, max_connections = max, "server connection budget changed");
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
        let database = credentials
            .database
            .clone()
            .unwrap_or_else(|| "postgres".to_string());
        let target = ProbeTarget {
            server: &server,
            database: &database,
            secret: &secret,
            credentials: &credentials,
            vault: None,
        };
        let probe = self.ctx.probes.for_server(&server);
        let names = match probe.list_databases(&target).await? {
            Ok(names) => names,
            Err(Unanswered::Connect(error)) => {
                return Err(CoordinatorError::precondition(format!(
                    "{}: cannot connect to server \"{server_id}\": {}",
                    error.code, error.message
                )));
            }
            Err(Unanswered::Query(message)) => {
                return Err(CoordinatorError::precondition(format!(
                    "server \"{server_id}\": {message}"
                )));
            }
            Err(Unanswered::Agent(error)) => {
                return Err(CoordinatorError::Unavailable(error.message));
            }
        };
        let mut databases = Vec::with_capacity(names.len());
        for name in names {
            if unprotectable_reason(&name, &self.ctx.maintenance_databases).is_none() {
                databases.push(name);
            }
        }
        Ok(databases)
    }
}

/// NOT_FOUND for a server naming an agent that does not exist.
fn unknown_agent(server: &Server) -> CoordinatorError {
    let region = if server.region.is_empty() {
        "REGION"
    } else {
        server.region.as_str()
    };
    CoordinatorError::not_found_fix(
        "agent",
        &server.agent,
        format!(
            "create it with pgvault agent create {} --region {region}, then register the server again",
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
        let server = servers::get(self.ctx.store.pool(), &id).await?;
        Ok(Response::new(self.with_usage(server).await?))
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
