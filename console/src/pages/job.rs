//! `GET /jobs/{id}`: one job — facts, progress, error with its recommended
//! action, attempts, per-table progress — and, while it runs, the same
//! fragment pushed again on every change: `GET /jobs/{id}/events` follows
//! `WatchJob` and sends each state as a server-sent event of rendered,
//! escaped HTML that the page's script swaps in. Cancel and retry post to
//! `CancelJob` / `RetryJob`.

use std::collections::BTreeMap;
use std::convert::Infallible;

use askama::Template;
use axum::extract::Path;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use pgvault_proto::v1 as pb;
use tokio_stream::wrappers::ReceiverStream;

use crate::api::{Allowed, Api};
use crate::error::ConsoleError;
use crate::format::{self, Badge, TimeView, id_of};
use crate::guard::{PostForm, SignedIn};
use crate::pages::layout::{Nav, instance_href, job_href, restore_href};
use crate::pages::render;

/// Tables shown on the page (the API has them all).
const TABLES_SHOWN: usize = 100;

pub struct Fact {
    pub label: &'static str,
    pub text: String,
    pub href: String,
    pub time: Option<TimeView>,
}

pub struct AttemptRow {
    pub number: u32,
    pub runner: String,
    pub start: Option<TimeView>,
    pub duration: Option<String>,
    pub outcome: Badge,
    pub error: Option<pb::JobError>,
    pub log_tail: Vec<String>,
}

pub struct TableRow {
    pub name: String,
    pub state: Badge,
    pub chunks: String,
    pub rows: String,
    pub size: String,
    pub duration: Option<String>,
}

/// The part of the page that follows the job.
#[derive(Template)]
#[template(path = "job_live.html")]
pub struct JobLive {
    pub id: String,
    pub csrf: String,
    pub state: Badge,
    pub facts: Vec<Fact>,
    pub phase: String,
    pub percent: Option<u64>,
    pub progress: String,
    pub error: Option<pb::JobError>,
    pub warnings: Vec<String>,
    pub attempts: Vec<AttemptRow>,
    pub tables: Vec<TableRow>,
    pub tables_more: usize,
    pub can_cancel: bool,
    pub can_retry: bool,
}

#[derive(Template)]
#[template(path = "job.html")]
struct JobPage {
    nav: Option<Nav>,
    title: String,
    short: String,
    ended: bool,
    live_url: String,
    live: String,
}

fn job_name(id: &str) -> String {
    format!("jobs/{id}")
}

async fn get_job(api: &Api, id: &str) -> Result<pb::Job, ConsoleError> {
    Ok(api
        .jobs()
        .get_job(pb::GetJobRequest { name: job_name(id) })
        .await?
        .into_inner())
}

async fn job_permissions(api: &Api, job: &pb::Job) -> Result<Allowed, ConsoleError> {
    api.permissions(&job.vault, &["CancelJob", "RetryJob"])
        .await
}

pub async fn page(user: SignedIn, Path(id): Path<String>) -> Result<Response, ConsoleError> {
    let job = get_job(&user.api, &id).await?;
    let allowed = job_permissions(&user.api, &job).await?;
    let tables = job.table_progress.clone();
    let live = live(&job, &tables, &allowed, &user.session.csrf)
        .render()
        .map_err(|e| ConsoleError::Internal(format!("cannot render the job: {e}")))?;
    render(&JobPage {
        nav: Nav::new(&user, "jobs"),
        title: format::operation(job.operation).to_string(),
        short: format::short(&job.name),
        ended: format::job_ended(job.state),
        live_url: format!("/jobs/{}/events", id_of(&job.name)),
        live,
    })
}

