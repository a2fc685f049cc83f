//! `RestoreService`: restore a recovery point as a new database. The target
//! server and secret default to the instance's own; the job and its outbox
//! row are written in one transaction.

use std::sync::Arc;

use pgvault_proto::v1 as pb;
use pgvault_proto::v1::restore_service_server::RestoreService;
use tonic::{Request, Response, Status};

use crate::access::{Rpc, vault_scope};
use crate::api::ApiContext;
use crate::api::jobs::enqueue;
use crate::error::{CoordinatorError, Result};
use crate::model::Operation;
use crate::names;
use crate::store::jobs::NewJob;
use crate::store::{instances, recovery_points, secrets, servers};
use crate::validation::{self, unprotectable_reason};

pub struct RestoreApi {
    ctx: Arc<ApiContext>,
}

impl RestoreApi {
    pub fn new(ctx: Arc<ApiContext>) -> Self {
        RestoreApi { ctx }
    }

    async fn restore_as_database(&self, req: pb::RestoreAsDatabaseRequest) -> Result<pb::Job> {
        let (vault_id, instance_id, point_id) =
            names::parse_recovery_point("recovery_point", &req.recovery_point)?;
        validation::database_name("target_database", &req.target_database)?;
        if let Some(reason) =
            unprotectable_reason(&req.target_database, &self.ctx.maintenance_databases)
        {
            return Err(CoordinatorError::invalid(
                "target_database",
                reason.replace("protected", "restored into"),
            ));
        }
        let pool = self.ctx.store.pool();
        let point = recovery_points::get(pool, &vault_id, instance_id, point_id).await?;
        let instance = instances::get(pool, &vault_id, instance_id).await?;
        let target_server = if req.target_server.is_empty() {
            instance.server_id.clone()
        } else {
            names::parse_server("target_server", &req.target_server)?
        };
        servers::get(pool, &target_server).await?;
        if target_server == instance.server_id && req.target_database == instance.database {
            return Err(CoordinatorError::invalid(
                "target_database",
                format!(
                    "\"{}\" is the protected database itself; restore into a new database",
                    instance.database
                ),
            ));
        }
        let secret = if req.secret.is_empty() {
            instance.secret_id.clone()
        } else {
            names::parse_secret("secret", &req.secret)?
        };
        if secrets::find(pool, &secret).await?.is_none() {
            return Err(CoordinatorError::not_found("secret", &secret));
        }
        let job = enqueue(
            &self.ctx,
            NewJob {
                operation: Operation::Restore,
                vault_id,
                backup_instance_id: Some(instance.id),
                recovery_point_id: Some(point.id),
                retention_rule: None,
                target_server_id: Some(target_server.clone()),
                target_database: Some(req.target_database.clone()),
                target_secret_id: Some(secret),
            },
        )
        .await?;
        tracing::info!(job_id = %job.id, point = %point.id, server = %target_server, database = %req.target_database, "restore queued");
        Ok(job.into())
    }
}

#[tonic::async_trait]
impl RestoreService for RestoreApi {
    async fn restore_as_database(
        &self,
        request: Request<pb::RestoreAsDatabaseRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        self.ctx
            .authorize(
                &request,
                Rpc::RestoreAsDatabase,
                vault_scope(&request.get_ref().recovery_point).as_deref(),
            )
            .await?;
        Ok(Response::new(
            self.restore_as_database(request.into_inner()).await?,
        ))
    }
}
