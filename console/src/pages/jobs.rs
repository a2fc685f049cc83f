//! `GET /jobs`: the jobs dashboard. The last 7 days by default; filters by
//! vault, backup instance, operation, state and time (a quick range or
//! dates, UTC); 50 jobs a page, following the API's page tokens. All of it
//! is `ListJobs` with the user's token.

use std::collections::HashMap;

use askama::Template;
use axum::extract::Query;
use axum::response::Response;
use chrono::{Duration, NaiveDate, Utc};
use pgvault_proto::v1 as pb;
use serde::Deserialize;

use crate::error::ConsoleError;
use crate::format::{self, Badge, TimeView, id_of, query_escape};
use crate::guard::SignedIn;
use crate::pages::layout::{Nav, instance_href, job_href, vault_href};
use crate::pages::lookup::{self, instance_label, or_denied};
use crate::pages::render;

const PAGE_SIZE: u32 = 50;

/// The dashboard's filters, as they travel in the URL.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct JobsQuery {
    /// Vault id.
    pub vault: String,
    /// Backup instance name (`vaults/{v}/backupInstances/{i}`).
    pub instance: String,
    /// `OPERATION_…` as the API names it.
    pub operation: String,
    /// `JOB_STATE_…` as the API names it.
    pub state: String,
    /// `24h`, `7d` (default), `30d` or `all`; ignored where dates are given.
    pub range: String,
    /// First and last day (UTC, `YYYY-MM-DD`), both optional.
    pub from: String,
    pub to: String,
    /// The API's page token.
    pub page: String,
}

pub struct JobRow {
    pub href: String,
    pub short: String,
    pub operation: &'static str,
    pub state: Badge,
    pub vault: String,
    pub vault_href: String,
    pub instance: String,
    pub instance_href: String,
    pub created: Option<TimeView>,
    pub duration: Option<String>,
    pub size: String,
    pub code: String,
}

/// An option of a filter's `<select>`.
pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "jobs.html")]
struct JobsPage {
    nav: Option<Nav>,
    filters: JobsQuery,
    vaults: Vec<Choice>,
    instances: Vec<Choice>,
    operations: Vec<Choice>,
    states: Vec<Choice>,
    ranges: Vec<Choice>,
    window: String,
    jobs: Vec<JobRow>,
    next_href: String,
    first_href: String,
}

pub async fn page(user: SignedIn, Query(q): Query<JobsQuery>) -> Result<Response, ConsoleError> {
    let api = &user.api;
    let (created_after, created_before, all, window) = window(&q)?;
    let request = pb::ListJobsRequest {
        vault: if q.vault.is_empty() {
            String::new()
        } else {
            format!("vaults/{}", q.vault)
        },
        backup_instance: q.instance.clone(),
        operation: enum_value(&q.operation, pb::Operation::from_str_name, "operation")?,
        state: enum_value(&q.state, pb::JobState::from_str_name, "state")?,
        page_size: PAGE_SIZE,
        page_token: q.page.clone(),
        created_after,
        created_before,
        all,
    };
    let listed = api.jobs().list_jobs(request).await?.into_inner();
    let (vaults, _) = or_denied(lookup::vaults(api).await)?;
    let (instances, _) = or_denied(lookup::instances(api, "vaults/-").await)?;
    let labels: HashMap<&str, String> = instances
        .iter()
        .map(|i| (i.name.as_str(), instance_label(i)))
        .collect();
    let jobs = listed
        .jobs
        .iter()
        .map(|job| job_row(job, &labels))
        .collect();
    let next_href = if listed.next_page_token.is_empty() {
        String::new()
    } else {
        href(&q, &listed.next_page_token)
    };
    let page = JobsPage {
        nav: Nav::new(&user, "jobs"),
        vaults: choices(
            vaults.iter().map(|v| {
                let id = id_of(&v.name).to_string();
                (id.clone(), id)
            }),
            &q.vault,
        ),
        instances: choices(
            instances
                .iter()
                .map(|i| (i.name.clone(), instance_label(i))),
            &q.instance,
        ),
        operations: choices(
            OPERATIONS.iter().map(|op| {
                (
                    op.as_str_name().to_string(),
                    format::operation(*op as i32).to_string(),
                )
            }),
            &q.operation,
        ),
        states: choices(
            STATES.iter().map(|s| {
                (
                    s.as_str_name().to_string(),
                    format::job_state(*s as i32).text.to_string(),
                )
            }),
            &q.state,
        ),
        ranges: choices(
            RANGES.iter().map(|(v, l)| (v.to_string(), l.to_string())),
            if q.range.is_empty() { "7d" } else { &q.range },
        ),
        window,
        first_href: href(&q, ""),
        filters: q,
        jobs,
        next_href,
    };
    render(&page)
}

