//! The configure flow, in the order a DBA works: pick a server and the
//! secret to connect with (or store a new secret, write-only), see its
//! databases and tick several, pick a policy (which names the vault), and
//! see each row's readiness — Success, or the failure with its code,
//! recommended action and, for missing privileges, the grant script (SQL,
//! psql, PowerShell) to copy or download. Rows kept after a failure are
//! re-validated from here or from the instance page; *Assign missing
//! permissions* is offered when the token may grant the vault access to
//! the secret. All of it is `ListServers`, `ListSecrets`, `PutSecret`,
//! `ListDatabases`, `ConfigureBackup` and `RevalidateBackupInstance`.

use askama::Template;
use axum::extract::{Path, Query};
use axum::response::{IntoResponse, Redirect, Response};
use pgvault_errors::ErrorCode;
use pgvault_proto::v1 as pb;
use serde::Deserialize;

use crate::api::Api;
use crate::error::ConsoleError;
use crate::format::{self, Badge, id_of, query_escape};
use crate::guard::{PostForm, SignedIn};
use crate::pages::jobs::Choice;
use crate::pages::layout::{Nav, instance_href, instance_name, vault_of};
use crate::pages::lookup::{self, or_denied};
use crate::pages::render;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Picked {
    /// `servers/{server}`.
    pub server: String,
    /// A secret reference (`secrets/{secret}`).
    pub secret: String,
    /// The id of a secret just stored, to say so.
    pub stored: String,
}

#[derive(Template)]
#[template(path = "configure_start.html")]
struct StartPage {
    nav: Option<Nav>,
    csrf: String,
    may_configure: bool,
    may_store_secret: bool,
    servers: Vec<Choice>,
    secrets: Vec<Choice>,
    stored: String,
}

/// One policy to choose, under its vault.
pub struct VaultPolicies {
    pub vault: String,
    pub policies: Vec<Choice>,
}

#[derive(Template)]
#[template(path = "configure_databases.html")]
struct DatabasesPage {
    nav: Option<Nav>,
    csrf: String,
    server: String,
    server_id: String,
    secret: String,
    databases: Vec<String>,
    list_error: String,
    vaults: Vec<VaultPolicies>,
    offer_assign: bool,
}

/// The grant script of a row, in its three forms.
pub struct Script {
    pub sql: String,
    pub psql: String,
    pub powershell: String,
}

pub struct ResultRow {
    pub n: usize,
    pub database: String,
    pub readiness: Badge,
    pub instance_href: String,
    pub revalidate_action: String,
    pub error: Option<pb::JobError>,
    pub script: Option<Script>,
    pub can_revalidate: bool,
    pub offer_assign: bool,
}

#[derive(Template)]
#[template(path = "configure_results.html")]
struct ResultsPage {
    nav: Option<Nav>,
    csrf: String,
    title: String,
    rows: Vec<ResultRow>,
}

/// `GET /configure`: step 1, the server and the secret.
pub async fn start(user: SignedIn, Query(picked): Query<Picked>) -> Result<Response, ConsoleError> {
    let api = &user.api;
    let allowed = api.permissions("", &["ListDatabases", "PutSecret"]).await?;
    let (servers, _) = or_denied(lookup::servers(api).await)?;
    let (secrets, _) = or_denied(lookup::secrets(api).await)?;
    let page = StartPage {
        nav: Nav::new(&user, "configure"),
        csrf: user.session.csrf.clone(),
        may_configure: allowed.may("ListDatabases"),
        may_store_secret: allowed.may("PutSecret"),
        servers: servers
            .iter()
            .map(|s| Choice {
                selected: s.name == picked.server,
                value: s.name.clone(),
                label: format!("{} ({}:{}, {})", id_of(&s.name), s.host, s.port, s.region),
            })
            .collect(),
        secrets: secrets
            .iter()
            .map(|s| Choice {
                selected: s.name == picked.secret,
                value: s.name.clone(),
                label: format!("{} (version {})", id_of(&s.name), s.latest_version),
            })
            .collect(),
        stored: picked.stored,
    };
    render(&page)
}

