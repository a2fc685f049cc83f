//! `BackupInstanceService`: configure protection row by row (each row gets
//! SUCCESS with its instance or FAILED_VALIDATION with a coded error), get,
//! list, `BackupNow` (in `backup_now`), and ChangePolicy, StopProtection and
//! ResumeProtection (in `protection`).

use std::sync::Arc;

use pgvault_proto::v1 as pb;
use pgvault_proto::v1::backup_instance_service_server::BackupInstanceService;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::access::{Rpc, vault_scope};
use crate::api::{ApiContext, backup_now, next_token, protection, resolve};
use crate::error::{CoordinatorError, Result};
use crate::model::{BackupInstance, JobError, Policy, ProtectionState, Vault};
use crate::names;
use crate::readiness::grant_script::{self, GrantScript};
use crate::readiness::{self, privileges};
use crate::store::instances::{self, Inserted};
use crate::store::{paging, policies, secrets, servers, vaults};
use crate::validation::{self, unprotectable_reason};

pub struct InstanceApi {
    ctx: Arc<ApiContext>,
}

/// Why a row is not protected, and the fix when one can be generated.
struct Refused {
    error: JobError,
    script: Option<GrantScript>,
}

impl From<JobError> for Refused {
    fn from(error: JobError) -> Self {
        Refused {
            error,
            script: None,
        }
    }
}

fn row_error(code: &str, message: String, action: &str) -> Refused {
    JobError {
        code: code.to_string(),
        message,
        recommended_action: action.to_string(),
    }
    .into()
}

impl InstanceApi {
    pub fn new(ctx: Arc<ApiContext>) -> Self {
        InstanceApi { ctx }
    }

    async fn configure(
        &self,
        req: pb::ConfigureBackupRequest,
    ) -> Result<Vec<pb::ConfigureBackupResult>> {
        let vault_id = names::parse_vault("parent", &req.parent)?;
        let (policy_vault, policy_id) = names::parse_policy("policy", &req.policy)?;
        if policy_vault != vault_id {
            return Err(CoordinatorError::invalid(
                "policy",
                format!(
                    "policy \"{}\" belongs to another vault than \"{}\"",
                    req.policy, req.parent
                ),
            ));
        }
        if req.rows.is_empty() {
            return Err(CoordinatorError::invalid(
                "rows",
                "at least one database row is required",
            ));
        }
        let vault = vaults::get(self.ctx.store.pool(), &vault_id).await?;
        let policy = policies::get(self.ctx.store.pool(), &vault_id, &policy_id).await?;
        let mut results = Vec::with_capacity(req.rows.len());
        for (i, row) in req.rows.iter().enumerate() {
            let row_number = u32::try_from(i).unwrap_or(u32::MAX);
            let result = match self
                .configure_row(&vault, &policy, row, &req.default_secret)
                .await?
            {
                Ok(instance) => {
                    tracing::info!(instance = %instance.id, server = %instance.server_id, database = %instance.database, "backup configured");
                    pb::ConfigureBackupResult {
                        row: row_number,
                        readiness: pb::Readiness::Success as i32,
                        backup_instance: Some(instance.into()),
                        error: None,
                        grant_script: None,
                    }
                }
                Err(Refused { error, script }) => pb::ConfigureBackupResult {
                    row: row_number,
                    readiness: pb::Readiness::FailedValidation as i32,
                    backup_instance: None,
                    error: Some(error.into()),
                    grant_script: script.map(|s| pb::GrantScript {
                        sql: s.sql,
                        psql: s.psql,
                        powershell: s.powershell,
                    }),
                },
            };
            results.push(result);
        }
        Ok(results)
    }