/// How a job's instance is shown when it is not among the listed ones:
/// its short name, else its id.
pub fn fallback_label(job: &pb::Job) -> String {
    if job.backup_instance_short_name.is_empty() {
        format::short(&job.backup_instance)
    } else {
        job.backup_instance_short_name.clone()
    }
}

pub fn job_row(job: &pb::Job, labels: &HashMap<&str, String>) -> JobRow {
    let progress = job.progress.as_ref();
    JobRow {
        href: job_href(&job.name),
        short: format::short(&job.name),
        operation: format::operation(job.operation),
        state: format::job_state(job.state),
        vault: id_of(&job.vault).to_string(),
        vault_href: vault_href(&job.vault),
        instance: labels
            .get(job.backup_instance.as_str())
            .cloned()
            .unwrap_or_else(|| fallback_label(job)),
        instance_href: instance_href(&job.backup_instance),
        created: format::time(job.create_time.as_ref()),
        duration: format::elapsed(job.start_time.as_ref(), job.end_time.as_ref()),
        size: progress
            .filter(|p| p.bytes_done > 0)
            .map(|p| format::bytes(p.bytes_done))
            .unwrap_or_default(),
        code: job
            .error
            .as_ref()
            .map(|e| e.code.clone())
            .unwrap_or_default(),
    }
}

const OPERATIONS: [pb::Operation; 8] = [
    pb::Operation::ScheduledBackup,
    pb::Operation::OnDemandBackup,
    pb::Operation::Restore,
    pb::Operation::TierMove,
    pb::Operation::Rehydrate,
    pb::Operation::Delete,
    pb::Operation::Verify,
    pb::Operation::Drill,
];

const STATES: [pb::JobState; 7] = [
    pb::JobState::Queued,
    pb::JobState::InProgress,
    pb::JobState::Completed,
    pb::JobState::CompletedWithWarnings,
    pb::JobState::Failed,
    pb::JobState::Cancelling,
    pb::JobState::Cancelled,
];

const RANGES: [(&str, &str); 4] = [
    ("24h", "Last 24 hours"),
    ("7d", "Last 7 days"),
    ("30d", "Last 30 days"),
    ("all", "All time"),
];

fn choices(options: impl Iterator<Item = (String, String)>, selected: &str) -> Vec<Choice> {
    options
        .map(|(value, label)| Choice {
            selected: value == selected,
            value,
            label,
        })
        .collect()
}

/// An enum filter by its API name; `""` is any.
fn enum_value<E: Into<i32>>(
    name: &str,
    parse: fn(&str) -> Option<E>,
    field: &str,
) -> Result<i32, ConsoleError> {
    if name.is_empty() {
        return Ok(0);
    }
    parse(name).map(Into::into).ok_or_else(|| {
        ConsoleError::Invalid(format!(
            "unknown {field} filter {name:?}: pick one from the list"
        ))
    })
}

type Window = (
    Option<prost_types::Timestamp>,
    Option<prost_types::Timestamp>,
    bool,
    String,
);

