//! `GET …/points/{point}/restore`: restoring one recovery point, as a new
//! database (target server, name, optionally another secret) or as a
//! plain SQL file in a datastore, whole or some schemas and tables, from
//! the point itself or from one of its copies in other datastores (a point
//! kept only as copies restores from a copy). Each form posts to
//! `RestoreAsDatabase` / `RestoreAsFiles` and lands on the restore job's
//! page.

use askama::Template;
use axum::extract::Path;
use axum::response::{IntoResponse, Redirect, Response};
use pgvault_proto::v1 as pb;

use crate::error::ConsoleError;
use crate::format::{self, TimeView, id_of};
use crate::guard::{PostForm, SignedIn};
use crate::pages::instance::get_instance;
use crate::pages::jobs::Choice;
use crate::pages::layout::{Nav, instance_href, instance_name, job_href};
use crate::pages::lookup::{self, instance_label, or_denied};
use crate::pages::render;

#[derive(Template)]
#[template(path = "restore.html")]
struct RestorePage {
    nav: Option<Nav>,
    csrf: String,
    action: String,
    label: String,
    instance_href: String,
    point: String,
    snapshot: Option<TimeView>,
    tier: &'static str,
    archive: bool,
    size: String,
    /// The point's live copies to read instead (value: the copy's
    /// datastore URL); the point itself comes first unless only its copies
    /// are left.
    copies: Vec<Choice>,
    copies_only: bool,
    servers: Vec<Choice>,
    secrets: Vec<Choice>,
    default_secret: String,
    can_database: bool,
    can_files: bool,
}

fn point_name(vault: &str, instance: &str, point: &str) -> String {
    format!("{}/recoveryPoints/{point}", instance_name(vault, instance))
}

pub async fn page(
    user: SignedIn,
    Path((vault, instance, point)): Path<(String, String, String)>,
) -> Result<Response, ConsoleError> {
    let api = &user.api;
    let name = point_name(&vault, &instance, &point);
    let instance = get_instance(api, &instance_name(&vault, &instance)).await?;
    let recovery_point = api
        .points()
        .get_recovery_point(pb::GetRecoveryPointRequest { name: name.clone() })
        .await?
        .into_inner();
    let allowed = api
        .permissions(&name, &["RestoreAsDatabase", "RestoreAsFiles"])
        .await?;
    let (servers, _) = or_denied(lookup::servers(api).await)?;
    let (secrets, _) = or_denied(lookup::secrets(api).await)?;
    let own_server = instance.server.clone();
    let page = RestorePage {
        nav: Nav::new(&user, "overview"),
        csrf: user.session.csrf.clone(),
        action: format!("{}/points/{point}/restore", instance_href(&instance.name)),
        label: instance_label(&instance),
        instance_href: instance_href(&instance.name),
        point: format::short(&recovery_point.name),
        snapshot: format::time(recovery_point.snapshot_time.as_ref()),
        tier: format::tier(recovery_point.tier),
        archive: recovery_point.tier == pb::DatastoreTier::Archive as i32,
        size: format::bytes(recovery_point.stored_bytes),
        copies: live_copies(&recovery_point),
        copies_only: recovery_point.copies_only,
        servers: servers
            .iter()
            .filter(|s| s.name != own_server)
            .map(|s| Choice {
                value: s.name.clone(),
                label: format!("{} ({}:{})", id_of(&s.name), s.host, s.port),
                selected: false,
            })
            .collect(),
        secrets: secrets
            .iter()
            .map(|s| Choice {
                value: s.name.clone(),
                label: id_of(&s.name).to_string(),
                selected: false,
            })
            .collect(),
        default_secret: instance.secret.clone(),
        can_database: allowed.may("RestoreAsDatabase"),
        can_files: allowed.may("RestoreAsFiles"),
    };
    render(&page)
}

/// The point's restorable copies, as choices of where to read from.
fn live_copies(point: &pb::RecoveryPoint) -> Vec<Choice> {
    format::live_copies(&point.copies)
        .map(|c| Choice {
            value: c.datastore.clone(),
            label: format!("Its copy in {}", c.datastore),
            selected: false,
        })
        .collect()
}

/// Names separated by commas or lines (quoted names may hold spaces).
fn names(field: &str) -> Vec<String> {
    field
        .split([',', '\n', '\r'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn rehydrate_days(form: &PostForm) -> Result<u32, ConsoleError> {
    form.number_or_zero(
        "rehydrate_days",
        "rehydrate days must be a number of days (10-30)",
    )
}

/// `POST …/restore/database`.
pub async fn as_database(
    Path((vault, instance, point)): Path<(String, String, String)>,
    form: PostForm,
) -> Result<Response, ConsoleError> {
    let request = pb::RestoreAsDatabaseRequest {
        recovery_point: point_name(&vault, &instance, &point),
        target_server: form.get("target_server").to_string(),
        target_database: form.get("target_database").to_string(),
        secret: form.get("secret").to_string(),
        schemas: names(form.get("schemas")),
        tables: names(form.get("tables")),
        rehydrate_days: rehydrate_days(&form)?,
        latest_of: String::new(),
        copy_datastore: form.get("copy_datastore").to_string(),
        workers: super::fan_out_workers(&form)?,
    };
    let job = form
        .user
        .api
        .restores()
        .restore_as_database(request)
        .await?
        .into_inner();
    Ok(Redirect::to(&job_href(&job.name)).into_response())
}

/// `POST …/restore/files`.
pub async fn as_files(
    Path((vault, instance, point)): Path<(String, String, String)>,
    form: PostForm,
) -> Result<Response, ConsoleError> {
    let request = pb::RestoreAsFilesRequest {
        recovery_point: point_name(&vault, &instance, &point),
        target_url: form.get("target_url").to_string(),
        file_name: form.get("file_name").to_string(),
        schemas: names(form.get("schemas")),
        tables: names(form.get("tables")),
        rehydrate_days: rehydrate_days(&form)?,
        latest_of: String::new(),
        copy_datastore: form.get("copy_datastore").to_string(),
    };
    let job = form
        .user
        .api
        .restores()
        .restore_as_files(request)
        .await?
        .into_inner();
    Ok(Redirect::to(&job_href(&job.name)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_split_on_commas_and_lines() {
        assert_eq!(
            names("public.a, public.b\nsales.c  ,\"My Schema\".\"My Table\""),
            [
                "public.a",
                "public.b",
                "sales.c",
                "\"My Schema\".\"My Table\""
            ]
        );
        assert!(names("  ").is_empty());
    }
}
