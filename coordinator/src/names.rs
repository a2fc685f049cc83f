//! Resource names (`vaults/{vault}`, `vaults/{v}/backupInstances/{uuid}`,
//! `jobs/{uuid}`, …): parsing them from requests and formatting them for
//! responses, plus the rule for short ids (vault, policy, server, secret).

use uuid::Uuid;

use crate::error::{CoordinatorError, Result};

/// Checks a short id: 1–63 characters of `[a-z0-9-]`, starting with a letter.
pub fn validate_short_id(field: &str, id: &str) -> Result<()> {
    let rule =
        "must be 1-63 characters of lowercase letters, digits and '-', starting with a letter";
    if id.is_empty() {
        return Err(CoordinatorError::invalid(
            field,
            format!("is required; it {rule}"),
        ));
    }
    let valid = id.len() <= 63
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(CoordinatorError::invalid(
            field,
            format!("\"{}\" is not a valid id: it {rule}", printable(id)),
        ))
    }
}

/// `id` shortened and stripped of control characters, for error messages.
fn printable(id: &str) -> String {
    id.chars().filter(|c| !c.is_control()).take(80).collect()
}

/// Splits `name` into segments, checking literal collection segments.
/// `pattern` is like `["vaults", "*", "policies", "*"]`; returns the `*` parts.
fn parse<'a>(field: &str, name: &'a str, pattern: &[&str], expected: &str) -> Result<Vec<&'a str>> {
    if name.is_empty() {
        return Err(CoordinatorError::invalid(
            field,
            format!("is required (\"{expected}\")"),
        ));
    }
    let parts: Vec<&str> = name.split('/').collect();
    let shaped = parts.len() == pattern.len()
        && parts.iter().zip(pattern).all(|(part, want)| {
            if *want == "*" {
                !part.is_empty()
            } else {
                part == want
            }
        });
    if !shaped {
        return Err(CoordinatorError::invalid(
            field,
            format!(
                "\"{}\" is not a resource name of the form \"{expected}\"",
                printable(name)
            ),
        ));
    }
    Ok(parts
        .iter()
        .zip(pattern)
        .filter(|(_, want)| **want == "*")
        .map(|(part, _)| *part)
        .collect())
}

fn uuid(field: &str, raw: &str, kind: &str) -> Result<Uuid> {
    Uuid::parse_str(raw).map_err(|_| {
        CoordinatorError::invalid(
            field,
            format!("\"{}\" is not a valid {kind} id (a UUID)", printable(raw)),
        )
    })
}

/// `vaults/{vault}` → vault id.
pub fn parse_vault(field: &str, name: &str) -> Result<String> {
    Ok(parse(field, name, &["vaults", "*"], "vaults/{vault}")?[0].to_string())
}

pub fn vault_name(vault: &str) -> String {
    format!("vaults/{vault}")
}

/// `vaults/{vault}/policies/{policy}` → (vault, policy).
pub fn parse_policy(field: &str, name: &str) -> Result<(String, String)> {
    let p = parse(
        field,
        name,
        &["vaults", "*", "policies", "*"],
        "vaults/{vault}/policies/{policy}",
    )?;
    Ok((p[0].to_string(), p[1].to_string()))
}

pub fn policy_name(vault: &str, policy: &str) -> String {
    format!("vaults/{vault}/policies/{policy}")
}

/// `servers/{server}` → server id.
pub fn parse_server(field: &str, name: &str) -> Result<String> {
    Ok(parse(field, name, &["servers", "*"], "servers/{server}")?[0].to_string())
}

pub fn server_name(server: &str) -> String {
    format!("servers/{server}")
}

/// `secrets/{secret}` → secret id.
pub fn parse_secret(field: &str, name: &str) -> Result<String> {
    Ok(parse(field, name, &["secrets", "*"], "secrets/{secret}")?[0].to_string())
}

pub fn secret_name(secret: &str) -> String {
    format!("secrets/{secret}")
}

/// `vaults/{vault}/backupInstances/{instance}` → (vault, instance).
pub fn parse_instance(field: &str, name: &str) -> Result<(String, Uuid)> {
    let p = parse(
        field,
        name,
        &["vaults", "*", "backupInstances", "*"],
        "vaults/{vault}/backupInstances/{instance}",
    )?;
    Ok((p[0].to_string(), uuid(field, p[1], "backup instance")?))
}

pub fn instance_name(vault: &str, instance: Uuid) -> String {
    format!("vaults/{vault}/backupInstances/{instance}")
}

/// `vaults/{v}/backupInstances/{i}/recoveryPoints/{p}` → (vault, instance, point).
pub fn parse_recovery_point(field: &str, name: &str) -> Result<(String, Uuid, Uuid)> {
    let p = parse(
        field,
        name,
        &["vaults", "*", "backupInstances", "*", "recoveryPoints", "*"],
        "vaults/{vault}/backupInstances/{instance}/recoveryPoints/{point}",
    )?;
    Ok((
        p[0].to_string(),
        uuid(field, p[1], "backup instance")?,
        uuid(field, p[2], "recovery point")?,
    ))
}

pub fn recovery_point_name(vault: &str, instance: Uuid, point: Uuid) -> String {
    format!("vaults/{vault}/backupInstances/{instance}/recoveryPoints/{point}")
}

/// `jobs/{job}` → job id.
pub fn parse_job(field: &str, name: &str) -> Result<Uuid> {
    let p = parse(field, name, &["jobs", "*"], "jobs/{job}")?;
    uuid(field, p[0], "job")
}

pub fn job_name(job: Uuid) -> String {
    format!("jobs/{job}")
}

/// `deadLetters/{dead_letter}` → dead letter id.
pub fn parse_dead_letter(field: &str, name: &str) -> Result<Uuid> {
    let p = parse(
        field,
        name,
        &["deadLetters", "*"],
        "deadLetters/{dead_letter}",
    )?;
    uuid(field, p[0], "dead letter")
}

pub fn dead_letter_name(dead_letter: Uuid) -> String {
    format!("deadLetters/{dead_letter}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids() {
        assert!(validate_short_id("vault_id", "prod-eu1").is_ok());
        assert!(validate_short_id("vault_id", "1prod").is_err());
        assert!(validate_short_id("vault_id", "Prod").is_err());
        assert!(validate_short_id("vault_id", "").is_err());
        assert!(validate_short_id("vault_id", &"a".repeat(64)).is_err());
        assert!(validate_short_id("vault_id", &"a".repeat(63)).is_ok());
    }

    #[test]
    fn names_round_trip() {
        let id = Uuid::new_v4();
        let point = Uuid::new_v4();
        assert_eq!(parse_vault("name", "vaults/prod").unwrap(), "prod");
        assert_eq!(
            parse_policy("name", "vaults/prod/policies/daily").unwrap(),
            ("prod".into(), "daily".into())
        );
        assert_eq!(
            parse_instance("name", &instance_name("prod", id)).unwrap(),
            ("prod".into(), id)
        );
        assert_eq!(
            parse_recovery_point("name", &recovery_point_name("prod", id, point)).unwrap(),
            ("prod".into(), id, point)
        );
        assert_eq!(parse_job("name", &job_name(id)).unwrap(), id);
        assert_eq!(
            parse_dead_letter("name", &dead_letter_name(id)).unwrap(),
            id
        );
    }

    #[test]
    fn malformed_names_name_the_field() {
        let err = parse_vault("parent", "vault/prod").unwrap_err();
        assert!(err.to_string().starts_with("parent: "), "{err}");
        assert!(parse_job("name", "jobs/not-a-uuid").is_err());
        assert!(parse_vault("name", "vaults/").is_err());
    }
}
