//! `JobService`: list jobs (filters, the last 7 days unless asked for more,
//! newest first), get one, watch one until it reaches a terminal state,
//! cancel one, retry a failed one; list and delete dead letters (in
//! [`crate::api::dead_letters`]). `GetJob` adds the job's attempts, why it
//! is still queued and the progress of every table; `WatchJob` messages add
//! the attempts, the queued reason and only the tables changed since the
//! previous message. Also [`enqueue`], the one
//! way jobs are created: job row + outbox row in one transaction.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, Stream};
use pgvault_proto::v1 as pb;
use pgvault_proto::v1::job_service_server::JobService;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::access::{self, vault_scope};
use crate::api::convert::{from_timestamp, operation_from_pb, state_from_pb};
use crate::api::job_details::{self, WatchCursor};
use crate::api::{ApiContext, instance_lookup, next_token};
use crate::error::{CoordinatorError, Result};
use crate::model::{Job, JobState};
use crate::names;
use crate::store::jobs::{self, JobFilter, NewJob};
use crate::store::{Store, outbox, paging};

/// How often a watched job is re-read.
const WATCH_POLL: Duration = Duration::from_millis(300);
/// What `ListJobs` covers when no start and not `all` is given.
const DEFAULT_WINDOW: chrono::TimeDelta = chrono::TimeDelta::days(7);

/// Creates a QUEUED job and its outbox row in one transaction, then wakes
/// the dispatcher. (Restores go through `lifecycle::queue::restore`, which
/// also writes their target and waits for a rehydrate when needed.)
pub async fn enqueue(ctx: &ApiContext, new: NewJob) -> Result<Job> {
    enqueue_fanned(ctx, new, 0).await
}

/// [`enqueue`], recording in the same transaction that the backup asked
/// to fan out across `workers` workers (0: not asked).
pub async fn enqueue_fanned(ctx: &ApiContext, new: NewJob, workers: u32) -> Result<Job> {
    let job = ctx
        .store
        .in_tx(move |conn| {
            async move {
                let job = jobs::insert(&mut *conn, &new).await?;
                if workers > 0 {
                    crate::store::chunk_tasks::request_fanout(&mut *conn, job.id, workers).await?;
                }
                outbox::insert(&mut *conn, job.id, job.attempt).await?;
                Ok(job)
            }
            .boxed()
        })
        .await?;
    ctx.dispatch_wake.notify_one();
    Ok(job)
}

pub struct JobApi {
    ctx: Arc<ApiContext>,
}

impl JobApi {
    pub fn new(ctx: Arc<ApiContext>) -> Self {
        JobApi { ctx }
    }