/// `POST /configure/secret`: stores a connection string (a new secret or
/// a new version); the value is never shown back.
pub async fn put_secret(form: PostForm) -> Result<Response, ConsoleError> {
    let id = form.get("secret_id").to_string();
    // As typed: a password may end in spaces.
    let value = form.raw("value").to_string();
    if value.trim().is_empty() {
        return Err(ConsoleError::Invalid(
            "enter the connection string to store (libpq key=value, postgresql:// URI or ADO.NET)"
                .into(),
        ));
    }
    let secret = form
        .user
        .api
        .secrets()
        .put_secret(pb::PutSecretRequest {
            secret_id: id.clone(),
            value,
        })
        .await?
        .into_inner();
    let server = form.get("server");
    Ok(Redirect::to(&format!(
        "/configure?server={}&secret={}&stored={}",
        query_escape(server),
        query_escape(&secret.name),
        query_escape(id_of(&secret.name)),
    ))
    .into_response())
}

/// `GET /configure/databases`: step 2, the server's databases, a policy,
/// and whether to assign missing permissions.
pub async fn databases(
    user: SignedIn,
    Query(picked): Query<Picked>,
) -> Result<Response, ConsoleError> {
    let api = &user.api;
    if picked.server.is_empty() || picked.secret.is_empty() {
        return Err(ConsoleError::Invalid(
            "pick a server and the secret to connect with first".into(),
        ));
    }
    let (databases, list_error) = match api
        .servers()
        .list_databases(pb::ListDatabasesRequest {
            name: picked.server.clone(),
            secret: picked.secret.clone(),
        })
        .await
    {
        Ok(r) => (r.into_inner().databases, String::new()),
        Err(status) if status.code() == tonic::Code::Unauthenticated => {
            return Err(status.into());
        }
        Err(status) => (Vec::new(), status.message().to_string()),
    };
    let (vaults, _) = or_denied(lookup::vaults(api).await)?;
    let mut choices = Vec::new();
    let mut offer_assign = false;
    for vault in &vaults {
        let allowed = api
            .permissions(&vault.name, &["ConfigureBackup", "GrantSecretAccess"])
            .await?;
        if !allowed.may("ConfigureBackup") {
            continue;
        }
        offer_assign |= allowed.may("GrantSecretAccess");
        let policies = lookup::policies(api, id_of(&vault.name)).await?;
        choices.push(VaultPolicies {
            vault: id_of(&vault.name).to_string(),
            policies: policies
                .iter()
                .map(|p| Choice {
                    value: p.name.clone(),
                    label: format!("{} / {}", id_of(&vault.name), id_of(&p.name)),
                    selected: false,
                })
                .collect(),
        });
    }
    let page = DatabasesPage {
        nav: Nav::new(&user, "configure"),
        csrf: user.session.csrf.clone(),
        server_id: id_of(&picked.server).to_string(),
        server: picked.server,
        secret: picked.secret,
        databases,
        list_error,
        vaults: choices,
        offer_assign,
    };
    render(&page)
}

/// `POST /configure`: `ConfigureBackup` for every ticked database, then
/// each row's readiness.
pub async fn configure(form: PostForm) -> Result<Response, ConsoleError> {
    let policy = form.get("policy").to_string();
    let vault = vault_of(&policy);
    if vault.is_empty() {
        return Err(ConsoleError::Invalid(
            "pick a policy (it names the vault)".into(),
        ));
    }
    let databases: Vec<String> = form.all("database").into_iter().map(String::from).collect();
    if databases.is_empty() {
        return Err(ConsoleError::Invalid("tick at least one database".into()));
    }
    let server = form.get("server").to_string();
    let request = pb::ConfigureBackupRequest {
        parent: format!("vaults/{vault}"),
        policy,
        rows: databases
            .iter()
            .map(|database| pb::ConfigureBackupRow {
                server: server.clone(),
                database: database.clone(),
                secret: String::new(),
            })
            .collect(),
        default_secret: form.get("secret").to_string(),
        assign_missing_permissions: form.get("assign") == "on",
        all_databases_of: String::new(),
        role_passwords: false,
    };
    let api = &form.user.api;
    let results = api
        .instances()
        .configure_backup(request)
        .await?
        .into_inner()
        .results;
    let rows = result_rows(api, &vault, &databases, results).await?;
    render(&ResultsPage {
        nav: Nav::new(&form.user, "configure"),
        csrf: form.user.session.csrf.clone(),
        title: format!("Readiness in vault {vault}"),
        rows,
    })
}

