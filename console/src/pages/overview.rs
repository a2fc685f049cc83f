//! `GET /overview`: the vaults, every backup instance with its protection
//! state, last backup and next scheduled run, and the jobs that failed in
//! the last 24 hours.

use std::collections::HashMap;

use askama::Template;
use axum::response::Response;
use chrono::{Duration, Utc};
use futures::StreamExt;
use pgvault_proto::v1 as pb;

use crate::api::Api;
use crate::error::ConsoleError;
use crate::format::{self, Badge, TimeView, id_of};
use crate::guard::SignedIn;
use crate::pages::layout::{Nav, instance_href, instance_jobs_href, job_href, vault_href};
use crate::pages::lookup::{self, instance_label, or_denied};
use crate::pages::render;

/// Instances whose last backup is looked up (two small calls each).
const LAST_BACKUP_LOOKUPS: usize = 200;

pub struct VaultRow {
    pub id: String,
    pub href: String,
    pub region: String,
    pub standard: String,
    pub archive: String,
    pub description: String,
    pub instances: usize,
}

pub struct InstanceRow {
    pub href: String,
    /// Every job of the instance, all time.
    pub jobs_href: String,
    pub vault: String,
    pub vault_href: String,
    pub label: String,
    pub policy: String,
    pub state: Badge,
    pub last: Option<LastBackup>,
    pub next: Option<TimeView>,
}

pub struct LastBackup {
    pub href: String,
    pub state: Badge,
    pub when: Option<TimeView>,
}

pub struct FailedRow {
    pub href: String,
    pub short: String,
    pub operation: &'static str,
    pub instance: String,
    pub instance_href: String,
    pub ended: Option<TimeView>,
    pub code: String,
    pub message: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    nav: Option<Nav>,
    vaults: Vec<VaultRow>,
    vaults_denied: bool,
    instances: Vec<InstanceRow>,
    instances_denied: bool,
    failed: Vec<FailedRow>,
}

pub async fn page(user: SignedIn) -> Result<Response, ConsoleError> {
    let api = &user.api;
    let (vaults, vaults_denied) = or_denied(lookup::vaults(api).await)?;
    let (instances, instances_denied) = or_denied(lookup::instances(api, "vaults/-").await)?;
    let policies = lookup::policies_by_name(api, &vaults).await?;
    let last = last_backups(api, &instances).await?;
    let labels: HashMap<&str, String> = instances
        .iter()
        .map(|i| (i.name.as_str(), instance_label(i)))
        .collect();
    let failed = failed_last_day(api)
        .await?
        .into_iter()
        .map(|job| FailedRow {
            href: job_href(&job.name),
            short: format::short(&job.name),
            operation: format::operation(job.operation),
            instance: labels
                .get(job.backup_instance.as_str())
                .cloned()
                .unwrap_or_else(|| format::short(&job.backup_instance)),
            instance_href: instance_href(&job.backup_instance),
            ended: format::time(job.end_time.as_ref()),
            code: job
                .error
                .as_ref()
                .map(|e| e.code.clone())
                .unwrap_or_default(),
            message: job.error.map(|e| e.message).unwrap_or_default(),
        })
        .collect();
    let page = OverviewPage {
        nav: Nav::new(&user, "overview"),
        vaults: vaults
            .iter()
            .map(|v| VaultRow {
                id: id_of(&v.name).to_string(),
                href: vault_href(&v.name),
                region: v.region.clone(),
                standard: v.standard_datastore.clone(),
                archive: v.archive_datastore.clone(),
                description: v.description.clone(),
                instances: instances
                    .iter()
                    .filter(|i| i.name.starts_with(&format!("{}/", v.name)))
                    .count(),
            })
            .collect(),
        vaults_denied,
        instances: instances
            .iter()
            .map(|i| instance_row(i, &policies, &last))
            .collect(),
        instances_denied,
        failed,
    };
    render(&page)
}

