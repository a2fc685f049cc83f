//! Resource names of the `pgvault.v1` API and the rule for short ids: the
//! grammar both ends of the contract share. The coordinator parses names
//! from requests and formats them into responses with it; the CLI builds
//! names from what users type with it.
//!
//! A name is collection segments each followed by an id:
//! `vaults/{vault}`, `vaults/{vault}/policies/{policy}`,
//! `vaults/{vault}/backupInstances/{instance}`,
//! `vaults/{vault}/backupInstances/{instance}/recoveryPoints/{point}`,
//! `jobs/{job}`, `servers/{server}`, `secrets/{secret}`,
//! `deadLetters/{dead_letter}`, `tokens/{token}`, `agents/{agent}`. Vault,
//! policy, server, secret and agent ids are short ids chosen by users; the
//! others are UUIDs.

use uuid::Uuid;

/// What a short id must be, as error messages say it.
pub const SHORT_ID_RULE: &str =
    "must be 1-63 characters of lowercase letters, digits and '-', starting with a letter";

/// Why a name or id was refused. Messages name the problem, not the request
/// field: callers prefix the field (the coordinator) or their own context.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// An empty name where one is required.
    #[error("is required (\"{pattern}\")")]
    Missing { pattern: &'static str },
    /// Segments that do not have the expected shape.
    #[error("\"{name}\" is not a resource name of the form \"{pattern}\"")]
    Malformed { name: String, pattern: &'static str },
    /// A segment that should be a UUID and is not.
    #[error("\"{id}\" is not a valid {kind} id (a UUID)")]
    NotUuid { id: String, kind: &'static str },
    /// An empty short id.
    #[error("is required; it {SHORT_ID_RULE}")]
    ShortIdMissing,
    /// A short id breaking [`SHORT_ID_RULE`].
    #[error("\"{id}\" is not a valid id: it {SHORT_ID_RULE}")]
    ShortIdInvalid { id: String },
    /// A backup instance segment that is neither a UUID nor a short name.
    #[error(
        "\"{id}\" is neither a backup instance id (a UUID) nor a short name (it {SHORT_ID_RULE})"
    )]
    NotInstance { id: String },
    /// Anything but `tokens/{uuid}` where a token is expected.
    #[error("must be \"tokens/{{uuid}}\"")]
    NotToken,
}

/// The shape of one kind of name: its collections, each followed by an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pattern {
    /// Collection segments in order, e.g. `["vaults", "policies"]`.
    pub collections: &'static [&'static str],
    /// The pattern as messages show it, e.g. `vaults/{vault}/policies/{policy}`.
    pub display: &'static str,
}

pub const VAULT: Pattern = Pattern {
    collections: &["vaults"],
    display: "vaults/{vault}",
};
pub const POLICY: Pattern = Pattern {
    collections: &["vaults", "policies"],
    display: "vaults/{vault}/policies/{policy}",
};
pub const BACKUP_INSTANCE: Pattern = Pattern {
    collections: &["vaults", "backupInstances"],
    display: "vaults/{vault}/backupInstances/{instance}",
};
pub const RECOVERY_POINT: Pattern = Pattern {
    collections: &["vaults", "backupInstances", "recoveryPoints"],
    display: "vaults/{vault}/backupInstances/{instance}/recoveryPoints/{point}",
};
pub const SERVER: Pattern = Pattern {
    collections: &["servers"],
    display: "servers/{server}",
};
pub const SECRET: Pattern = Pattern {
    collections: &["secrets"],
    display: "secrets/{secret}",
};
pub const JOB: Pattern = Pattern {
    collections: &["jobs"],
    display: "jobs/{job}",
};
pub const DEAD_LETTER: Pattern = Pattern {
    collections: &["deadLetters"],
    display: "deadLetters/{dead_letter}",
};
pub const TOKEN: Pattern = Pattern {
    collections: &["tokens"],
    display: "tokens/{token}",
};
pub const AGENT: Pattern = Pattern {
    collections: &["agents"],
    display: "agents/{agent}",
};

