//! `GET /jobs/{id}`: one job — facts, progress, error with its recommended
//! action, attempts, per-table progress — and, while it runs, the same
//! fragment pushed again on every change: `GET /jobs/{id}/events` follows
//! `WatchJob` and sends each state as a server-sent event of rendered,
//! escaped HTML that the page's script swaps in. The stream says `end`
//! only once the job has reached a final state; when the watch breaks off
//! before that (a database error, a coordinator restarting) the response
//! just ends and the browser reconnects. It stops with `session` as soon
//! as the session is gone (sign-out, expiry), checked before every event
//! and every [`SESSION_RECHECK`]. Cancel and retry post to `CancelJob` /
//! `RetryJob`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use pgvault_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::api::{Allowed, Api};
use crate::error::ConsoleError;
use crate::format::{self, Badge, TimeView, id_of};
use crate::guard::{PostForm, SignedIn};
use crate::pages::layout::{Nav, instance_href, job_href, restore_href};
use crate::pages::{AppState, render};
use crate::session::Sessions;

/// Tables shown on the page (the API has them all).
const TABLES_SHOWN: usize = 100;

/// How often a live job stream checks that its session still exists while
/// the job sends nothing.
pub const SESSION_RECHECK: Duration = Duration::from_secs(15);

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

/// "shop on pg1" for the job's instance (its short name or id if it is gone).
async fn instance_of(api: &Api, job: &pb::Job) -> String {
    if job.backup_instance.is_empty() {
        return String::new();
    }
    match crate::pages::instance::get_instance(api, &job.backup_instance).await {
        Ok(instance) => crate::pages::lookup::instance_label(&instance),
        Err(_) => crate::pages::jobs::fallback_label(job),
    }
}

pub async fn page(user: SignedIn, Path(id): Path<String>) -> Result<Response, ConsoleError> {
    let job = get_job(&user.api, &id).await?;
    let allowed = job_permissions(&user.api, &job).await?;
    let instance = instance_of(&user.api, &job).await;
    let tables = job.table_progress.clone();
    let live = live(&job, &instance, &tables, &allowed, &user.session.csrf)
        .render()
        .map_err(|e| ConsoleError::Internal(format!("cannot render the job: {e}")))?;
    render(&JobPage {
        nav: Nav::new(&user, "jobs"),
        title: if instance.is_empty() {
            format::operation(job.operation).to_string()
        } else {
            format!("{} of {instance}", format::operation(job.operation))
        },
        short: format::short(&job.name),
        ended: format::job_ended(job.state),
        live_url: format!("/jobs/{}/events", id_of(&job.name)),
        live,
    })
}