    /// The vault of the job `name` names, for authorisation (a vault role
    /// lets its holder see that vault's jobs). None when there is no such job.
    async fn job_vault(&self, name: &str) -> Result<Option<String>> {
        let Ok(id) = names::parse_job("name", name) else {
            return Ok(None);
        };
        match jobs::get(self.ctx.store.pool(), id).await {
            Ok(job) => Ok(Some(job.vault_id)),
            Err(crate::error::CoordinatorError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn list(&self, req: pb::ListJobsRequest) -> Result<pb::ListJobsResponse> {
        let vault_id = if req.vault.is_empty() {
            None
        } else {
            Some(names::parse_vault("vault", &req.vault)?)
        };
        let backup_instance_id = if req.backup_instance.is_empty() {
            None
        } else {
            Some(
                instance_lookup::instance(
                    self.ctx.store.pool(),
                    "backup_instance",
                    &req.backup_instance,
                )
                .await?
                .1,
            )
        };
        let created_after = match &req.created_after {
            Some(ts) => Some(from_timestamp("created_after", ts)?),
            None if req.all => None,
            // Job rows are stamped by the state database's clock: the
            // window is real time, not the coordinator's (test) clock.
            None => Some(chrono::Utc::now() - DEFAULT_WINDOW),
        };
        let created_before = req
            .created_before
            .as_ref()
            .map(|ts| from_timestamp("created_before", ts))
            .transpose()?;
        if let (Some(after), Some(before)) = (created_after, created_before)
            && after >= before
        {
            return Err(CoordinatorError::invalid(
                "created_before",
                format!("must be later than created_after ({after})"),
            ));
        }
        let filter = JobFilter {
            vault_id,
            backup_instance_id,
            operation: operation_from_pb("operation", req.operation)?,
            state: state_from_pb("state", req.state)?,
            created_after,
            created_before,
        };
        let size = paging::page_size(req.page_size);
        let after = paging::after_time(&req.page_token)?;
        let rows = jobs::list(self.ctx.store.pool(), &filter, after, size + 1).await?;
        let (page, more) = paging::split_page(rows, size);
        let next_page_token = next_token(&page, more, |j| paging::time_token(j.create_time, j.id));
        Ok(pb::ListJobsResponse {
            jobs: page.into_iter().map(pb::Job::from).collect(),
            next_page_token,
        })
    }

    async fn cancel(&self, name: &str) -> Result<Job> {
        let id = names::parse_job("name", name)?;
        let requested = jobs::request_cancel(self.ctx.store.pool(), id).await?;
        let job = jobs::get(self.ctx.store.pool(), id).await?;
        match requested {
            Some(state) => crate::job_span::of("job.cancel", &job).in_scope(|| {
                tracing::info!(state = state.as_str(), "cancel requested");
            }),
            None if job.state != JobState::Cancelling => {
                return Err(CoordinatorError::FailedPrecondition(format!(
                    "job {name} has already ended ({}); only queued or running jobs can be cancelled",
                    job.state.as_str()
                )));
            }
            None => {}
        }
        Ok(job)
    }

    async fn retry(&self, name: &str) -> Result<Job> {
        let id = names::parse_job("name", name)?;
        let job = self
            .ctx
            .store
            .in_tx(move |conn| {
                async move {
                    let Some(attempt) = jobs::retry(&mut *conn, id).await? else {
                        let job = jobs::get(&mut *conn, id).await?;
                        return Err(CoordinatorError::FailedPrecondition(format!(
                            "job {} is {}; only failed or cancelled jobs can be retried",
                            names::job_name(id),
                            job.state.as_str()
                        )));
                    };
                    outbox::insert(&mut *conn, id, attempt).await?;
                    jobs::get(&mut *conn, id).await
                }
                .boxed()
            })
            .await?;
        self.ctx.dispatch_wake.notify_one();
        crate::job_span::of("job.retry", &job).in_scope(|| tracing::info!("job retried"));
        Ok(job)
    }
}

/// Sends the job now and on every change until it is terminal or the client
/// goes away.
async fn watch(
    store: Store,
    id: Uuid,
    first: Job,
    tx: tokio::sync::mpsc::Sender<Result<pb::Job, Status>>,
) {
    let mut last = first;
    let mut cursor = WatchCursor::default();
    if tx
        .send(watched_to_pb(&store, &last, &mut cursor).await)
        .await
        .is_err()
    {
        return;
    }
    while !last.state.is_terminal() {
        tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep(WATCH_POLL) => {}
        }
        let current = match jobs::get(store.pool(), id).await {
            Ok(job) => job,
            Err(error) => {
                drop(tx.send(Err(error.into())).await);
                return;
            }
        };
        if current != last {
            let sent = watched_to_pb(&store, &current, &mut cursor).await;
            if tx.send(sent).await.is_err() {
                return;
            }
            last = current;
        }
    }
}

/// One `WatchJob` message: the job, its attempts and the tables changed
/// since the previous message.
async fn watched_to_pb(
    store: &Store,
    job: &Job,
    cursor: &mut WatchCursor,
) -> Result<pb::Job, Status> {
    let mut out = pb::Job::from(job.clone());
    job_details::add_changes(store, &mut out, job, cursor).await?;
    Ok(out)
}

type JobStream = Pin<Box<dyn Stream<Item = Result<pb::Job, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl JobService for JobApi {
    async fn list_jobs(
        &self,
        request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        access::in_vault(
            &request,
            vault_scope(&request.get_ref().vault)
                .or_else(|| vault_scope(&request.get_ref().backup_instance))
                .as_deref(),
        )?;
        Ok(Response::new(self.list(request.into_inner()).await?))
    }

    async fn get_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        access::in_vault(
            &request,
            self.job_vault(&request.get_ref().name).await?.as_deref(),
        )?;
        let id = names::parse_job("name", &request.get_ref().name)?;
        let job = jobs::get(self.ctx.store.pool(), id).await?;
        let mut out = pb::Job::from(job.clone());
        job_details::add_all(&self.ctx.store, &mut out, &job).await?;
        Ok(Response::new(out))
    }

    type WatchJobStream = JobStream;

    async fn watch_job(
        &self,
        request: Request<pb::WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        access::in_vault(
            &request,
            self.job_vault(&request.get_ref().name).await?.as_deref(),
        )?;
        let id = names::parse_job("name", &request.get_ref().name)?;
        let first = jobs::get(self.ctx.store.pool(), id).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(watch(self.ctx.store.clone(), id, first, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx)) as JobStream))
    }

    async fn cancel_job(
        &self,
        request: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        access::in_vault(
            &request,
            self.job_vault(&request.get_ref().name).await?.as_deref(),
        )?;
        Ok(Response::new(
            self.cancel(&request.get_ref().name).await?.into(),
        ))
    }

    async fn retry_job(
        &self,
        request: Request<pb::RetryJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        access::in_vault(
            &request,
            self.job_vault(&request.get_ref().name).await?.as_deref(),
        )?;
        Ok(Response::new(
            self.retry(&request.get_ref().name).await?.into(),
        ))
    }

    async fn list_dead_letters(
        &self,
        request: Request<pb::ListDeadLettersRequest>,
    ) -> Result<Response<pb::ListDeadLettersResponse>, Status> {
        Ok(Response::new(
            super::dead_letters::list(&self.ctx, request.into_inner()).await?,
        ))
    }

    async fn delete_dead_letter(
        &self,
        request: Request<pb::DeleteDeadLetterRequest>,
    ) -> Result<Response<pb::DeleteDeadLetterResponse>, Status> {
        Ok(Response::new(
            super::dead_letters::delete(&self.ctx, request.into_inner()).await?,
        ))
    }
}