impl Pattern {
    /// The ids of `name` if it has exactly this shape (no empty id), else `None`.
    pub fn ids<'a>(&self, name: &'a str) -> Option<Vec<&'a str>> {
        let segments: Vec<&str> = name.split('/').collect();
        if segments.len() != self.collections.len() * 2 {
            return None;
        }
        let mut ids = Vec::with_capacity(self.collections.len());
        for (pair, collection) in segments.chunks(2).zip(self.collections) {
            if pair[0] != *collection || pair[1].is_empty() {
                return None;
            }
            ids.push(pair[1]);
        }
        Some(ids)
    }

    /// Like [`Pattern::ids`], with an error saying what was expected.
    pub fn parse<'a>(&self, name: &'a str) -> Result<Vec<&'a str>, NameError> {
        if name.is_empty() {
            return Err(NameError::Missing {
                pattern: self.display,
            });
        }
        self.ids(name).ok_or_else(|| NameError::Malformed {
            name: printable(name),
            pattern: self.display,
        })
    }

    /// The name of the resource with these ids (one per collection).
    pub fn format(&self, ids: &[&str]) -> String {
        debug_assert_eq!(ids.len(), self.collections.len());
        let mut name = String::new();
        for (collection, id) in self.collections.iter().zip(ids) {
            if !name.is_empty() {
                name.push('/');
            }
            name.push_str(collection);
            name.push('/');
            name.push_str(id);
        }
        name
    }

    /// The name of the resource `id` of this kind inside `parent`, an
    /// already-built name of the parent (`vaults/prod` → `vaults/prod/policies/{id}`).
    pub fn format_in(&self, parent: &str, id: &str) -> String {
        let collection = self.collections.last().copied().unwrap_or_default();
        format!("{parent}/{collection}/{id}")
    }
}

/// Checks a short id: 1–63 characters of `[a-z0-9-]`, starting with a letter.
pub fn validate_short_id(id: &str) -> Result<(), NameError> {
    if id.is_empty() {
        return Err(NameError::ShortIdMissing);
    }
    let valid = id.len() <= 63
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(NameError::ShortIdInvalid { id: printable(id) })
    }
}

/// `id` shortened and stripped of control characters, for error messages.
fn printable(id: &str) -> String {
    id.chars().filter(|c| !c.is_control()).take(80).collect()
}

fn uuid(raw: &str, kind: &'static str) -> Result<Uuid, NameError> {
    Uuid::parse_str(raw).map_err(|_| NameError::NotUuid {
        id: printable(raw),
        kind,
    })
}

/// `vaults/{vault}` → vault id.
pub fn parse_vault(name: &str) -> Result<&str, NameError> {
    Ok(VAULT.parse(name)?[0])
}

pub fn vault_name(vault: &str) -> String {
    VAULT.format(&[vault])
}

/// `vaults/{vault}/policies/{policy}` → (vault, policy).
pub fn parse_policy(name: &str) -> Result<(&str, &str), NameError> {
    let ids = POLICY.parse(name)?;
    Ok((ids[0], ids[1]))
}

pub fn policy_name(vault: &str, policy: &str) -> String {
    POLICY.format(&[vault, policy])
}

/// `servers/{server}` → server id.
pub fn parse_server(name: &str) -> Result<&str, NameError> {
    Ok(SERVER.parse(name)?[0])
}

pub fn server_name(server: &str) -> String {
    SERVER.format(&[server])
}

/// `secrets/{secret}` → secret id.
pub fn parse_secret(name: &str) -> Result<&str, NameError> {
    Ok(SECRET.parse(name)?[0])
}

pub fn secret_name(secret: &str) -> String {
    SECRET.format(&[secret])
}

/// `vaults/{vault}/backupInstances/{instance}` → (vault, instance).
pub fn parse_instance(name: &str) -> Result<(&str, Uuid), NameError> {
    let ids = BACKUP_INSTANCE.parse(name)?;
    Ok((ids[0], uuid(ids[1], "backup instance")?))
}

pub fn instance_name(vault: &str, instance: Uuid) -> String {
    BACKUP_INSTANCE.format(&[vault, &instance.to_string()])
}

/// How a name identifies a backup instance: by its UUID, or by its short
/// name in the vault (`db1-billing`, a short id; the coordinator looks it
/// up). Short names never parse as UUIDs, so the two cannot be confused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceRef<'a> {
    Id(Uuid),
    ShortName(&'a str),
}

impl std::fmt::Display for InstanceRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InstanceRef::Id(id) => write!(f, "{id}"),
            InstanceRef::ShortName(name) => f.write_str(name),
        }
    }
}

