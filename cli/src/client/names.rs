//! Resource names built from what users type. Users give short ids
//! (`prod`, `--vault prod`); the API wants names (`vaults/prod`,
//! `vaults/prod/backupInstances/abc`). Every builder also accepts the full
//! name, so names copied from JSON output work as arguments too. A backup
//! instance is also typed `VAULT/NAME` with its short name
//! (`prod/db1-billing`); the coordinator looks short names up. The
//! grammar itself is `pgvault_proto::names`, shared with the coordinator.

use anyhow::{Context, bail};
use pgvault_proto::names::{self as grammar, Pattern};

pub use pgvault_proto::names::{short, vault_of};

/// A short id: non-empty, without '/'.
fn short_id<'a>(kind: &str, input: &'a str) -> anyhow::Result<&'a str> {
    if input.is_empty() {
        bail!("{kind} id must not be empty");
    }
    if input.contains('/') {
        bail!("\"{input}\" is neither a {kind} id nor a {kind} name");
    }
    Ok(input)
}

/// `collection/{id}` from an id or that full name.
fn top_level(pattern: Pattern, kind: &str, input: &str) -> anyhow::Result<String> {
    if pattern.ids(input).is_some() {
        return Ok(input.to_owned());
    }
    Ok(pattern.format(&[short_id(kind, input)?]))
}

pub fn vault(input: &str) -> anyhow::Result<String> {
    top_level(grammar::VAULT, "vault", input)
}

pub fn server(input: &str) -> anyhow::Result<String> {
    top_level(grammar::SERVER, "server", input)
}

pub fn secret(input: &str) -> anyhow::Result<String> {
    top_level(grammar::SECRET, "secret", input)
}

/// A secret reference: URIs (`secret://NAME[/VERSION]`, `env://VAR`,
/// `file:///path`) pass through for the coordinator to check; anything else
/// is a secret id or `secrets/{id}`.
pub fn secret_ref(input: &str) -> anyhow::Result<String> {
    if input.contains("://") {
        Ok(input.to_owned())
    } else {
        secret(input)
    }
}

/// How a secret reference is shown: the id for `secrets/{id}`, else the URI.
pub fn secret_ref_short(reference: &str) -> &str {
    grammar::SECRET
        .ids(reference)
        .map_or(reference, |ids| ids[0])
}

pub fn job(input: &str) -> anyhow::Result<String> {
    top_level(grammar::JOB, "job", input)
}

pub fn dead_letter(input: &str) -> anyhow::Result<String> {
    top_level(grammar::DEAD_LETTER, "dead letter", input)
}

/// `agents/{id}` from an id or that full name. The contract's grammar has
/// no agent pattern yet, so the short id rule is checked here.
pub fn agent(input: &str) -> anyhow::Result<String> {
    let id = input.strip_prefix("agents/").unwrap_or(input);
    grammar::validate_short_id(id).map_err(|e| anyhow::anyhow!("agent id {e}"))?;
    Ok(format!("agents/{id}"))
}

/// `tokens/{id}` from an id or that full name (the coordinator checks the UUID).
pub fn token(input: &str) -> String {
    let input = input.trim();
    let id = grammar::TOKEN.ids(input).map_or(input, |ids| ids[0]);
    grammar::TOKEN.format(&[id])
}

/// The vault id from `--vault`, required when a child is given by short id.
fn required_vault(vault: Option<&str>, child_kind: &str) -> anyhow::Result<String> {
    let vault = vault.with_context(|| {
        format!("--vault is required when the {child_kind} is given by its short id")
    })?;
    self::vault(vault)
}

/// Fails when `--vault` names another vault than a full child name does.
fn check_same_vault(vault: Option<&str>, full_vault: &str, input: &str) -> anyhow::Result<()> {
    if let Some(given) = vault {
        let given = self::vault(given)?;
        if given != grammar::vault_name(full_vault) {
            bail!("\"{input}\" is not in {given}");
        }
    }
    Ok(())
}

/// `vaults/{vault}/policies/{policy}`.
pub fn policy(vault: Option<&str>, input: &str) -> anyhow::Result<String> {
    if let Some(ids) = grammar::POLICY.ids(input) {
        check_same_vault(vault, ids[0], input)?;
        return Ok(input.to_owned());
    }
    let id = short_id("policy", input)?;
    Ok(grammar::POLICY.format_in(&required_vault(vault, "policy")?, id))
}

/// `vaults/{vault}/backupInstances/{instance}`, from the full name,
/// `VAULT/INSTANCE`, or an instance with `--vault`; INSTANCE is its id or
/// its short name.
pub fn instance(vault: Option<&str>, input: &str) -> anyhow::Result<String> {
    if let Some(ids) = grammar::BACKUP_INSTANCE.ids(input) {
        check_same_vault(vault, ids[0], input)?;
        return Ok(input.to_owned());
    }
    if let Some((in_vault, id)) = input.split_once('/')
        && !in_vault.is_empty()
        && !id.is_empty()
        && !id.contains('/')
    {
        check_same_vault(vault, in_vault, input)?;
        return Ok(grammar::BACKUP_INSTANCE.format(&[in_vault, id]));
    }
    let id = short_id("backup instance", input)?;
    Ok(grammar::BACKUP_INSTANCE.format_in(&required_vault(vault, "backup instance")?, id))
}

/// How people type an instance: `VAULT/NAME` with its short name, or its
/// id when the coordinator sent no short name.
pub fn typed_instance(name: &str, short_name: &str) -> String {
    if short_name.is_empty() {
        short(name).to_owned()
    } else {
        format!("{}/{short_name}", vault_of(name))
    }
}

