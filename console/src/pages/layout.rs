//! The frame every page shares — navigation, who is signed in, the
//! sign-out form — and the one mapping from API resource names to console
//! paths (`jobs/{id}` → `/jobs/{id}`, `vaults/{v}/backupInstances/{i}` →
//! `/vaults/{v}/instances/{i}`).

use crate::format::id_of;
use crate::guard::SignedIn;

/// The navigation bar of a signed-in page.
pub struct Nav {
    /// Who signed in (the token's display name, never its value).
    pub label: String,
    /// The session's CSRF token, for the sign-out form.
    pub csrf: String,
    /// Which entry is the current page: `overview`, `jobs`, `configure`.
    pub section: &'static str,
}

impl Nav {
    pub fn new(user: &SignedIn, section: &'static str) -> Option<Nav> {
        Some(Nav {
            label: user.session.label.clone(),
            csrf: user.session.csrf.clone(),
            section,
        })
    }
}

/// The asset URLs the frame links (content-hashed).
pub fn stylesheet() -> &'static str {
    &crate::assets::URLS.stylesheet
}

pub fn script() -> &'static str {
    &crate::assets::URLS.script
}

/// `/jobs/{id}` for `jobs/{id}`.
pub fn job_href(name: &str) -> String {
    format!("/jobs/{}", id_of(name))
}

/// `/vaults/{v}/instances/{i}` for `vaults/{v}/backupInstances/{i}`.
pub fn instance_href(name: &str) -> String {
    match parts(name).as_slice() {
        ["vaults", vault, "backupInstances", instance, ..] => {
            format!("/vaults/{vault}/instances/{instance}")
        }
        _ => "/overview".into(),
    }
}

/// The jobs dashboard filtered to instance `name`
/// (`vaults/{v}/backupInstances/{i}`), over all time: every "View all
/// jobs" link of an instance goes here.
pub fn instance_jobs_href(name: &str) -> String {
    let query = crate::pages::jobs::JobsQuery {
        instance: name.into(),
        range: "all".into(),
        ..Default::default()
    };
    crate::pages::jobs::href(&query, "")
}

/// The restore page of `vaults/{v}/backupInstances/{i}/recoveryPoints/{p}`.
pub fn restore_href(point: &str) -> String {
    match parts(point).as_slice() {
        [
            "vaults",
            vault,
            "backupInstances",
            instance,
            "recoveryPoints",
            point,
        ] => {
            format!("/vaults/{vault}/instances/{instance}/points/{point}/restore")
        }
        _ => "/overview".into(),
    }
}

/// `/vaults/{v}` for `vaults/{v}` (or anything in it).
pub fn vault_href(name: &str) -> String {
    match parts(name).as_slice() {
        ["vaults", vault, ..] => format!("/vaults/{vault}"),
        _ => "/overview".into(),
    }
}

/// The vault id of a name in a vault (`vaults/{v}/…` → `v`), or `""`.
pub fn vault_of(name: &str) -> String {
    match parts(name).as_slice() {
        ["vaults", vault, ..] => (*vault).to_string(),
        _ => String::new(),
    }
}

/// The API name of the instance at console path segments `vault`, `id`.
pub fn instance_name(vault: &str, id: &str) -> String {
    format!("vaults/{vault}/backupInstances/{id}")
}

fn parts(name: &str) -> Vec<&str> {
    name.split('/').collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_names_map_to_console_paths() {
        assert_eq!(job_href("jobs/abc"), "/jobs/abc");
        assert_eq!(
            instance_href("vaults/prod/backupInstances/i1"),
            "/vaults/prod/instances/i1"
        );
        assert_eq!(
            instance_href("vaults/prod/backupInstances/i1/recoveryPoints/p"),
            "/vaults/prod/instances/i1"
        );
        assert_eq!(
            restore_href("vaults/prod/backupInstances/i1/recoveryPoints/p9"),
            "/vaults/prod/instances/i1/points/p9/restore"
        );
        assert_eq!(vault_href("vaults/prod/policies/x"), "/vaults/prod");
        assert_eq!(vault_of("vaults/prod/policies/x"), "prod");
        assert_eq!(vault_of("servers/a"), "");
        assert_eq!(instance_href("garbage"), "/overview");
        assert_eq!(
            instance_jobs_href("vaults/prod/backupInstances/i1"),
            "/jobs?instance=vaults%2Fprod%2FbackupInstances%2Fi1&range=all"
        );
    }
}