/// The instance segment of a name: a UUID or a short name.
fn instance_ref(raw: &str) -> Result<InstanceRef<'_>, NameError> {
    if let Ok(id) = Uuid::parse_str(raw) {
        return Ok(InstanceRef::Id(id));
    }
    validate_short_id(raw).map_err(|_| NameError::NotInstance { id: printable(raw) })?;
    Ok(InstanceRef::ShortName(raw))
}

/// `vaults/{vault}/backupInstances/{instance}` → (vault, instance id or
/// short name).
pub fn parse_instance_ref(name: &str) -> Result<(&str, InstanceRef<'_>), NameError> {
    let ids = BACKUP_INSTANCE.parse(name)?;
    Ok((ids[0], instance_ref(ids[1])?))
}

/// `vaults/{v}/backupInstances/{i}/recoveryPoints/{p}` → (vault, instance
/// id or short name, point).
pub fn parse_recovery_point_ref(name: &str) -> Result<(&str, InstanceRef<'_>, Uuid), NameError> {
    let ids = RECOVERY_POINT.parse(name)?;
    Ok((
        ids[0],
        instance_ref(ids[1])?,
        uuid(ids[2], "recovery point")?,
    ))
}

/// `vaults/{v}/backupInstances/{i}/recoveryPoints/{p}` → (vault, instance, point).
pub fn parse_recovery_point(name: &str) -> Result<(&str, Uuid, Uuid), NameError> {
    let ids = RECOVERY_POINT.parse(name)?;
    Ok((
        ids[0],
        uuid(ids[1], "backup instance")?,
        uuid(ids[2], "recovery point")?,
    ))
}

pub fn recovery_point_name(vault: &str, instance: Uuid, point: Uuid) -> String {
    RECOVERY_POINT.format(&[vault, &instance.to_string(), &point.to_string()])
}

/// `jobs/{job}` → job id.
pub fn parse_job(name: &str) -> Result<Uuid, NameError> {
    uuid(JOB.parse(name)?[0], "job")
}

pub fn job_name(job: Uuid) -> String {
    JOB.format(&[&job.to_string()])
}

/// `deadLetters/{dead_letter}` → dead letter id.
pub fn parse_dead_letter(name: &str) -> Result<Uuid, NameError> {
    uuid(DEAD_LETTER.parse(name)?[0], "dead letter")
}

pub fn dead_letter_name(dead_letter: Uuid) -> String {
    DEAD_LETTER.format(&[&dead_letter.to_string()])
}

/// `tokens/{uuid}` → token id; surrounding whitespace is ignored.
pub fn parse_token(name: &str) -> Result<Uuid, NameError> {
    TOKEN
        .ids(name.trim())
        .and_then(|ids| Uuid::parse_str(ids[0]).ok())
        .ok_or(NameError::NotToken)
}

pub fn token_name(token: Uuid) -> String {
    TOKEN.format(&[&token.to_string()])
}

/// `agents/{agent}` → agent id.
pub fn parse_agent(name: &str) -> Result<&str, NameError> {
    Ok(AGENT.parse(name)?[0])
}

pub fn agent_name(agent: &str) -> String {
    AGENT.format(&[agent])
}

