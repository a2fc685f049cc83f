//! `RecoveryPointService`: list an instance's points (newest first; the
//! soft-deleted ones when asked), get one, soft-delete and undelete one
//! (`data_protection::soft_delete`), and queue a verify of one
//! (`verify::queue`) or a restore drill of one (`drill::queue`; the server
//! and secret default to the instance's policy's drill). Each point shows its copies in other datastores
//! (`copies`).

use std::sync::Arc;

use pgvault_proto::v1 as pb;
use pgvault_proto::v1::recovery_point_service_server::RecoveryPointService;
use tonic::{Request, Response, Status};

use crate::access::{self, vault_scope};
use crate::api::{ApiContext, instance_lookup, next_token};
use crate::data_protection::soft_delete;
use crate::error::{CoordinatorError, Result};
use crate::model::RecoveryPoint;
use crate::store::{copies, instances, paging, recovery_points};

pub struct RecoveryPointApi {
    ctx: Arc<ApiContext>,
}

impl RecoveryPointApi {
    pub fn new(ctx: Arc<ApiContext>) -> Self {
        RecoveryPointApi { ctx }
    }

    /// The points as the API shows them, each with its copies (one query).
    async fn with_copies(&self, points: Vec<RecoveryPoint>) -> Result<Vec<pb::RecoveryPoint>> {
        let ids: Vec<uuid::Uuid> = points.iter().map(|p| p.id).collect();
        let mut all = copies::of_points(self.ctx.store.pool(), &ids).await?;
        Ok(points
            .into_iter()
            .map(|point| {
                let id = point.id;
                let mut out = pb::RecoveryPoint::from(point);
                let (mine, rest): (Vec<_>, Vec<_>) =
                    all.drain(..).partition(|c| c.recovery_point_id == id);
                all = rest;
                out.copies = mine.into_iter().map(Into::into).collect();
                out
            })
            .collect())
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
        let rows = match (req.show_deleted, req.copies_only) {
            (true, true) => {
                return Err(CoordinatorError::invalid(
                    "copies_only",
                    "a soft-deleted point and a point kept only as copies are two lists; ask for one",
                )
                .into());
            }
            (_, true) => recovery_points::list_copies_only(pool, instance, after, size + 1).await?,
            (deleted, false) => {
                recovery_points::list(pool, instance, after, size + 1, deleted).await?
            }
        };
        let (page, more) = paging::split_page(rows, size);
        let next_page_token = next_token(&page, more, |p| paging::time_token(p.create_time, p.id));
        Ok(Response::new(pb::ListRecoveryPointsResponse {
            recovery_points: self.with_copies(page).await?,
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
        // Also a point kept only as copies: its copies are what is left.
        let point =
            recovery_points::get_with_copies_only(self.ctx.store.pool(), &vault, instance, point)
                .await?;
        let mut shown = self.with_copies(vec![point]).await?;
        Ok(Response::new(shown.remove(0)))
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

    async fn drill_recovery_point(
        &self,
        request: Request<pb::DrillRecoveryPointRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        access::in_vault(&request, vault_scope(&request.get_ref().name).as_deref())?;
        let req = request.into_inner();
        let job = self.drill(req).await?;
        Ok(Response::new(job.into()))
    }
}

impl RecoveryPointApi {
    /// Queues the drill of the named point on the request's server and
    /// secret, or the instance's policy's when the request names none.
    async fn drill(&self, req: pb::DrillRecoveryPointRequest) -> Result<crate::model::Job> {
        let pool = self.ctx.store.pool();
        let (vault, instance, point) =
            instance_lookup::recovery_point(pool, "name", &req.name).await?;
        let (server_id, secret) = if req.server.trim().is_empty() && req.secret.trim().is_empty() {
            let instance = instances::get(pool, &vault, instance).await?;
            let policy = crate::store::policies::get(pool, &vault, &instance.policy_id).await?;
            let rule = policy.drill.ok_or_else(|| {
                CoordinatorError::invalid(
                    "server",
                    format!(
                        "policy \"{}\" names no drill server: pass --server NAME --secret NAME",
                        policy.id
                    ),
                )
            })?;
            (rule.server_id, rule.secret)
        } else {
            if req.secret.trim().is_empty() {
                return Err(CoordinatorError::invalid(
                    "secret",
                    "a drill needs the secret to connect to its server with: pass --secret NAME",
                ));
            }
            let server =
                crate::drill::rule::known_server(&self.ctx, "server", req.server.trim()).await?;
            let secret = crate::drill::rule::secret_ref("secret", req.secret.trim())?;
            crate::api::restores::check_secret(&self.ctx, &vault, &secret).await?;
            (server, secret)
        };
        let mut tx = self.ctx.store.begin().await?;
        let point = recovery_points::get(&mut *tx, &vault, instance, point).await?;
        let (job, new) =
            crate::drill::queue::drill_point(&mut tx, &point, &server_id, &secret).await?;
        tx.commit().await.map_err(CoordinatorError::from)?;
        if new {
            self.ctx.dispatch_wake.notify_one();
        }
        Ok(job)
    }
}