/// `vaults/{vault}/backupInstances/{instance}/recoveryPoints/{point}`.
pub fn recovery_point(
    vault: Option<&str>,
    instance: Option<&str>,
    input: &str,
) -> anyhow::Result<String> {
    if let Some(ids) = grammar::RECOVERY_POINT.ids(input) {
        check_same_vault(vault, ids[0], input)?;
        if let Some(given) = instance {
            let expected = self::instance(Some(ids[0]), given)?;
            if !input.starts_with(&format!("{expected}/")) {
                bail!("\"{input}\" is not a recovery point of {expected}");
            }
        }
        return Ok(input.to_owned());
    }
    let id = short_id("recovery point", input)?;
    let instance = instance
        .context("--instance is required when the recovery point is given by its short id")?;
    Ok(grammar::RECOVERY_POINT.format_in(&self::instance(vault, instance)?, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_level_names_from_ids_and_names() {
        assert_eq!(vault("prod").unwrap(), "vaults/prod");
        assert_eq!(vault("vaults/prod").unwrap(), "vaults/prod");
        assert_eq!(server("pg1").unwrap(), "servers/pg1");
        assert_eq!(secret("secrets/app").unwrap(), "secrets/app");
        assert_eq!(job("0197-ab").unwrap(), "jobs/0197-ab");
        assert!(vault("").is_err());
        assert!(vault("servers/pg1").is_err());
        assert!(vault("vaults/").is_err());
        assert_eq!(token(" tokens/abc "), "tokens/abc");
        assert_eq!(token("abc"), "tokens/abc");
    }

    #[test]
    fn agent_names_from_ids_and_names_follow_the_short_id_rule() {
        assert_eq!(agent("dc1").unwrap(), "agents/dc1");
        assert_eq!(agent("agents/dc1").unwrap(), "agents/dc1");
        let error = agent("DC 1").unwrap_err().to_string();
        assert!(
            error.starts_with("agent id \"DC 1\" is not a valid id"),
            "{error}"
        );
        assert!(agent("").is_err());
        assert!(agent("servers/dc1").is_err());
    }

    #[test]
    fn child_names_need_the_vault_for_short_ids() {
        assert_eq!(
            policy(Some("prod"), "nightly").unwrap(),
            "vaults/prod/policies/nightly"
        );
        assert_eq!(
            policy(None, "vaults/prod/policies/nightly").unwrap(),
            "vaults/prod/policies/nightly"
        );
        let missing = policy(None, "nightly").unwrap_err().to_string();
        assert!(missing.contains("--vault is required"), "{missing}");
        assert_eq!(
            instance(Some("vaults/prod"), "abc").unwrap(),
            "vaults/prod/backupInstances/abc"
        );
    }

    #[test]
    fn instances_are_typed_vault_slash_short_name() {
        assert_eq!(
            instance(None, "prod/db1-billing").unwrap(),
            "vaults/prod/backupInstances/db1-billing"
        );
        assert_eq!(
            instance(Some("prod"), "prod/db1-billing").unwrap(),
            "vaults/prod/backupInstances/db1-billing"
        );
        let error = instance(Some("staging"), "prod/db1-billing")
            .unwrap_err()
            .to_string();
        assert!(error.contains("is not in vaults/staging"), "{error}");
        assert!(instance(None, "prod/").is_err());
        assert!(instance(None, "/db1").is_err());
        assert!(instance(None, "a/b/c").is_err());
        assert_eq!(
            recovery_point(None, Some("prod/db1-billing"), "rp1").unwrap(),
            "vaults/prod/backupInstances/db1-billing/recoveryPoints/rp1"
        );
        assert_eq!(
            typed_instance("vaults/prod/backupInstances/0197", "db1-billing"),
            "prod/db1-billing"
        );
        assert_eq!(
            typed_instance("vaults/prod/backupInstances/0197", ""),
            "0197"
        );
    }

    #[test]
    fn full_name_must_agree_with_vault_flag() {
        let full = "vaults/prod/backupInstances/abc";
        assert_eq!(instance(Some("prod"), full).unwrap(), full);
        let error = instance(Some("staging"), full).unwrap_err().to_string();
        assert!(error.contains("is not in vaults/staging"), "{error}");
    }

    #[test]
    fn recovery_points_from_parts_or_full_name() {
        let full = "vaults/prod/backupInstances/abc/recoveryPoints/rp1";
        assert_eq!(
            recovery_point(Some("prod"), Some("abc"), "rp1").unwrap(),
            full
        );
        assert_eq!(recovery_point(None, None, full).unwrap(), full);
        assert_eq!(
            recovery_point(Some("prod"), Some("abc"), full).unwrap(),
            full
        );
        assert!(recovery_point(Some("prod"), Some("other"), full).is_err());
        assert!(recovery_point(Some("prod"), None, "rp1").is_err());
        assert!(recovery_point(None, Some("abc"), "rp1").is_err());
    }

    #[test]
    fn secret_refs_show_the_short_id_of_stored_secrets() {
        assert_eq!(secret_ref_short("secrets/app"), "app");
        assert_eq!(
            secret_ref_short("env://PGVAULT_SECRET_APP"),
            "env://PGVAULT_SECRET_APP"
        );
        assert_eq!(secret_ref("app").unwrap(), "secrets/app");
        assert_eq!(secret_ref("secret://app/3").unwrap(), "secret://app/3");
    }
}