/// The last segment of a name (its own id): what tables show.
pub fn short(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// The vault id a vault or child name belongs to: "prod" for `vaults/prod/…`,
/// "" for names outside vaults.
pub fn vault_of(name: &str) -> &str {
    let mut segments = name.split('/');
    match (segments.next(), segments.next()) {
        (Some("vaults"), Some(id)) => id,
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_follow_the_rule() {
        assert!(validate_short_id("prod-eu1").is_ok());
        assert!(validate_short_id("1prod").is_err());
        assert!(validate_short_id("Prod").is_err());
        assert_eq!(validate_short_id(""), Err(NameError::ShortIdMissing));
        assert!(validate_short_id(&"a".repeat(64)).is_err());
        assert!(validate_short_id(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn short_id_messages_state_the_rule() {
        let error = validate_short_id("Prod").unwrap_err().to_string();
        assert_eq!(
            error,
            "\"Prod\" is not a valid id: it must be 1-63 characters of lowercase letters, digits and '-', starting with a letter"
        );
        assert!(
            validate_short_id("")
                .unwrap_err()
                .to_string()
                .starts_with("is required; it must be 1-63")
        );
    }

    #[test]
    fn names_round_trip() {
        let id = Uuid::new_v4();
        let point = Uuid::new_v4();
        assert_eq!(parse_vault("vaults/prod").unwrap(), "prod");
        assert_eq!(vault_name("prod"), "vaults/prod");
        assert_eq!(
            parse_policy(&policy_name("prod", "daily")).unwrap(),
            ("prod", "daily")
        );
        assert_eq!(parse_server(&server_name("pg1")).unwrap(), "pg1");
        assert_eq!(parse_secret(&secret_name("app")).unwrap(), "app");
        assert_eq!(parse_agent(&agent_name("dc1")).unwrap(), "dc1");
        assert_eq!(agent_name("dc1"), "agents/dc1");
        assert_eq!(
            parse_instance(&instance_name("prod", id)).unwrap(),
            ("prod", id)
        );
        assert_eq!(
            parse_recovery_point(&recovery_point_name("prod", id, point)).unwrap(),
            ("prod", id, point)
        );
        assert_eq!(parse_job(&job_name(id)).unwrap(), id);
        assert_eq!(parse_dead_letter(&dead_letter_name(id)).unwrap(), id);
        assert_eq!(parse_token(&format!(" {} ", token_name(id))).unwrap(), id);
    }

    #[test]
    fn instances_are_named_by_id_or_short_name() {
        let id = Uuid::new_v4();
        assert_eq!(
            parse_instance_ref(&instance_name("prod", id)).unwrap(),
            ("prod", InstanceRef::Id(id))
        );
        assert_eq!(
            parse_instance_ref("vaults/prod/backupInstances/db1-billing").unwrap(),
            ("prod", InstanceRef::ShortName("db1-billing"))
        );
        let point = Uuid::new_v4();
        assert_eq!(
            parse_recovery_point_ref(&format!(
                "vaults/prod/backupInstances/db1-billing/recoveryPoints/{point}"
            ))
            .unwrap(),
            ("prod", InstanceRef::ShortName("db1-billing"), point)
        );
        let error = parse_instance_ref("vaults/prod/backupInstances/Db 1")
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("\"Db 1\" is neither a backup instance id"),
            "{error}"
        );
        assert_eq!(InstanceRef::ShortName("db1-x").to_string(), "db1-x");
    }

    #[test]
    fn malformed_names_say_the_expected_form() {
        assert_eq!(
            parse_vault("vault/prod").unwrap_err().to_string(),
            "\"vault/prod\" is not a resource name of the form \"vaults/{vault}\""
        );
        assert_eq!(
            parse_vault("").unwrap_err().to_string(),
            "is required (\"vaults/{vault}\")"
        );
        assert!(parse_vault("vaults/").is_err());
        assert!(parse_vault("vaults/prod/policies/x").is_err());
        assert_eq!(
            parse_job("jobs/not-a-uuid").unwrap_err().to_string(),
            "\"not-a-uuid\" is not a valid job id (a UUID)"
        );
        assert_eq!(
            parse_token("tokens/abc").unwrap_err().to_string(),
            "must be \"tokens/{uuid}\""
        );
    }

    #[test]
    fn control_characters_never_reach_messages() {
        let error = parse_vault("vault\n/x\u{7}").unwrap_err().to_string();
        assert!(!error.contains('\n') && !error.contains('\u{7}'), "{error}");
    }

    #[test]
    fn pattern_ids_need_every_collection_and_id() {
        assert_eq!(
            RECOVERY_POINT.ids("vaults/v/backupInstances/i/recoveryPoints/p"),
            Some(vec!["v", "i", "p"])
        );
        assert_eq!(RECOVERY_POINT.ids("vaults/v/backupInstances/i"), None);
        assert_eq!(POLICY.ids("vaults//policies/p"), None);
        assert_eq!(POLICY.format_in("vaults/v", "p"), "vaults/v/policies/p");
    }

    #[test]
    fn short_and_vault_of() {
        assert_eq!(short("vaults/prod/backupInstances/abc"), "abc");
        assert_eq!(short("abc"), "abc");
        assert_eq!(vault_of("vaults/prod/backupInstances/abc"), "prod");
        assert_eq!(vault_of("vaults/prod"), "prod");
        assert_eq!(vault_of("jobs/1"), "");
    }
}
