//! `RestoreService`: restore a recovery point (or a selection of its
//! schemas and tables) as a new database, or as one plain SQL file in a
//! datastore directory. The target server and secret default to the
//! instance's own; the file name defaults to `<database>-<snapshot>.sql`.
//! A restore into an older PostgreSQL major than the point's source is
//! refused before its job is queued (`restore_version`). The point is named,
//! or the newest of an instance (`restore_point`). Whole-server
//! restores (`RestoreServer`) are in `restore_server`.
//! The job, its restore target and its outbox row are written in one
//! transaction. A restore may read one of the point's copies in a second
//! datastore instead (`copy_datastore`, see `copies`).

use std::sync::Arc;

use pgvault_datastore::Datastore;
use pgvault_errors::ErrorCode;
use pgvault_proto::v1 as pb;
use pgvault_proto::v1::restore_service_server::RestoreService;
use tonic::{Request, Response, Status};

use crate::access::{self, vault_scope};
use crate::api::ApiContext;
use crate::api::restore_point::{self, PointChoice};
use crate::api::{output_file, restore_selection, restore_version};
use crate::error::{CoordinatorError, Result};
use crate::lifecycle::queue::{rehydrate_days, restore, restore_fanned};
use crate::model::{RestoreSpec, RestoreTarget};
use crate::names;
use crate::secret_ref::{SecretRef, unusable};
use crate::store::{instances, recovery_points, secret_grants, secrets, servers};
use crate::validation::{self, unprotectable_reason};

/// Most workers one restore may fan its loads out across.
const MAX_WORKERS: u32 = 64;

pub struct RestoreApi {
    ctx: Arc<ApiContext>,
}

impl RestoreApi {
    pub fn new(ctx: Arc<ApiContext>) -> Self {
        RestoreApi { ctx }
    }

    async fn restore_as_database(&self, req: pb::RestoreAsDatabaseRequest) -> Result<pb::Job> {
        let choice = PointChoice::from_request(&req.recovery_point, &req.latest_of)?;
        let (vault_id, instance_id, point_id) =
            restore_point::resolve(self.ctx.store.pool(), &choice).await?;
        validation::database_name("target_database", &req.target_database)?;
        if req.workers == 1 || req.workers > MAX_WORKERS {
            return Err(CoordinatorError::invalid(
                "workers",
                format!(
                    "must be 2-{MAX_WORKERS} to fan the restore out, or 0 to leave it to the size threshold"
                ),
            ));
        }
        if let Some(reason) =
            unprotectable_reason(&req.target_database, &self.ctx.maintenance_databases)
        {
            return Err(CoordinatorError::invalid(
                "target_database",
                reason.replace("protected", "restored into"),
            ));
        }
        let schemas = restore_selection::clean("schemas", &req.schemas)?;
        let tables = restore_selection::clean("tables", &req.tables)?;
        let pool = self.ctx.store.pool();
        let point =
            recovery_points::get_with_copies_only(pool, &vault_id, instance_id, point_id).await?;
        let instance = instances::get(pool, &vault_id, instance_id).await?;
        let target_server = if req.target_server.is_empty() {
            instance.server_id.clone()
        } else {
            names::parse_server("target_server", &req.target_server)?
        };
        let server = servers::get(pool, &target_server).await?;
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
            instance.secret.clone()
        } else {
            SecretRef::parse("secret", &req.secret)?
        };
        check_secret(&self.ctx, &vault_id, &secret).await?;
        let copy_datastore = crate::copies::restore_copy(pool, &point, &req.copy_datastore).await?;
        restore_selection::check(
            &self.ctx,
            &crate::copies::read_from(&point, copy_datastore.as_ref()),
            &schemas,
            &tables,
        )
        .await?;
        restore_version::check(&self.ctx, &vault_id, &point, &server, &secret).await?;
        let spec = RestoreSpec {
            instance_id: instance.id,
            point_id: point.id,
            target: RestoreTarget::Database {
                server_id: target_server.clone(),
                database: req.target_database.clone(),
                secret,
            },
            copy_datastore: copy_datastore.map(|c| c.datastore_url),
            schemas,
            tables,
            warnings: Vec::new(),
        };
        let job = restore_fanned(
            &self.ctx,
            vault_id,
            spec,
            rehydrate_days(req.rehydrate_days)?,
            req.workers,
        )
        .await?;
        crate::job_span::of("restore.queued", &job).in_scope(|| {
            tracing::info!(point = %point.id, server = %target_server, database = %req.target_database, "restore queued");
        });
        Ok(job.into())
    }

    async fn restore_as_files(&self, req: pb::RestoreAsFilesRequest) -> Result<pb::Job> {
        let choice = PointChoice::from_request(&req.recovery_point, &req.latest_of)?;
        let (vault_id, instance_id, point_id) =
            restore_point::resolve(self.ctx.store.pool(), &choice).await?;
        let target_url = req.target_url.trim().to_string();
        if target_url.is_empty() {
            return Err(CoordinatorError::invalid(
                "target_url",
                "a destination is required: file:///dir, s3://bucket/prefix or az://container/prefix",
            ));
        }
        let destination = Datastore::open(&target_url)
            .map_err(|e| CoordinatorError::invalid("target_url", e.to_string()))?;
        let schemas = restore_selection::clean("schemas", &req.schemas)?;
        let tables = restore_selection::clean("tables", &req.tables)?;
        let pool = self.ctx.store.pool();
        let point =
            recovery_points::get_with_copies_only(pool, &vault_id, instance_id, point_id).await?;
        let instance = instances::get(pool, &vault_id, instance_id).await?;
        let file = if req.file_name.trim().is_empty() {
            output_file::default_name(&point.database, point.snapshot_time)
        } else {
            output_file::check_name("file_name", req.file_name.trim())?
        };
        let copy_datastore = crate::copies::restore_copy(pool, &point, &req.copy_datastore).await?;
        restore_selection::check(
            &self.ctx,
            &crate::copies::read_from(&point, copy_datastore.as_ref()),
            &schemas,
            &tables,
        )
        .await?;
        let spec = RestoreSpec {
            instance_id: instance.id,
            point_id: point.id,
            target: RestoreTarget::Files {
                url: target_url,
                file: file.clone(),
                output: None,
            },
            copy_datastore: copy_datastore.map(|c| c.datastore_url),
            schemas,
            tables,
            warnings: Vec::new(),
        };
        let job = restore(
            &self.ctx,
            vault_id,
            spec,
            rehydrate_days(req.rehydrate_days)?,
        )
        .await?;
        crate::job_span::of("restore.queued", &job).in_scope(|| {
            tracing::info!(point = %point.id, destination = %destination.redacted_url(), file = %file, "restore as files queued");
        });
        Ok(job.into())
    }
}

