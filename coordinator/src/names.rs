//! Resource names for the coordinator's handlers: the grammar lives in
//! `pgvault_proto::names` (shared with the CLI); this module turns its
//! errors into `CoordinatorError::invalid(field, …)` naming the request
//! field, and hands out owned ids.

use pgvault_proto::names::{self as grammar, NameError};
use uuid::Uuid;

use crate::error::{CoordinatorError, Result};

pub use grammar::{
    InstanceRef, agent_name, dead_letter_name, instance_name, job_name, policy_name,
    recovery_point_name, secret_name, server_name, token_name, vault_name,
};

/// The error of `field` for a refused name or id.
fn invalid(field: &str) -> impl FnOnce(NameError) -> CoordinatorError + '_ {
    move |error| CoordinatorError::invalid(field, error.to_string())
}

/// Checks a short id: 1–63 characters of `[a-z0-9-]`, starting with a letter.
pub fn validate_short_id(field: &str, id: &str) -> Result<()> {
    grammar::validate_short_id(id).map_err(invalid(field))
}

/// `vaults/{vault}` → vault id.
pub fn parse_vault(field: &str, name: &str) -> Result<String> {
    Ok(grammar::parse_vault(name)
        .map_err(invalid(field))?
        .to_owned())
}

/// `vaults/{vault}/policies/{policy}` → (vault, policy).
pub fn parse_policy(field: &str, name: &str) -> Result<(String, String)> {
    let (vault, policy) = grammar::parse_policy(name).map_err(invalid(field))?;
    Ok((vault.to_owned(), policy.to_owned()))
}

/// `servers/{server}` → server id.
pub fn parse_server(field: &str, name: &str) -> Result<String> {
    Ok(grammar::parse_server(name)
        .map_err(invalid(field))?
        .to_owned())
}

/// `secrets/{secret}` → secret id.
pub fn parse_secret(field: &str, name: &str) -> Result<String> {
    Ok(grammar::parse_secret(name)
        .map_err(invalid(field))?
        .to_owned())
}

/// `vaults/{vault}/backupInstances/{instance}` → (vault, instance id or
/// short name). Handlers resolve it with `crate::api::instance_lookup`.
pub fn parse_instance<'a>(field: &str, name: &'a str) -> Result<(String, InstanceRef<'a>)> {
    let (vault, instance) = grammar::parse_instance_ref(name).map_err(invalid(field))?;
    Ok((vault.to_owned(), instance))
}

/// `vaults/{v}/backupInstances/{i}/recoveryPoints/{p}` → (vault, instance
/// id or short name, point).
pub fn parse_recovery_point<'a>(
    field: &str,
    name: &'a str,
) -> Result<(String, InstanceRef<'a>, Uuid)> {
    let (vault, instance, point) =
        grammar::parse_recovery_point_ref(name).map_err(invalid(field))?;
    Ok((vault.to_owned(), instance, point))
}

/// `jobs/{job}` → job id.
pub fn parse_job(field: &str, name: &str) -> Result<Uuid> {
    grammar::parse_job(name).map_err(invalid(field))
}

/// `deadLetters/{dead_letter}` → dead letter id.
pub fn parse_dead_letter(field: &str, name: &str) -> Result<Uuid> {
    grammar::parse_dead_letter(name).map_err(invalid(field))
}

/// `agents/{agent}` → agent id.
pub fn parse_agent(field: &str, name: &str) -> Result<String> {
    Ok(grammar::parse_agent(name)
        .map_err(invalid(field))?
        .to_owned())
}

/// `tokens/{uuid}` → token id.
pub fn parse_token(field: &str, name: &str) -> Result<Uuid> {
    grammar::parse_token(name).map_err(invalid(field))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_names_name_the_request_field() {
        let err = parse_vault("parent", "vault/prod").unwrap_err();
        assert_eq!(
            err.to_string(),
            "parent: \"vault/prod\" is not a resource name of the form \"vaults/{vault}\""
        );
        let err = validate_short_id("vault_id", "Prod").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("vault_id: \"Prod\" is not a valid id"),
            "{err}"
        );
        let err = parse_token("principal", "tokens/x").unwrap_err();
        assert_eq!(err.to_string(), "principal: must be \"tokens/{uuid}\"");
    }

    #[test]
    fn ids_come_back_owned() {
        let id = Uuid::new_v4();
        assert_eq!(
            parse_instance("name", &instance_name("prod", id)).unwrap(),
            ("prod".to_owned(), InstanceRef::Id(id))
        );
        assert_eq!(parse_job("name", &job_name(id)).unwrap(), id);
    }
}
