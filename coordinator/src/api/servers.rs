//! `ServerService`: register, get and list servers, and list the databases
//! of a server that can be protected (connecting with a stored secret).
//!
//! Nothing routes tasks through an agent yet, so registering a server with
//! one is refused; rows stored before that (with an agent) still read.

use std::sync::Arc;

use pgvault_proto::v1 as pb;
use pgvault_proto::v1::server_service_server::ServerService;
use tonic::{Request, Response, Status};

use crate::api::{ApiContext, next_token, resolve};
use crate::error::{CoordinatorError, Result};
use crate::model::Server;
use crate::names;
use crate::secret_ref::SecretRef;
use crate::store::{paging, servers};
use crate::validation::unprotectable_reason;

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
        if !input.agent.trim().is_empty() {
            return Err(CoordinatorError::invalid(
                "server.agent",
                "agents are not available yet: leave it empty and make the server reachable from the workers",
            ));
        }
        let port = match input.port {
            0 => 5432,
            p => u16::try_from(p)
                .map_err(|_| CoordinatorError::invalid("server.port", "must be 1-65535"))?,
        };
        let server = Server {
            id: req.server_id,
            host,
            port,
            region: input.region.trim().to_string(),
            agent: String::new(),
            create_time: chrono::Utc::now(),
        };
        let created = servers::insert(self.ctx.store.pool(), &server).await?;
        tracing::info!(server = %created.id, host = %created.host, port = created.port, "server registered");
        Ok(created.into())
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
        let connection = resolve::connect_or_fail(&server, &credentials, &database).await?;
        let names = pgvault_probe::list_databases(&connection.client)
            .await
            .map_err(|e| CoordinatorError::precondition(format!("server \"{server_id}\": {e}")))?;
        let mut databases = Vec::with_capacity(names.len());
        for name in names {
            if unprotectable_reason(&name, &self.ctx.maintenance_databases).is_none() {
                databases.push(name);
            }
        }
        Ok(databases)
    }
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
        Ok(Response::new(
            servers::get(self.ctx.store.pool(), &id).await?.into(),
        ))
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
        Ok(Response::new(pb::ListServersResponse {
            servers: page.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }

    async fn list_databases(
        &self,
        request: Request<pb::ListDatabasesRequest>,
    ) -> Result<Response<pb::ListDatabasesResponse>, Status> {
        let databases = self.list_databases(request.into_inner()).await?;
        Ok(Response::new(pb::ListDatabasesResponse { databases }))
    }
}
