//! `BackupInstanceService`: configure protection row by row and re-validate
//! (in `configure`: each row gets SUCCESS with its instance or
//! FAILED_VALIDATION with a coded error), get, list, `BackupNow` (in
//! `backup_now`), and ChangePolicy, StopProtection and ResumeProtection (in
//! `protection`).

use std::sync::Arc;

use pgvault_proto::v1 as pb;
use pgvault_proto::v1::backup_instance_service_server::BackupInstanceService;
use tonic::{Request, Response, Status};

use crate::access::{self, vault_scope};
use crate::api::{ApiContext, backup_now, configure, instance_lookup, next_token, protection};
use crate::names;
use crate::store::{instances, paging, vaults};

pub struct InstanceApi {
    ctx: Arc<ApiContext>,
}

impl InstanceApi {
    pub fn new(ctx: Arc<ApiContext>) -> Self {
        InstanceApi { ctx }
    }
}

#[tonic::async_trait]
impl BackupInstanceService for InstanceApi {
    async fn configure_backup(
        &self,
        request: Request<pb::ConfigureBackupRequest>,
    ) -> Result<Response<pb::ConfigureBackupResponse>, Status> {
        let caller = access::in_vault(&request, vault_scope(&request.get_ref().parent).as_deref())?;
        let results = configure::configure(&self.ctx, &caller, request.into_inner()).await?;
        Ok(Response::new(pb::ConfigureBackupResponse { results }))
    }

    async fn get_backup_instance(
        &self,
        request: Request<pb::GetBackupInstanceRequest>,
    ) -> Result<Response<pb::BackupInstance>, Status> {
        access::in_vault(&request, vault_scope(&request.get_ref().name).as_deref())?;
        let (vault, id) =
            instance_lookup::instance(self.ctx.store.pool(), "name", &request.get_ref().name)
                .await?;
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
        access::in_vault(&request, vault_scope(&request.get_ref().parent).as_deref())?;
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
        access::in_vault(&request, vault_scope(&request.get_ref().name).as_deref())?;
        Ok(Response::new(
            backup_now::backup_now(&self.ctx, request.into_inner()).await?,
        ))
    }

    async fn change_policy(
        &self,
        request: Request<pb::ChangePolicyRequest>,
    ) -> Result<Response<pb::BackupInstance>, Status> {
        access::in_vault(&request, vault_scope(&request.get_ref().name).as_deref())?;
        Ok(Response::new(
            protection::change_policy(&self.ctx, request.into_inner()).await?,
        ))
    }

    async fn stop_protection(
        &self,
        request: Request<pb::StopProtectionRequest>,
    ) -> Result<Response<pb::BackupInstance>, Status> {
        let caller = access::in_vault(&request, vault_scope(&request.get_ref().name).as_deref())?;
        Ok(Response::new(
            protection::stop(&self.ctx, request.into_inner(), caller.token_name()).await?,
        ))
    }

    async fn resume_protection(
        &self,
        request: Request<pb::ResumeProtectionRequest>,
    ) -> Result<Response<pb::BackupInstance>, Status> {
        access::in_vault(&request, vault_scope(&request.get_ref().name).as_deref())?;
        Ok(Response::new(
            protection::resume(&self.ctx, request.into_inner()).await?,
        ))
    }

    async fn revalidate_backup_instance(
        &self,
        request: Request<pb::RevalidateBackupInstanceRequest>,
    ) -> Result<Response<pb::ConfigureBackupResult>, Status> {
        let caller = access::in_vault(&request, vault_scope(&request.get_ref().name).as_deref())?;
        Ok(Response::new(
            configure::revalidate(&self.ctx, &caller, request.into_inner()).await?,
        ))
    }
}