/// The restore's vault may use `secret`: a stored secret exists and is
/// granted to it, an external one is allowed by the coordinator. (Its value
/// is read when the job is claimed.)
pub(crate) async fn check_secret(
    ctx: &ApiContext,
    vault_id: &str,
    secret: &SecretRef,
) -> Result<()> {
    ctx.external_secrets.check_allowed(secret)?;
    if let SecretRef::Stored { id, .. } = secret {
        let pool = ctx.store.pool();
        if secrets::find(pool, id).await?.is_none() {
            return Err(unusable(
                ErrorCode::UserErrorSecretNotFound,
                format!("secret \"{id}\" not found"),
            ));
        }
        if !secret_grants::is_granted(pool, vault_id, id).await? {
            return Err(CoordinatorError::SecretUnusable(Box::new(
                crate::api::resolve::not_granted(vault_id, id),
            )));
        }
    }
    Ok(())
}

/// The name whose vault the caller must have access to: the point, or the
/// instance of `latest_of` when no point is named.
fn scope_name<'a>(recovery_point: &'a str, latest_of: &'a str) -> &'a str {
    if recovery_point.is_empty() {
        latest_of
    } else {
        recovery_point
    }
}

#[tonic::async_trait]
impl RestoreService for RestoreApi {
    async fn restore_as_database(
        &self,
        request: Request<pb::RestoreAsDatabaseRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let req = request.get_ref();
        let named = scope_name(&req.recovery_point, &req.latest_of);
        access::in_vault(&request, vault_scope(named).as_deref())?;
        Ok(Response::new(
            self.restore_as_database(request.into_inner()).await?,
        ))
    }

    async fn restore_server(
        &self,
        request: Request<pb::RestoreServerRequest>,
    ) -> Result<Response<pb::RestoreServerResponse>, Status> {
        access::in_vault(
            &request,
            vault_scope(&request.get_ref().recovery_point).as_deref(),
        )?;
        Ok(Response::new(
            crate::api::restore_server::restore_server(&self.ctx, request.into_inner()).await?,
        ))
    }

    async fn restore_as_files(
        &self,
        request: Request<pb::RestoreAsFilesRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let req = request.get_ref();
        let named = scope_name(&req.recovery_point, &req.latest_of);
        access::in_vault(&request, vault_scope(named).as_deref())?;
        Ok(Response::new(
            self.restore_as_files(request.into_inner()).await?,
        ))
    }
}