/// `POST /vaults/{vault}/instances/{id}/revalidate`: every configure check
/// again (assigning missing permissions when asked), then the row's
/// readiness.
pub async fn revalidate(
    Path((vault, id)): Path<(String, String)>,
    form: PostForm,
) -> Result<Response, ConsoleError> {
    let api = &form.user.api;
    let name = instance_name(&vault, &id);
    let instance = crate::pages::instance::get_instance(api, &name).await?;
    let result = api
        .instances()
        .revalidate_backup_instance(pb::RevalidateBackupInstanceRequest {
            name,
            assign_missing_permissions: form.get("assign") == "on",
        })
        .await?
        .into_inner();
    let rows = result_rows(
        api,
        &vault,
        std::slice::from_ref(&instance.database),
        vec![result],
    )
    .await?;
    render(&ResultsPage {
        nav: Nav::new(&form.user, "configure"),
        csrf: form.user.session.csrf.clone(),
        title: format!(
            "Re-validated {}",
            crate::pages::lookup::instance_label(&instance)
        ),
        rows,
    })
}

/// Whether a row failed for want of the grant *Assign missing
/// permissions* makes (a code this build does not know is not).
fn is_about_the_grant(code: &str) -> bool {
    matches!(
        code.parse(),
        Ok(ErrorCode::UserErrorMissingPermissionsOnSecretStore | ErrorCode::UserCannotAssignRoles)
    )
}

async fn result_rows(
    api: &Api,
    vault: &str,
    databases: &[String],
    results: Vec<pb::ConfigureBackupResult>,
) -> Result<Vec<ResultRow>, ConsoleError> {
    let allowed = api
        .permissions(
            &format!("vaults/{vault}"),
            &["RevalidateBackupInstance", "GrantSecretAccess"],
        )
        .await?;
    Ok(results
        .into_iter()
        .enumerate()
        .map(|(n, r)| {
            let instance = r.backup_instance.unwrap_or_default();
            let kept = !instance.name.is_empty();
            let failed = r.readiness == pb::Readiness::FailedValidation as i32;
            let about_the_grant = r
                .error
                .as_ref()
                .is_some_and(|e| is_about_the_grant(&e.code));
            ResultRow {
                n,
                database: databases
                    .get(usize::try_from(r.row).unwrap_or(n))
                    .cloned()
                    .unwrap_or(instance.database.clone()),
                readiness: format::readiness(r.readiness),
                instance_href: if kept {
                    instance_href(&instance.name)
                } else {
                    String::new()
                },
                revalidate_action: format!("{}/revalidate", instance_href(&instance.name)),
                error: r.error,
                script: r.grant_script.map(|s| Script {
                    sql: s.sql,
                    psql: s.psql,
                    powershell: s.powershell,
                }),
                can_revalidate: kept && failed && allowed.may("RevalidateBackupInstance"),
                offer_assign: kept
                    && failed
                    && about_the_grant
                    && allowed.may("RevalidateBackupInstance")
                    && allowed.may("GrantSecretAccess"),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assigning_permissions_is_offered_only_for_the_grant_codes() {
        assert!(is_about_the_grant(
            ErrorCode::UserErrorMissingPermissionsOnSecretStore.as_str()
        ));
        assert!(is_about_the_grant(
            ErrorCode::UserCannotAssignRoles.as_str()
        ));
        assert!(!is_about_the_grant(ErrorCode::UserErrorDBNotFound.as_str()));
        assert!(!is_about_the_grant("UserErrorFromANewerWorker"));
        assert!(!is_about_the_grant(""));
    }
}