/// One instance's row: the next run is its policy's, while protected.
pub fn instance_row(
    i: &pb::BackupInstance,
    policies: &HashMap<String, pb::Policy>,
    last: &HashMap<String, pb::Job>,
) -> InstanceRow {
    let protected = i.protection_state == pb::ProtectionState::Configured as i32;
    InstanceRow {
        href: instance_href(&i.name),
        jobs_href: instance_jobs_href(&i.name),
        vault: crate::pages::layout::vault_of(&i.name),
        vault_href: vault_href(&i.name),
        label: instance_label(i),
        policy: id_of(&i.policy).to_string(),
        state: format::protection(i.protection_state),
        last: last.get(&i.name).map(|job| LastBackup {
            href: job_href(&job.name),
            state: format::job_state(job.state),
            when: format::time(job.end_time.as_ref().or(job.create_time.as_ref())),
        }),
        next: policies
            .get(&i.policy)
            .filter(|_| protected)
            .and_then(|p| format::time(p.next_run_time.as_ref())),
    }
}

/// The newest backup job (scheduled or on demand) of each instance.
pub async fn last_backups(
    api: &Api,
    instances: &[pb::BackupInstance],
) -> Result<HashMap<String, pb::Job>, ConsoleError> {
    let lookups: Vec<(String, pb::Operation)> = instances
        .iter()
        .take(LAST_BACKUP_LOOKUPS)
        .flat_map(|i| {
            [
                (i.name.clone(), pb::Operation::ScheduledBackup),
                (i.name.clone(), pb::Operation::OnDemandBackup),
            ]
        })
        .collect();
    let found: Vec<Result<Option<pb::Job>, ConsoleError>> = futures::stream::iter(lookups)
        .map(|(name, op)| newest_job(api, name, op))
        .buffer_unordered(8)
        .collect()
        .await;
    let mut last: HashMap<String, pb::Job> = HashMap::new();
    for job in found {
        let Some(job) = job? else { continue };
        let newer = last.get(&job.backup_instance).is_none_or(|seen| {
            seen.create_time.as_ref().map(|t| (t.seconds, t.nanos))
                < job.create_time.as_ref().map(|t| (t.seconds, t.nanos))
        });
        if newer {
            last.insert(job.backup_instance.clone(), job);
        }
    }
    Ok(last)
}

async fn newest_job(
    api: &Api,
    instance: String,
    operation: pb::Operation,
) -> Result<Option<pb::Job>, ConsoleError> {
    let listed = api
        .jobs()
        .list_jobs(pb::ListJobsRequest {
            vault: String::new(),
            backup_instance: instance,
            operation: operation as i32,
            page_size: 1,
            all: true,
            ..Default::default()
        })
        .await;
    match listed {
        Ok(r) => Ok(r.into_inner().jobs.into_iter().next()),
        Err(status) if status.code() == tonic::Code::PermissionDenied => Ok(None),
        Err(status) => Err(status.into()),
    }
}

/// Jobs that failed in the last 24 hours (of those created in the last 7
/// days, the dashboard's default window), newest first.
async fn failed_last_day(api: &Api) -> Result<Vec<pb::Job>, ConsoleError> {
    let now = Utc::now();
    let day_ago = (now - Duration::hours(24)).timestamp();
    let listed = api
        .jobs()
        .list_jobs(pb::ListJobsRequest {
            state: pb::JobState::Failed as i32,
            page_size: 200,
            created_after: Some(prost_types::Timestamp {
                seconds: (now - Duration::days(7)).timestamp(),
                nanos: 0,
            }),
            ..Default::default()
        })
        .await;
    match listed {
        Ok(r) => Ok(r
            .into_inner()
            .jobs
            .into_iter()
            .filter(|job| job.end_time.as_ref().is_some_and(|t| t.seconds >= day_ago))
            .collect()),
        Err(status) if status.code() == tonic::Code::PermissionDenied => Ok(Vec::new()),
        Err(status) => Err(status.into()),
    }
}
