//! `RecoveryPointService`: list an instance's points (newest first; the
//! soft-deleted ones when asked), get one, soft-delete and undelete one
//! (`data_protection::soft_delete`), and queue a verify of one
//! (`verify::queue`).

use std::sync::Arc;

use pgvault_proto::v1 as pb;
use pgvault_proto::v1::recovery_point_service_server::RecoveryPointService;
use tonic::{Request, Response, Status};

use crate::access::{self, vault_scope};
use crate::api::{ApiContext, instance_lookup, next_token};
use crate::data_protection::soft_delete;
use crate::error::CoordinatorError;
use crate::store::{instances, paging, recovery_points};

pub struct RecoveryPointApi {
    ctx: Arc<ApiContext>,
}

impl RecoveryPointApi {
    pub fn new(ctx: Arc<ApiContext>) -> Self {
        RecoveryPointApi { ctx }
    }
}

#[tonic::async_trait]
impl RecoveryPointService for RecoveryPointApi {
    async fn list_recovery_points(
        &self,
        request: Request<pb::ListRecoveryPointsRequest>,
    ) -> Result<Response<pb::ListRecoveryPointsResponse>, Status> {
        access::in_vault(&request, vault_scope(&request.get_ref().parent).as_deref())?;
        let req = request.into_inner();
        let (vault, instance) =
            instance_lookup::instance(self.ctx.store.pool(), "parent", &req.parent).await?;
        let pool = self.ctx.store.pool();
        instances::get(pool, &vault, instance).await?;
        let size = paging::page_size(req.page_size);
        let after = paging::after_time(&req.page_token)?;
        let rows = recovery_points::list(pool, instance, after, size + 1, req.show_deleted).await?;
        let (page, more) = paging::split_page(rows, size);
        let next_page_token = next_token(&page, more, |p| paging::time_token(p.create_time, p.id));
        Ok(Response::new(pb::ListRecoveryPointsResponse {
            recovery_points: page.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }

    async fn get_recovery_point(
        &self,
        request: Request<pb::GetRecoveryPointRequest>,
    ) -> Result<Response<pb::RecoveryPoint>, Status> {
        access::in_vault(&request, vault_scope(&request.get_ref().name).as_deref())?;
        let (vault, instance, point) =
            instance_lookup::recovery_point(self.ctx.store.pool(), "name", &request.get_ref().name)
                .await?;
        Ok(Response::new(
            recovery_points::get(self.ctx.store.pool(), &vault, instance, point)
                .await?
                .into(),
        ))
    }

    async fn delete_recovery_point(
        &self,
        request: Request<pb::DeleteRecoveryPointRequest>,
    ) -> Result<Response<pb::RecoveryPoint>, Status> {
        let caller = access::in_vault(&request, vault_scope(&request.get_ref().name).as_deref())?;
        let point =
            instance_lookup::recovery_point(self.ctx.store.pool(), "name", &request.get_ref().name)
                .await?;
        let by = caller.token_name().to_string();
        let deleted =
            soft_delete::delete_point(&self.ctx.store, point, by, self.ctx.clock.now()).await?;
        Ok(Response::new(deleted.into()))
    }

    async fn undelete_recovery_point(
        &self,
        request: Request<pb::UndeleteRecoveryPointRequest>,
    ) -> Result<Response<pb::RecoveryPoint>, Status> {
        access::in_vault(&request, vault_scope(&request.get_ref().name).as_deref())?;
        let point =
            instance_lookup::recovery_point(self.ctx.store.pool(), "name", &request.get_ref().name)
                .await?;
        let restored = soft_delete::undelete_point(&self.ctx.store, point).await?;
        Ok(Response::new(restored.into()))
    }

    async fn verify_recovery_point(
        &self,
        request: Request<pb::VerifyRecoveryPointRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        access::in_vault(&request, vault_scope(&request.get_ref().name).as_deref())?;
        let (vault, instance, point) =
            instance_lookup::recovery_point(self.ctx.store.pool(), "name", &request.get_ref().name)
                .await?;
        let mut tx = self.ctx.store.begin().await?;
        let point = recovery_points::get(&mut *tx, &vault, instance, point).await?;
        let (job, new) = crate::verify::queue::verify_point(&mut tx, &point).await?;
        tx.commit().await.map_err(CoordinatorError::from)?;
        if new {
            self.ctx.dispatch_wake.notify_one();
        }
        Ok(Response::new(job.into()))
    }
}