/// The time filter: dates when given (whole UTC days), else the range.
fn window(q: &JobsQuery) -> Result<Window, ConsoleError> {
    let day = |field: &str, value: &str| {
        NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| {
            ConsoleError::Invalid(format!(
                "{field} must be a date (YYYY-MM-DD), not {value:?}"
            ))
        })
    };
    let at = |date: NaiveDate| prost_types::Timestamp {
        seconds: date
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
            .timestamp(),
        nanos: 0,
    };
    if !q.from.is_empty() || !q.to.is_empty() {
        let from = (!q.from.is_empty())
            .then(|| day("from", &q.from))
            .transpose()?;
        let to = (!q.to.is_empty()).then(|| day("to", &q.to)).transpose()?;
        let described = format!(
            "created {} to {} (UTC days)",
            from.map(|d| d.to_string())
                .unwrap_or_else(|| "any time".into()),
            to.map(|d| d.to_string()).unwrap_or_else(|| "now".into())
        );
        return Ok((
            from.map(at),
            to.and_then(|d| d.succ_opt()).map(at),
            from.is_none(),
            described,
        ));
    }
    let ago = |d: Duration| {
        Some(prost_types::Timestamp {
            seconds: (Utc::now() - d).timestamp(),
            nanos: 0,
        })
    };
    Ok(match q.range.as_str() {
        "24h" => (
            ago(Duration::hours(24)),
            None,
            false,
            "the last 24 hours".into(),
        ),
        "30d" => (
            ago(Duration::days(30)),
            None,
            false,
            "the last 30 days".into(),
        ),
        "all" => (None, None, true, "all time".into()),
        _ => (None, None, false, "the last 7 days".into()),
    })
}

/// `/jobs?…` with `q`'s filters and page token `page`.
pub(crate) fn href(q: &JobsQuery, page: &str) -> String {
    let pairs = [
        ("vault", q.vault.as_str()),
        ("instance", &q.instance),
        ("operation", &q.operation),
        ("state", &q.state),
        ("range", &q.range),
        ("from", &q.from),
        ("to", &q.to),
        ("page", page),
    ];
    let query: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", query_escape(v)))
        .collect();
    if query.is_empty() {
        "/jobs".into()
    } else {
        format!("/jobs?{}", query.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_window_is_the_apis_seven_days() {
        let (after, before, all, text) = window(&JobsQuery::default()).unwrap();
        assert!(after.is_none() && before.is_none() && !all);
        assert_eq!(text, "the last 7 days");
        let q = JobsQuery {
            range: "all".into(),
            ..Default::default()
        };
        assert!(window(&q).unwrap().2);
    }

    #[test]
    fn dates_cover_whole_utc_days() {
        let q = JobsQuery {
            from: "2026-01-02".into(),
            to: "2026-01-02".into(),
            ..Default::default()
        };
        let (after, before, all, _) = window(&q).unwrap();
        assert_eq!(after.unwrap().seconds, 1_767_312_000);
        assert_eq!(before.unwrap().seconds, 1_767_312_000 + 86_400);
        assert!(!all);
        let bad = JobsQuery {
            from: "yesterday".into(),
            ..Default::default()
        };
        assert!(matches!(window(&bad), Err(ConsoleError::Invalid(_))));
    }

    #[test]
    fn paging_links_keep_the_filters() {
        let q = JobsQuery {
            vault: "prod".into(),
            state: "JOB_STATE_FAILED".into(),
            page: "old".into(),
            ..Default::default()
        };
        assert_eq!(
            href(&q, "t/1"),
            "/jobs?vault=prod&state=JOB_STATE_FAILED&page=t%2F1"
        );
        assert_eq!(href(&JobsQuery::default(), ""), "/jobs");
    }

    #[test]
    fn unknown_enum_filters_are_refused() {
        assert_eq!(
            enum_value(
                "OPERATION_RESTORE",
                pb::Operation::from_str_name,
                "operation"
            )
            .unwrap(),
            pb::Operation::Restore as i32
        );
        assert_eq!(
            enum_value("", pb::Operation::from_str_name, "operation").unwrap(),
            0
        );
        assert!(enum_value("RESTORE", pb::Operation::from_str_name, "operation").is_err());
    }
}