/// `GET /jobs/{id}/events`: the live fragment as server-sent events
/// (`fragment` on every change; `end` once the job has ended; `session`
/// when the session is gone). A response that ends with neither was cut
/// short, and the browser's `EventSource` reconnects.
pub async fn events(
    State(app): State<AppState>,
    user: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let first = get_job(&user.api, &id).await?;
    let allowed = job_permissions(&user.api, &first).await?;
    let instance = instance_of(&user.api, &first).await;
    let watch = user
        .api
        .jobs()
        .watch_job(pb::WatchJobRequest {
            name: job_name(&id),
        })
        .await?
        .into_inner();
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(4);
    let follow = Follow {
        id,
        api: user.api,
        sessions: app.sessions,
        session: user.session.id,
        csrf: user.session.csrf,
        instance,
        allowed,
        tx,
    };
    tokio::spawn(follow.run(first, watch));
    Ok(Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// One live job stream: what it renders with, and how it knows to stop.
struct Follow {
    id: String,
    api: Api,
    sessions: Arc<Sessions>,
    /// The id of the session that opened the stream.
    session: String,
    csrf: String,
    instance: String,
    allowed: Allowed,
    tx: mpsc::Sender<Result<Event, Infallible>>,
}

/// Why a live job stream stopped.
enum Stop {
    /// The job reached a final state: say `end`.
    Ended,
    /// The session is gone: say `session`.
    SignedOut,
    /// The watch broke off while the job runs: end the response without a
    /// word, so the browser reconnects.
    Interrupted,
    /// The browser went away.
    Gone,
}

impl Follow {
    async fn run(self, first: pb::Job, mut watch: tonic::Streaming<pb::Job>) {
        let mut tables = Tables::new(&first);
        let start = tokio::time::Instant::now() + SESSION_RECHECK;
        let mut recheck = tokio::time::interval_at(start, SESSION_RECHECK);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stop = loop {
            let message = tokio::select! {
                _ = self.tx.closed() => break Stop::Gone,
                _ = recheck.tick() => {
                    if self.signed_in() {
                        continue;
                    }
                    break Stop::SignedOut;
                }
                message = watch.message() => message,
            };
            if !self.signed_in() {
                break Stop::SignedOut;
            }
            let (job, ended) = match message {
                Ok(Some(job)) if !format::job_ended(job.state) => (job, false),
                // WatchJob sends table changes; the final state shows them
                // all (a table may finish before the stream first reports it).
                Ok(Some(job)) => (get_job(&self.api, &self.id).await.unwrap_or(job), true),
                // The watch ended early: the job may have ended meanwhile.
                Ok(None) => match self.ended_meanwhile("the watch closed").await {
                    Some(job) => (job, true),
                    None => break Stop::Interrupted,
                },
                Err(status) => match self.ended_meanwhile(status.message()).await {
                    Some(job) => (job, true),
                    None => break Stop::Interrupted,
                },
            };
            tables.apply(&job);
            let fragment = live(
                &job,
                &self.instance,
                &tables.list(),
                &self.allowed,
                &self.csrf,
            );
            let html = match fragment.render() {
                Ok(html) => html,
                Err(error) => {
                    tracing::warn!(job = %self.id, error = %error, "cannot render the live job fragment");
                    break Stop::Interrupted;
                }
            };
            if !self.send("fragment", html).await {
                break Stop::Gone;
            }
            if ended {
                break Stop::Ended;
            }
        };
        let last = match stop {
            Stop::Ended => ("end", "ended"),
            Stop::SignedOut => ("session", "ended"),
            Stop::Interrupted | Stop::Gone => return,
        };
        self.send(last.0, last.1.into()).await;
    }

    /// Whether the session that opened the stream still exists.
    fn signed_in(&self) -> bool {
        self.sessions.is_live(&self.session)
    }

    /// After the watch broke off (`why`): the job, if it has ended since.
    async fn ended_meanwhile(&self, why: &str) -> Option<pb::Job> {
        tracing::debug!(job = %self.id, error = %why, "job watch ended early");
        get_job(&self.api, &self.id)
            .await
            .ok()
            .filter(|job| format::job_ended(job.state))
    }

    /// Sends event `name`; false once the browser has gone.
    async fn send(&self, name: &str, data: String) -> bool {
        let event = Event::default().event(name).data(data);
        self.tx.send(Ok(event)).await.is_ok()
    }
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

    /// Takes a message in: a full list (`GetJob`) replaces the tables, a
    /// delta (`WatchJob`) updates them; a new attempt starts over.
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

/// The live fragment of `job` (of `instance`, as a page names it) with
/// `tables` (all of the current attempt's).
pub fn live(
    job: &pb::Job,
    instance: &str,
    tables: &[pb::TableProgress],
    allowed: &Allowed,
    csrf: &str,
) -> JobLive {
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
        facts: facts(job, instance),
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

fn facts(job: &pb::Job, instance: &str) -> Vec<Fact> {
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
            label: "Database",
            text: instance.to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, state: pb::TableState, raw_bytes: u64) -> pb::TableProgress {
        pb::TableProgress {
            name: name.into(),
            state: state as i32,
            raw_bytes,
            ..Default::default()
        }
    }

    #[test]
    fn watch_deltas_update_the_full_list_until_a_new_attempt_begins() {
        let mut job = pb::Job {
            attempt: 1,
            table_progress: vec![
                table("a", pb::TableState::Queued, 10),
                table("b", pb::TableState::Queued, 20),
            ],
            ..Default::default()
        };
        let mut tables = Tables::new(&job);
        job.table_progress = vec![table("a", pb::TableState::Done, 10)];
        job.table_progress_delta = true;
        tables.apply(&job);
        let states: Vec<(String, i32)> = tables
            .list()
            .into_iter()
            .map(|t| (t.name, t.state))
            .collect();
        assert_eq!(
            states,
            [
                ("a".to_string(), pb::TableState::Done as i32),
                ("b".to_string(), pb::TableState::Queued as i32)
            ]
        );
        job.attempt = 2;
        job.table_progress = vec![table("b", pb::TableState::Running, 20)];
        tables.apply(&job);
        assert_eq!(tables.list().len(), 1, "a new attempt starts a new list");
    }

    #[test]
    fn running_and_failed_tables_come_first_then_the_largest() {
        let job = pb::Job {
            name: "jobs/j".into(),
            state: pb::JobState::InProgress as i32,
            ..Default::default()
        };
        let tables = [
            table("small", pb::TableState::Done, 1),
            table("big", pb::TableState::Done, 100),
            table("now", pb::TableState::Running, 5),
        ];
        let fragment = live(&job, "shop on pg1", &tables, &Allowed::default(), "csrf");
        let order: Vec<&str> = fragment.tables.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(order, ["now", "big", "small"]);
        assert!(!fragment.can_cancel, "not allowed: no cancel button");
        let html = fragment.render().expect("renders");
        assert!(!html.contains("cancel-job"));
        assert!(html.contains("shop on pg1"));
    }
}
