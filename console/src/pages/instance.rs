//! `GET /vaults/{vault}/instances/{id}`: one backup instance — its facts,
//! last error, recovery points (tier, retention tag, expiry, size), the
//! points kept only as copies, and recent jobs — with the actions its token may take: *Backup now* with a
//! retention rule of its policy, *Stop* / *Resume protection*, restoring a
//! point (the restore page) and re-validating a failed row.

use askama::Template;
use axum::extract::Path;
use axum::response::{IntoResponse, Redirect, Response};
use pgvault_proto::v1 as pb;

use crate::api::Api;
use crate::error::ConsoleError;
use crate::format::{self, Badge, TimeView, id_of};
use crate::guard::{PostForm, SignedIn};
use crate::pages::jobs::{Choice, JobRow, job_row};
use crate::pages::layout::{
    Nav, instance_href, instance_jobs_href, instance_name, job_href, restore_href, vault_href,
    vault_of,
};
use crate::pages::lookup::instance_label;
use crate::pages::render;

/// Recovery points listed on the page.
const POINTS_SHOWN: usize = 200;

/// What the page asks `TestPermissions` about, on the instance's vault.
pub const ACTIONS: [&str; 6] = [
    "BackupNow",
    "RestoreAsDatabase",
    "RestoreAsFiles",
    "StopProtection",
    "ResumeProtection",
    "RevalidateBackupInstance",
];

pub struct PointRow {
    pub id: String,
    pub snapshot: Option<TimeView>,
    pub tier: &'static str,
    pub tag: &'static str,
    pub expires: Option<TimeView>,
    pub stored: String,
    pub raw: String,
    pub chunks: u32,
    pub server_version: String,
    /// The last verify and restore drill, with the failure's code.
    pub verify: Badge,
    pub verify_code: String,
    pub drill: Badge,
    pub drill_code: String,
    pub copies: String,
    pub restore_href: String,
    pub job_href: String,
}

#[derive(Template)]
#[template(path = "instance.html")]
struct InstancePage {
    nav: Option<Nav>,
    csrf: String,
    name: String,
    /// `VAULT/NAME`, as the CLI takes the instance (empty from an older
    /// coordinator).
    typed: String,
    label: String,
    href: String,
    jobs_href: String,
    vault: String,
    vault_href: String,
    policy: String,
    schedule: String,
    next_run: Option<TimeView>,
    secret: String,
    state: Badge,
    last_error: Option<pb::JobError>,
    created: Option<TimeView>,
    rules: Vec<Choice>,
    points: Vec<PointRow>,
    points_more: bool,
    /// Points whose own objects expired while copies of them live on.
    copies_only: Vec<PointRow>,
    copies_only_more: bool,
    jobs: Vec<JobRow>,
    can_backup: bool,
    can_restore: bool,
    can_stop: bool,
    can_resume: bool,
    can_revalidate: bool,
}

pub async fn get_instance(api: &Api, name: &str) -> Result<pb::BackupInstance, ConsoleError> {
    Ok(api
        .instances()
        .get_backup_instance(pb::GetBackupInstanceRequest {
            name: name.to_string(),
        })
        .await?
        .into_inner())
}

