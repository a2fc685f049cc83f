//! `pgvault job list|show|watch|cancel|retry|dead-letters`, and how a job reads in tables
//! (shared with the `--wait` of `backup now` and `restore`).

use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use pgvault_proto::v1::{
    CancelJobRequest, GetJobRequest, Job, JobState, ListJobsRequest, Operation, RetryJobRequest,
};

use super::connect::{Api, Reply};
use super::output::{
    bytes, duration_between, local_time, or_dash, print_details, print_json, print_list,
};
use super::recovery_point::tag_text;
use super::{job_details, job_time, json, names, watch, when};

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// List jobs of the last 7 days (or --since/--until, or --all), newest first, one page at a time.
    #[command(after_help = "Examples:\n  \
        pgvault job list --vault prod --state failed\n  \
        pgvault job list --since 36h --operation scheduled-backup\n  \
        pgvault job list --all --until 2026-01-01\n  \
        pgvault job list --instance prod/db1-orders --operation on-demand-backup --page-size 20")]
    List {
        /// Only jobs of this vault.
        #[arg(long)]
        vault: Option<String>,
        /// Only jobs of this backup instance: VAULT/NAME, its id with --vault, or its full name.
        #[arg(long)]
        instance: Option<String>,
        /// Only jobs of this operation.
        #[arg(long, value_enum)]
        operation: Option<OperationArg>,
        /// Only jobs in this state.
        #[arg(long, value_enum)]
        state: Option<StateArg>,
        /// Only jobs created since: an age (30m, 36h, 2d, 3w), a date or an RFC 3339 instant.
        #[arg(long, value_name = "WHEN", conflicts_with = "all")]
        since: Option<String>,
        /// Only jobs created before: an age, a date or an RFC 3339 instant.
        #[arg(long, value_name = "WHEN")]
        until: Option<String>,
        /// Every job however old (the default is the last 7 days).
        #[arg(long)]
        all: bool,
        /// Jobs per page (server default when omitted).
        #[arg(long, value_name = "N")]
        page_size: Option<u32>,
        /// Page to fetch: the token printed after the previous page.
        #[arg(long, value_name = "TOKEN")]
        page_token: Option<String>,
    },
    /// Show one job, with its progress or error.
    Show {
        /// Job id (or "jobs/{id}").
        job: String,
    },
    /// Follow a job until it ends; exit code 0 when it completed, 1 when it failed or was cancelled.
    #[command(after_help = "Example:\n  pgvault job watch 0197c1e9-8d1f")]
    Watch {
        /// Job id (or "jobs/{id}").
        job: String,
    },
    /// Stop a queued or running job; its worker closes its connections and uploads, partial objects are deleted.
    #[command(
        after_help = "Examples:\n  pgvault job cancel 0197c1e9-8d1f\n  pgvault job cancel 0197c1e9-8d1f --wait"
    )]
    Cancel {
        /// Job id (or "jobs/{id}").
        job: String,
        /// Wait until the job has stopped.
        #[arg(long)]
        wait: bool,
    },
    /// Run a failed or cancelled job again (a new attempt of the same job, with a fresh attempt budget).
    #[command(after_help = "Example:\n  pgvault job retry 0197c1e9-8d1f --wait")]
    Retry {
        /// Job id (or "jobs/{id}").
        job: String,
        /// Follow the job until it ends.
        #[arg(long)]
        wait: bool,
    },
    /// List task messages the queue gave up on (dead letters), newest first; `delete ID` forgets one.
    #[command(
        name = "dead-letters",
        args_conflicts_with_subcommands = true,
        after_help = "Examples:\n  \
        pgvault job dead-letters\n  \
        pgvault --output json job dead-letters\n  \
        pgvault job dead-letters delete 0197c1f0-4b7e"
    )]
    DeadLetters {
        #[command(subcommand)]
        action: Option<super::dead_letters::DeadLetterAction>,
        /// Dead letters per page (server default when omitted).
        #[arg(long, value_name = "N")]
        page_size: Option<u32>,
        /// Page to fetch: the token printed after the previous page.
        #[arg(long, value_name = "TOKEN")]
        page_token: Option<String>,
    },
}

/// `--operation` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OperationArg {
    ScheduledBackup,
    OnDemandBackup,
    Restore,
    TierMove,
    Rehydrate,
    Delete,
    Verify,
}

impl From<OperationArg> for Operation {
    fn from(value: OperationArg) -> Self {
        match value {
            OperationArg::ScheduledBackup => Self::ScheduledBackup,
            OperationArg::OnDemandBackup => Self::OnDemandBackup,
            OperationArg::Restore => Self::Restore,
            OperationArg::TierMove => Self::TierMove,
            OperationArg::Rehydrate => Self::Rehydrate,
            OperationArg::Delete => Self::Delete,
            OperationArg::Verify => Self::Verify,
        }
    }
}