    /// Outer error: the request cannot be served; inner: this row is refused.
    async fn configure_row(
        &self,
        vault: &Vault,
        policy: &Policy,
        row: &pb::ConfigureBackupRow,
        default_secret: &str,
    ) -> Result<std::result::Result<BackupInstance, Refused>> {
        const FIX_INPUT: &str = "Correct the row and configure it again";
        let pool = self.ctx.store.pool();
        let server_id = match names::parse_server("server", &row.server) {
            Ok(id) => id,
            Err(e) => {
                return Ok(Err(row_error(
                    "UserErrorInvalidInput",
                    e.to_string(),
                    FIX_INPUT,
                )));
            }
        };
        let secret_ref = if row.secret.is_empty() {
            default_secret
        } else {
            row.secret.as_str()
        };
        let secret_id = match names::parse_secret("secret", secret_ref) {
            Ok(id) => id,
            Err(e) => {
                return Ok(Err(row_error(
                    "UserErrorInvalidInput",
                    e.to_string(),
                    FIX_INPUT,
                )));
            }
        };
        if let Err(e) = validation::database_name("database", &row.database) {
            return Ok(Err(row_error(
                "UserErrorInvalidInput",
                e.to_string(),
                FIX_INPUT,
            )));
        }
        let Some(server) = servers::find(pool, &server_id).await? else {
            return Ok(Err(row_error(
                "UserErrorServerNotFound",
                format!("server \"{server_id}\" not found"),
                "Register the server first (pgvault server register)",
            )));
        };
        if !vault.region.is_empty() && !server.region.is_empty() && vault.region != server.region {
            return Ok(Err(row_error(
                "UserErrorRegionMismatch",
                format!(
                    "server \"{server_id}\" is in region \"{}\" but vault \"{}\" is in region \"{}\"",
                    server.region, vault.id, vault.region
                ),
                "Protect the database in a vault of the server's region",
            )));
        }
        if let Some(reason) = unprotectable_reason(&row.database, &self.ctx.maintenance_databases) {
            return Ok(Err(row_error(
                "UserErrorDatabaseNotProtectable",
                reason,
                "Choose a user database",
            )));
        }
        if let Some(existing) = instances::find_by_database(pool, &server_id, &row.database).await?
        {
            return Ok(Err(row_error(
                "UserErrorDatabaseAlreadyProtected",
                format!(
                    "database \"{}\" on server \"{server_id}\" is already protected by {}; a database is protected by at most one vault",
                    row.database,
                    names::instance_name(&existing.vault_id, existing.id)
                ),
                "Use the existing backup instance, or stop protecting it there first",
            )));
        }
        if secrets::find(pool, &secret_id).await?.is_none() {
            return Ok(Err(row_error(
                "UserErrorSecretNotFound",
                format!("secret \"{secret_id}\" not found"),
                "Store the connection string first (pgvault secret put)",
            )));
        }
        let credentials = match resolve::credentials(pool, &self.ctx.cipher, &secret_id).await {
            Ok(c) => c,
            Err(e @ CoordinatorError::FailedPrecondition(_)) => {
                return Ok(Err(row_error(
                    "UserErrorInvalidSecret",
                    format!("secret \"{secret_id}\" cannot be used: {e}"),
                    "Put a new version of the secret with a valid connection string",
                )));
            }
            Err(e) => return Err(e),
        };
        let connection = match resolve::connect(&server, &credentials, &row.database).await {
            Ok(c) => c,
            Err(e) => return Ok(Err(readiness::connection_error(&e).into())),
        };
        let missing = privileges::check(&connection.client).await?;
        if !missing.is_empty() {
            return Ok(Err(Refused {
                error: JobError {
                    code: readiness::MISSING_DB_PERMISSIONS.into(),
                    message: missing.summary(),
                    recommended_action: "Run the generated grant script (SQL, or its psql/PowerShell wrapper) as the database owner or a superuser, then configure the row again".into(),
                },
                script: Some(grant_script::generate(&missing)),
            }));
        }
        let instance = BackupInstance {
            id: Uuid::new_v4(),
            vault_id: policy.vault_id.clone(),
            server_id,
            database: row.database.clone(),
            policy_id: policy.id.clone(),
            secret_id,
            protection_state: ProtectionState::Configured,
            create_time: chrono::Utc::now(),
        };
        match instances::insert(pool, &instance).await? {
            Inserted::Created(created) => Ok(Ok(created)),
            Inserted::AlreadyProtected => {
                let existing =
                    instances::find_by_database(pool, &instance.server_id, &instance.database)
                        .await?;
                let by = existing
                    .map(|e| format!(" by {}", names::instance_name(&e.vault_id, e.id)))
                    .unwrap_or_default();
                Ok(Err(row_error(
                    "UserErrorDatabaseAlreadyProtected",
                    format!(
                        "database \"{}\" on server \"{}\" is already protected{by}; a database is protected by at most one vault",
                        instance.database, instance.server_id
                    ),
                    "Use the existing backup instance, or stop protecting it there first",
                )))
            }
        }
    }
}