pub async fn page(
    user: SignedIn,
    Path((vault, id)): Path<(String, String)>,
) -> Result<Response, ConsoleError> {
    let api = &user.api;
    let name = instance_name(&vault, &id);
    let instance = get_instance(api, &name).await?;
    let allowed = api.permissions(&name, &ACTIONS).await?;
    let policy = api
        .policies()
        .get_policy(pb::GetPolicyRequest {
            name: instance.policy.clone(),
        })
        .await?
        .into_inner();
    let listed = newest_points(api, &name, false).await?;
    let copies_only = newest_points(api, &name, true).await?;
    let recent = api
        .jobs()
        .list_jobs(pb::ListJobsRequest {
            backup_instance: name.clone(),
            page_size: 10,
            all: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    let label = instance_label(&instance);
    let labels = [(instance.name.as_str(), label.clone())]
        .into_iter()
        .collect();
    let state = pb::ProtectionState::try_from(instance.protection_state)
        .unwrap_or(pb::ProtectionState::Unspecified);
    let schedule = policy.schedule.clone().unwrap_or_default();
    let page = InstancePage {
        nav: Nav::new(&user, "overview"),
        csrf: user.session.csrf.clone(),
        href: instance_href(&instance.name),
        jobs_href: instance_jobs_href(&instance.name),
        vault: vault_of(&instance.name),
        vault_href: vault_href(&instance.name),
        policy: id_of(&instance.policy).to_string(),
        schedule: format!(
            "{} at {} ({})",
            format::weekdays(&schedule.weekdays),
            schedule.time_of_day,
            if schedule.time_zone.is_empty() {
                "UTC"
            } else {
                &schedule.time_zone
            }
        ),
        next_run: (state == pb::ProtectionState::Configured)
            .then(|| format::time(policy.next_run_time.as_ref()))
            .flatten(),
        secret: instance.secret.clone(),
        state: format::protection(instance.protection_state),
        last_error: instance.last_error.clone(),
        typed: if instance.short_name.is_empty() {
            String::new()
        } else {
            format!("{}/{}", vault_of(&instance.name), instance.short_name)
        },
        created: format::time(instance.create_time.as_ref()),
        rules: policy
            .retention_rules
            .iter()
            .map(|r| Choice {
                value: pb::RetentionRuleKind::try_from(r.kind)
                    .unwrap_or(pb::RetentionRuleKind::Default)
                    .as_str_name()
                    .to_string(),
                label: format!(
                    "{} (kept {})",
                    format::rule(r.kind),
                    if r.standard_duration.is_empty() {
                        "by default"
                    } else {
                        &r.standard_duration
                    }
                ),
                selected: r.kind == pb::RetentionRuleKind::Default as i32,
            })
            .collect(),
        points_more: !listed.next_page_token.is_empty(),
        points: listed.recovery_points.iter().map(point_row).collect(),
        copies_only_more: !copies_only.next_page_token.is_empty(),
        copies_only: copies_only.recovery_points.iter().map(point_row).collect(),
        jobs: recent.jobs.iter().map(|j| job_row(j, &labels)).collect(),
        can_backup: allowed.may("BackupNow") && state == pb::ProtectionState::Configured,
        can_restore: allowed.may("RestoreAsDatabase") || allowed.may("RestoreAsFiles"),
        can_stop: allowed.may("StopProtection") && state == pb::ProtectionState::Configured,
        can_resume: allowed.may("ResumeProtection") && state == pb::ProtectionState::Stopped,
        can_revalidate: allowed.may("RevalidateBackupInstance")
            && state == pb::ProtectionState::ValidationFailed,
        name,
        label,
    };
    render(&page)
}

/// The newest [`POINTS_SHOWN`] live points of instance `name`, or with
/// `copies_only` those kept only as copies.
async fn newest_points(
    api: &Api,
    name: &str,
    copies_only: bool,
) -> Result<pb::ListRecoveryPointsResponse, ConsoleError> {
    Ok(api
        .points()
        .list_recovery_points(pb::ListRecoveryPointsRequest {
            parent: name.to_string(),
            page_size: POINTS_SHOWN as u32,
            page_token: String::new(),
            show_deleted: false,
            copies_only,
        })
        .await?
        .into_inner())
}

fn point_row(p: &pb::RecoveryPoint) -> PointRow {
    PointRow {
        id: format::short(&p.name),
        snapshot: format::time(p.snapshot_time.as_ref()),
        tier: format::tier(p.tier),
        tag: format::rule(p.retention_tag),
        expires: format::time(p.expire_time.as_ref()),
        stored: format::bytes(p.stored_bytes),
        raw: format::bytes(p.raw_bytes),
        chunks: p.chunk_count,
        server_version: p.server_version.clone(),
        verify: format::check(&p.last_verify_result),
        verify_code: p.last_verify_error_code.clone(),
        drill: format::check(&p.last_drill_result),
        drill_code: p.last_drill_error_code.clone(),
        copies: format::copies(&p.copies),
        restore_href: restore_href(&p.name),
        job_href: if p.job.is_empty() {
            String::new()
        } else {
            job_href(&p.job)
        },
    }
}

/// `POST …/backup`: `BackupNow` with the chosen rule (and workers to fan
/// out across, if given), then the job's page.
pub async fn backup_now(
    Path((vault, id)): Path<(String, String)>,
    form: PostForm,
) -> Result<Response, ConsoleError> {
    let rule = match form.get("rule") {
        "" => pb::RetentionRuleKind::Default,
        name => pb::RetentionRuleKind::from_str_name(name)
            .ok_or_else(|| ConsoleError::Invalid(format!("unknown retention rule {name:?}")))?,
    };
    let job = form
        .user
        .api
        .instances()
        .backup_now(pb::BackupNowRequest {
            name: instance_name(&vault, &id),
            rule: rule as i32,
            workers: super::fan_out_workers(&form)?,
        })
        .await?
        .into_inner();
    Ok(Redirect::to(&job_href(&job.name)).into_response())
}

/// `POST …/stop`: `StopProtection` with the chosen mode.
pub async fn stop(
    Path((vault, id)): Path<(String, String)>,
    form: PostForm,
) -> Result<Response, ConsoleError> {
    let mode = pb::StopMode::from_str_name(form.get("mode"))
        .filter(|m| *m != pb::StopMode::Unspecified)
        .ok_or_else(|| {
            ConsoleError::Invalid("choose what happens to the recovery points".into())
        })?;
    let name = instance_name(&vault, &id);
    form.user
        .api
        .instances()
        .stop_protection(pb::StopProtectionRequest {
            name: name.clone(),
            mode: mode as i32,
        })
        .await?;
    Ok(Redirect::to(&instance_href(&name)).into_response())
}

/// `POST …/resume`: `ResumeProtection`.
pub async fn resume(
    Path((vault, id)): Path<(String, String)>,
    form: PostForm,
) -> Result<Response, ConsoleError> {
    let name = instance_name(&vault, &id);
    form.user
        .api
        .instances()
        .resume_protection(pb::ResumeProtectionRequest { name: name.clone() })
        .await?;
    Ok(Redirect::to(&instance_href(&name)).into_response())
}