/// `--state` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateArg {
    Queued,
    InProgress,
    Completed,
    CompletedWithWarnings,
    Failed,
    Cancelling,
    Cancelled,
}

impl From<StateArg> for JobState {
    fn from(value: StateArg) -> Self {
        match value {
            StateArg::Queued => Self::Queued,
            StateArg::InProgress => Self::InProgress,
            StateArg::Completed => Self::Completed,
            StateArg::CompletedWithWarnings => Self::CompletedWithWarnings,
            StateArg::Failed => Self::Failed,
            StateArg::Cancelling => Self::Cancelling,
            StateArg::Cancelled => Self::Cancelled,
        }
    }
}

pub async fn run(api: &Api, command: JobCommand) -> anyhow::Result<ExitCode> {
    match command {
        JobCommand::List {
            vault,
            instance,
            operation,
            state,
            since,
            until,
            all,
            page_size,
            page_token,
        } => {
            let now = chrono::Utc::now();
            let time = |flag: &str, text: Option<String>| {
                text.map(|t| {
                    when::parse(&t, now)
                        .map(convert_time)
                        .map_err(|e| anyhow::anyhow!("--{flag}: {e}"))
                })
                .transpose()
            };
            let request = ListJobsRequest {
                vault: vault
                    .as_deref()
                    .map(names::vault)
                    .transpose()?
                    .unwrap_or_default(),
                backup_instance: instance
                    .as_deref()
                    .map(|i| names::instance(vault.as_deref(), i))
                    .transpose()?
                    .unwrap_or_default(),
                operation: operation.map_or(Operation::Unspecified, Operation::from) as i32,
                state: state.map_or(JobState::Unspecified, JobState::from) as i32,
                page_size: page_size.unwrap_or(0),
                page_token: page_token.unwrap_or_default(),
                created_after: time("since", since)?,
                created_before: time("until", until)?,
                all,
            };
            let page = api.jobs().list_jobs(request).await.reply(api)?;
            if api.json() {
                print_json(&json::page(
                    "jobs",
                    page.jobs.iter().map(json::job).collect(),
                    &page.next_page_token,
                ));
            } else {
                print_list(
                    &[
                        "JOB",
                        "OPERATION",
                        "STATE",
                        "VAULT",
                        "INSTANCE",
                        "CREATED",
                        "DURATION",
                        "ERROR",
                    ],
                    page.jobs.iter().map(list_row).collect(),
                    "no jobs",
                );
                if !page.next_page_token.is_empty() {
                    eprintln!(
                        "more jobs: repeat with --page-token {}",
                        page.next_page_token
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        JobCommand::Show { job } => {
            let job = api
                .jobs()
                .get_job(GetJobRequest {
                    name: names::job(&job)?,
                })
                .await
                .reply(api)?;
            if api.json() {
                print_json(&json::job(&job));
            } else {
                print_details(&details(&job));
                if let Some(attempts) = job_details::attempts_table(&job) {
                    println!("\nATTEMPTS\n{attempts}");
                }
                if let Some(tails) = job_details::log_tails(&job) {
                    println!("\n{tails}");
                }
                if let Some(tables) = job_details::tables_table(&job) {
                    println!("\nTABLES\n{tables}");
                }
                if let Some(chunks) = super::job_fanout::section(&job) {
                    println!("\nCHUNKS\n{chunks}");
                }
                if let Some(time) = job_time::section(&job) {
                    println!("\nWHERE THE TIME WENT\n{time}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        JobCommand::Watch { job } => watch::follow(api, names::job(&job)?).await,
        JobCommand::Cancel { job, wait } => {
            let job = api
                .jobs()
                .cancel_job(CancelJobRequest {
                    name: names::job(&job)?,
                })
                .await
                .reply(api)?;
            if wait {
                return watch::follow(api, job.name).await;
            }
            if api.json() {
                print_json(&json::job(&job));
            } else {
                println!("{} {}", state_text(job.state), job.name);
            }
            Ok(ExitCode::SUCCESS)
        }
        JobCommand::Retry { job, wait } => {
            let job = api
                .jobs()
                .retry_job(RetryJobRequest {
                    name: names::job(&job)?,
                })
                .await
                .reply(api)?;
            watch::started(api, job, wait).await
        }
        JobCommand::DeadLetters {
            action,
            page_size,
            page_token,
        } => super::dead_letters::run(api, action, page_size, page_token).await,
    }
}

fn convert_time(time: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn list_row(job: &Job) -> Vec<String> {
    vec![
        names::short(&job.name).to_owned(),
        operation_text(job.operation).to_owned(),
        state_text(job.state).to_owned(),
        or_dash(names::short(&job.vault)),
        or_dash(if job.backup_instance_short_name.is_empty() {
            names::short(&job.backup_instance)
        } else {
            &job.backup_instance_short_name
        }),
        local_time(job.create_time.as_ref()),
        or_dash(&duration_between(
            job.start_time.as_ref(),
            job.end_time.as_ref(),
        )),
        or_dash(job.error.as_ref().map_or("", |e| e.code.as_str())),
    ]
}

/// Every non-empty fact about a job, labelled for people.
pub fn details(job: &Job) -> Vec<(&'static str, String)> {
    let progress = job.progress.clone().unwrap_or_default();
    let error = job.error.clone().unwrap_or_default();
    let target = match (job.target_server.is_empty(), job.target_database.is_empty()) {
        _ if !job.target_url.is_empty() => output_location(job),
        (true, true) => String::new(),
        (true, false) => job.target_database.clone(),
        _ => format!(
            "{} / {}",
            names::short(&job.target_server),
            job.target_database
        ),
    };
    let chunks = if progress.chunks_total > 0 {
        format!("{}/{}", progress.chunks_done, progress.chunks_total)
    } else if progress.chunks_done > 0 {
        progress.chunks_done.to_string()
    } else {
        String::new()
    };
    let nonzero = |n: u64, text: String| if n > 0 { text } else { String::new() };
    vec![
        ("JOB", job.name.clone()),
        ("OPERATION", operation_text(job.operation).to_owned()),
        ("STATE", state_text(job.state).to_owned()),
        ("VAULT", names::short(&job.vault).to_owned()),
        ("INSTANCE", job.backup_instance.clone()),
        (
            "INSTANCE NAME",
            if job.backup_instance_short_name.is_empty() {
                String::new()
            } else {
                names::typed_instance(&job.backup_instance, &job.backup_instance_short_name)
            },
        ),
        ("RECOVERY POINT", job.recovery_point.clone()),
        ("TARGET", target),
        (
            "RETENTION",
            Some(tag_text(job.retention_rule))
                .filter(|t| t != "-")
                .unwrap_or_default(),
        ),
        (
            "ATTEMPT",
            nonzero(u64::from(job.attempt), job.attempt.to_string()),
        ),
        ("WORKER", job.worker.clone()),
        ("AGENT", names::short(&job.agent).to_owned()),
        ("WAITING", job.queued_reason.clone()),
        ("CREATED", local_time(job.create_time.as_ref())),
        (
            "STARTED",
            if job.start_time.is_some() {
                local_time(job.start_time.as_ref())
            } else {
                String::new()
            },
        ),
        (
            "ENDED",
            if job.end_time.is_some() {
                local_time(job.end_time.as_ref())
            } else {
                String::new()
            },
        ),
        (
            "DURATION",
            duration_between(job.start_time.as_ref(), job.end_time.as_ref()),
        ),
        ("PHASE", progress.phase.clone()),
        ("CHUNKS", chunks),
        (
            "BYTES",
            nonzero(progress.bytes_done, bytes(progress.bytes_done)),
        ),
        (
            "ROWS",
            nonzero(progress.rows_done, progress.rows_done.to_string()),
        ),
        ("SELECTION", selection_text(job)),
        (
            "OUTPUT",
            nonzero(
                job.output_size,
                format!("{} sha256 {}", bytes(job.output_size), job.output_sha256),
            ),
        ),
        ("WARNINGS", job.warnings.join("\n")),
        ("ERROR CODE", error.code),
        ("ERROR", error.message),
        ("RECOMMENDED ACTION", error.recommended_action),
        ("REQUESTED BY", job.requested_by.clone()),
        ("AUTO-INCLUDED", auto_include_text(job)),
        ("TRACE ID", job.trace_id.clone()),
    ]
}

/// "first backup of a database found on server db1 (protected whole) by
/// its pass of SLOT" for such a backup; empty otherwise.
fn auto_include_text(job: &Job) -> String {
    match &job.auto_include {
        Some(found) => format!(
            "first backup of a database the auto-include pass of server {} (protected whole) found at slot {}",
            names::short(&found.server),
            local_time(found.slot_time.as_ref())
        ),
        None => String::new(),
    }
}

/// Where a restore as files writes: the destination URL and the file in it.
pub fn output_location(job: &Job) -> String {
    format!(
        "{}/{}",
        job.target_url.trim_end_matches('/'),
        job.target_file
    )
}

/// "schemas a, b; tables s.t" for a selective restore; empty otherwise.
fn selection_text(job: &Job) -> String {
    let mut parts = Vec::new();
    if !job.schemas.is_empty() {
        parts.push(format!("schemas {}", job.schemas.join(", ")));
    }
    if !job.tables.is_empty() {
        parts.push(format!("tables {}", job.tables.join(", ")));
    }
    parts.join("; ")
}

pub fn state_text(state: i32) -> &'static str {
    match JobState::try_from(state) {
        Ok(JobState::Queued) => "queued",
        Ok(JobState::InProgress) => "in progress",
        Ok(JobState::Completed) => "completed",
        Ok(JobState::CompletedWithWarnings) => "completed with warnings",
        Ok(JobState::Failed) => "failed",
        Ok(JobState::Cancelling) => "cancelling",
        Ok(JobState::Cancelled) => "cancelled",
        _ => "unknown",
    }
}

pub fn operation_text(operation: i32) -> &'static str {
    match Operation::try_from(operation) {
        Ok(Operation::ScheduledBackup) => "scheduled backup",
        Ok(Operation::OnDemandBackup) => "on-demand backup",
        Ok(Operation::Restore) => "restore",
        Ok(Operation::TierMove) => "tier move",
        Ok(Operation::Rehydrate) => "rehydrate",
        Ok(Operation::Delete) => "delete",
        Ok(Operation::Verify) => "verify",
        Ok(Operation::Drill) => "drill",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use pgvault_proto::v1::{JobError, Progress};

    use super::*;

    #[test]
    fn the_first_backup_of_an_auto_included_database_says_so() {
        let job = Job {
            name: "jobs/j2".into(),
            operation: Operation::ScheduledBackup as i32,
            auto_include: Some(pgvault_proto::v1::AutoInclude {
                server: "servers/db1".into(),
                slot_time: Some(pgvault_proto::Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 0,
                }),
            }),
            ..Default::default()
        };
        let fields = details(&job);
        let line = fields
            .iter()
            .find(|(l, _)| *l == "AUTO-INCLUDED")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        assert!(
            line.starts_with(
                "first backup of a database the auto-include pass of server db1 (protected whole) found at slot "
            ),
            "{line}"
        );
        let json = json::job(&job);
        assert_eq!(json["auto_include"]["server"], "servers/db1");
    }

    #[test]
    fn details_of_a_failed_restore() {
        let job = Job {
            name: "jobs/j1".into(),
            operation: Operation::Restore as i32,
            state: JobState::Failed as i32,
            vault: "vaults/prod".into(),
            target_server: "servers/db2".into(),
            target_database: "orders_copy".into(),
            progress: Some(Progress {
                chunks_done: 3,
                chunks_total: 8,
                bytes_done: 2048,
                ..Default::default()
            }),
            error: Some(JobError {
                code: pgvault_errors::ErrorCode::UserErrorDatabaseNameAlreadyInUse.to_string(),
                message: "database \"orders_copy\" already exists".into(),
                recommended_action: "choose another --target-database".into(),
            }),
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            requested_by: "ops-token".into(),
            ..Default::default()
        };
        let fields = details(&job);
        let get = |label: &str| {
            fields
                .iter()
                .find(|(l, _)| *l == label)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        assert_eq!(get("STATE"), "failed");
        assert_eq!(get("OPERATION"), "restore");
        assert_eq!(get("TARGET"), "db2 / orders_copy");
        assert_eq!(get("CHUNKS"), "3/8");
        assert_eq!(get("BYTES"), "2.00 KiB");
        assert_eq!(get("ERROR CODE"), "UserErrorDatabaseNameAlreadyInUse");
        assert_eq!(
            get("RECOMMENDED ACTION"),
            "choose another --target-database"
        );
        assert_eq!(get("RETENTION"), "");
        assert_eq!(get("ROWS"), "");
        assert_eq!(get("TRACE ID"), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(get("REQUESTED BY"), "ops-token");
        assert_eq!(get("AUTO-INCLUDED"), "");
        assert_eq!(
            (get("AGENT"), get("WAITING")),
            (String::new(), String::new())
        );
    }

    #[test]
    fn a_queued_job_of_an_agent_says_what_it_waits_for() {
        let job = Job {
            state: JobState::Queued as i32,
            agent: "agents/dc1".into(),
            queued_reason: "waiting for agent dc1, last seen 2026-12-04T12:03:11Z".into(),
            ..Default::default()
        };
        let fields = details(&job);
        let get = |label: &str| {
            fields
                .iter()
                .find(|(l, _)| *l == label)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("AGENT"), Some("dc1"));
        assert_eq!(
            get("WAITING"),
            Some("waiting for agent dc1, last seen 2026-12-04T12:03:11Z")
        );
    }

    #[test]
    fn list_row_uses_short_ids() {
        let job = Job {
            name: "jobs/j2".into(),
            operation: Operation::OnDemandBackup as i32,
            state: JobState::Completed as i32,
            vault: "vaults/prod".into(),
            backup_instance: "vaults/prod/backupInstances/inst".into(),
            ..Default::default()
        };
        let row = list_row(&job);
        assert_eq!(
            &row[..5],
            ["j2", "on-demand backup", "completed", "prod", "inst"]
        );
        assert_eq!(row[7], "-");
    }
}