#[tonic::async_trait]
impl BackupInstanceService for InstanceApi {
    async fn configure_backup(
        &self,
        request: Request<pb::ConfigureBackupRequest>,
    ) -> Result<Response<pb::ConfigureBackupResponse>, Status> {
        self.ctx
            .authorize(
                &request,
                Rpc::ConfigureBackup,
                vault_scope(&request.get_ref().parent).as_deref(),
            )
            .await?;
        let results = self.configure(request.into_inner()).await?;
        Ok(Response::new(pb::ConfigureBackupResponse { results }))
    }

    async fn get_backup_instance(
        &self,
        request: Request<pb::GetBackupInstanceRequest>,
    ) -> Result<Response<pb::BackupInstance>, Status> {
        self.ctx
            .authorize(
                &request,
                Rpc::GetBackupInstance,
                vault_scope(&request.get_ref().name).as_deref(),
            )
            .await?;
        let (vault, id) = names::parse_instance("name", &request.get_ref().name)?;
        Ok(Response::new(
            instances::get(self.ctx.store.pool(), &vault, id)
                .await?
                .into(),
        ))
    }

    async fn list_backup_instances(
        &self,
        request: Request<pb::ListBackupInstancesRequest>,
    ) -> Result<Response<pb::ListBackupInstancesResponse>, Status> {
        self.ctx
            .authorize(
                &request,
                Rpc::ListBackupInstances,
                vault_scope(&request.get_ref().parent).as_deref(),
            )
            .await?;
        let req = request.into_inner();
        let vault = match names::parse_vault("parent", &req.parent)?.as_str() {
            "-" => None,
            id => {
                vaults::get(self.ctx.store.pool(), id).await?;
                Some(id.to_string())
            }
        };
        let size = paging::page_size(req.page_size);
        let after = paging::after_time(&req.page_token)?;
        let rows =
            instances::list(self.ctx.store.pool(), vault.as_deref(), after, size + 1).await?;
        let (page, more) = paging::split_page(rows, size);
        let next_page_token = next_token(&page, more, |i| paging::time_token(i.create_time, i.id));
        Ok(Response::new(pb::ListBackupInstancesResponse {
            backup_instances: page.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }

    async fn backup_now(
        &self,
        request: Request<pb::BackupNowRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        self.ctx
            .authorize(
                &request,
                Rpc::BackupNow,
                vault_scope(&request.get_ref().name).as_deref(),
            )
            .await?;
        Ok(Response::new(
            backup_now::backup_now(&self.ctx, request.into_inner()).await?,
        ))
    }

    async fn change_policy(
        &self,
        request: Request<pb::ChangePolicyRequest>,
    ) -> Result<Response<pb::BackupInstance>, Status> {
        self.ctx
            .authorize(
                &request,
                Rpc::ChangePolicy,
                vault_scope(&request.get_ref().name).as_deref(),
            )
            .await?;
        Ok(Response::new(
            protection::change_policy(&self.ctx, request.into_inner()).await?,
        ))
    }

    async fn stop_protection(
        &self,
        request: Request<pb::StopProtectionRequest>,
    ) -> Result<Response<pb::BackupInstance>, Status> {
        self.ctx
            .authorize(
                &request,
                Rpc::StopProtection,
                vault_scope(&request.get_ref().name).as_deref(),
            )
            .await?;
        Ok(Response::new(
            protection::stop(&self.ctx, request.into_inner()).await?,
        ))
    }

    async fn resume_protection(
        &self,
        request: Request<pb::ResumeProtectionRequest>,
    ) -> Result<Response<pb::BackupInstance>, Status> {
        self.ctx
            .authorize(
                &request,
                Rpc::ResumeProtection,
                vault_scope(&request.get_ref().name).as_deref(),
            )
            .await?;
        Ok(Response::new(
            protection::resume(&self.ctx, request.into_inner()).await?,
        ))
    }
}