/// `GET /jobs/{id}/events`: the live fragment as server-sent events
/// (`fragment` on every change, `end` once the job has ended).
pub async fn events(user: SignedIn, Path(id): Path<String>) -> Result<Response, ConsoleError> {
    let first = get_job(&user.api, &id).await?;
    let allowed = job_permissions(&user.api, &first).await?;
    let mut watch = user
        .api
        .jobs()
        .watch_job(pb::WatchJobRequest {
            name: job_name(&id),
        })
        .await?
        .into_inner();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(4);
    let csrf = user.session.csrf.clone();
    tokio::spawn(async move {
        let mut tables = Tables::new(&first);
        loop {
            let job = match watch.message().await {
                Ok(Some(job)) => job,
                Ok(None) => break,
                Err(status) => {
                    tracing::debug!(job = %id, error = %status, "job watch ended");
                    break;
                }
            };
            tables.apply(&job);
            let fragment = live(&job, &tables.list(), &allowed, &csrf);
            let Ok(html) = fragment.render() else { break };
            if tx
                .send(Ok(Event::default().event("fragment").data(html)))
                .await
                .is_err()
            {
                return; // the browser went away
            }
            if format::job_ended(job.state) {
                break;
            }
        }
        let _ = tx
            .send(Ok(Event::default().event("end").data("ended")))
            .await;
    });
    Ok(Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// The table progress of the current attempt, as `WatchJob` deltas arrive.
struct Tables {
    attempt: u32,
    by_name: BTreeMap<String, pb::TableProgress>,
}

impl Tables {
    fn new(job: &pb::Job) -> Tables {
        Tables {
            attempt: job.attempt,
            by_name: job
                .table_progress
                .iter()
                .map(|t| (t.name.clone(), t.clone()))
                .collect(),
        }
    }

    fn apply(&mut self, job: &pb::Job) {
        if job.attempt != self.attempt || !job.table_progress_delta {
            self.attempt = job.attempt;
            self.by_name.clear();
        }
        for table in &job.table_progress {
            self.by_name.insert(table.name.clone(), table.clone());
        }
    }

    fn list(&self) -> Vec<pb::TableProgress> {
        self.by_name.values().cloned().collect()
    }
}

pub async fn cancel(Path(id): Path<String>, form: PostForm) -> Result<Response, ConsoleError> {
    form.user
        .api
        .jobs()
        .cancel_job(pb::CancelJobRequest {
            name: job_name(&id),
        })
        .await?;
    Ok(Redirect::to(&job_href(&id)).into_response())
}

pub async fn retry(Path(id): Path<String>, form: PostForm) -> Result<Response, ConsoleError> {
    form.user
        .api
        .jobs()
        .retry_job(pb::RetryJobRequest {
            name: job_name(&id),
        })
        .await?;
    Ok(Redirect::to(&job_href(&id)).into_response())
}

/// The live fragment of `job` with `tables` (all of the current attempt's).
pub fn live(job: &pb::Job, tables: &[pb::TableProgress], allowed: &Allowed, csrf: &str) -> JobLive {
    use pb::JobState::*;
    let state = pb::JobState::try_from(job.state).unwrap_or(Unspecified);
    let progress = job.progress.clone().unwrap_or_default();
    let percent = (progress.chunks_total > 0).then(|| {
        (u64::from(progress.chunks_done) * 100 / u64::from(progress.chunks_total)).min(100)
    });
    let mut progress_text = Vec::new();
    if progress.chunks_total > 0 {
        progress_text.push(format!(
            "{} of {} chunks",
            progress.chunks_done, progress.chunks_total
        ));
    }
    if progress.bytes_done > 0 {
        progress_text.push(format::bytes(progress.bytes_done));
    }
    if progress.rows_done > 0 {
        progress_text.push(format!("{} rows", format::count(progress.rows_done)));
    }
    let mut sorted: Vec<&pb::TableProgress> = tables.iter().collect();
    sorted.sort_by_key(|t| {
        let urgent = matches!(
            pb::TableState::try_from(t.state),
            Ok(pb::TableState::Running | pb::TableState::Failed)
        );
        (!urgent, std::cmp::Reverse(t.raw_bytes), t.name.clone())
    });
    JobLive {
        id: id_of(&job.name).to_string(),
        csrf: csrf.to_string(),
        state: format::job_state(job.state),
        facts: facts(job),
        phase: progress.phase,
        percent,
        progress: progress_text.join(" · "),
        error: job.error.clone(),
        warnings: job.warnings.clone(),
        attempts: job.attempts.iter().map(attempt_row).collect(),
        tables: sorted
            .iter()
            .take(TABLES_SHOWN)
            .map(|t| table_row(t))
            .collect(),
        tables_more: sorted.len().saturating_sub(TABLES_SHOWN),
        can_cancel: allowed.may("CancelJob") && matches!(state, Queued | InProgress),
        can_retry: allowed.may("RetryJob") && matches!(state, Failed | Cancelled),
    }
}

fn facts(job: &pb::Job) -> Vec<Fact> {
    let text = |label, text: String| Fact {
        label,
        text,
        href: String::new(),
        time: None,
    };
    let at = |label, ts: Option<&prost_types::Timestamp>| Fact {
        label,
        text: String::new(),
        href: String::new(),
        time: format::time(ts),
    };
    let mut facts = vec![
        text("Operation", format::operation(job.operation).into()),
        Fact {
            label: "Backup instance",
            text: format::short(&job.backup_instance),
            href: instance_href(&job.backup_instance),
            time: None,
        },
        text("Vault", id_of(&job.vault).into()),
        at("Created", job.create_time.as_ref()),
        at("Started", job.start_time.as_ref()),
        at("Ended", job.end_time.as_ref()),
    ];
    if let Some(d) = format::elapsed(job.start_time.as_ref(), job.end_time.as_ref()) {
        facts.push(text("Duration", d));
    }
    facts.push(text("Attempt", job.attempt.to_string()));
    let runner = if job.agent.is_empty() {
        &job.worker
    } else {
        &job.agent
    };
    if !runner.is_empty() {
        facts.push(text("Runs on", runner.clone()));
    }
    if !job.queued_reason.is_empty() {
        facts.push(text("Waiting", job.queued_reason.clone()));
    }
    if !job.recovery_point.is_empty() {
        facts.push(Fact {
            label: "Recovery point",
            text: format::short(&job.recovery_point),
            href: restore_href(&job.recovery_point),
            time: None,
        });
    }
    if job.retention_rule != 0 {
        facts.push(text(
            "Retention rule",
            format::rule(job.retention_rule).into(),
        ));
    }
    if !job.target_database.is_empty() {
        facts.push(text(
            "Restored to",
            format!(
                "database {} on {}",
                job.target_database,
                id_of(&job.target_server)
            ),
        ));
    }
    if !job.target_url.is_empty() {
        facts.push(text(
            "Written to",
            format!("{} in {}", job.target_file, job.target_url),
        ));
    }
    if !job.schemas.is_empty() || !job.tables.is_empty() {
        let mut selection = job
            .schemas
            .iter()
            .map(|s| format!("schema {s}"))
            .collect::<Vec<_>>();
        selection.extend(job.tables.iter().cloned());
        facts.push(text("Selection", selection.join(", ")));
    }
    if job.output_size > 0 {
        facts.push(text(
            "Output",
            format!(
                "{} · SHA-256 {}",
                format::bytes(job.output_size),
                job.output_sha256
            ),
        ));
    }
    facts
}

fn attempt_row(a: &pb::JobAttempt) -> AttemptRow {
    AttemptRow {
        number: a.attempt,
        runner: if a.agent.is_empty() {
            a.worker.clone()
        } else {
            a.agent.clone()
        },
        start: format::time(a.start_time.as_ref()),
        duration: format::elapsed(a.start_time.as_ref(), a.end_time.as_ref()),
        outcome: format::attempt_outcome(a.outcome),
        error: a.error.clone(),
        log_tail: a.log_tail.clone(),
    }
}

fn table_row(t: &pb::TableProgress) -> TableRow {
    TableRow {
        name: t.name.clone(),
        state: format::table_state(t.state),
        chunks: format!("{} / {}", t.chunks_done, t.chunks_total),
        rows: format::count(t.rows),
        size: format::bytes(t.raw_bytes),
        duration: format::elapsed(t.start_time.as_ref(), t.end_time.as_ref()),
    }
}
