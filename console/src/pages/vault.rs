//! `GET /vaults/{vault}`: one vault — its datastores, encryption, soft
//! delete window and lock, its policies with their schedules and next
//! runs, and its backup instances. Reachable by tokens whose roles are on
//! this vault only (they cannot list vaults).

use askama::Template;
use axum::extract::Path;
use axum::response::Response;
use pgvault_proto::v1 as pb;

use crate::error::ConsoleError;
use crate::format::{self, TimeView, id_of};
use crate::guard::SignedIn;
use crate::pages::layout::Nav;
use crate::pages::lookup;
use crate::pages::overview::{InstanceRow, instance_row, last_backups};
use crate::pages::render;

pub struct PolicyRow {
    pub id: String,
    pub schedule: String,
    pub rules: String,
    pub next: Option<TimeView>,
}

#[derive(Template)]
#[template(path = "vault.html")]
struct VaultPage {
    nav: Option<Nav>,
    id: String,
    vault: pb::Vault,
    /// When the vault was locked (immutable); `None`: not locked.
    locked: Option<TimeView>,
    policies: Vec<PolicyRow>,
    instances: Vec<InstanceRow>,
}

pub async fn page(user: SignedIn, Path(vault): Path<String>) -> Result<Response, ConsoleError> {
    let api = &user.api;
    let found = api
        .vaults()
        .get_vault(pb::GetVaultRequest {
            name: format!("vaults/{vault}"),
        })
        .await?
        .into_inner();
    let policies = lookup::policies(api, &vault).await?;
    let instances = lookup::instances(api, &found.name).await?;
    let last = last_backups(api, &instances).await?;
    let by_name = policies
        .iter()
        .map(|p| (p.name.clone(), p.clone()))
        .collect();
    let page = VaultPage {
        nav: Nav::new(&user, "overview"),
        id: id_of(&found.name).to_string(),
        locked: format::time(found.lock_time.as_ref()),
        policies: policies.iter().map(policy_row).collect(),
        instances: instances
            .iter()
            .map(|i| instance_row(i, &by_name, &last))
            .collect(),
        vault: found,
    };
    render(&page)
}

fn policy_row(p: &pb::Policy) -> PolicyRow {
    let schedule = p.schedule.clone().unwrap_or_default();
    PolicyRow {
        id: id_of(&p.name).to_string(),
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
        rules: p
            .retention_rules
            .iter()
            .map(|r| {
                let archive = if r.archive_duration.is_empty() {
                    String::new()
                } else {
                    format!(", then {} in archive", r.archive_duration)
                };
                format!("{} {}{archive}", format::rule(r.kind), r.standard_duration)
            })
            .collect::<Vec<_>>()
            .join("; "),
        next: format::time(p.next_run_time.as_ref()),
    }
}
