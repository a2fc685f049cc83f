//! The `PGVAULT_*` environment: which variables pgvault knows, the settings
//! they carry (`PGVAULT_<SECTION>__<KEY>`, e.g. `PGVAULT_COORDINATOR__LISTEN`),
//! and the check that refuses any other `PGVAULT_*` variable, so a misspelt
//! one (`PGVAULT_TELEMTRY__…`, `PGVAULT_COORDNATOR__…`) fails at start
//! instead of being ignored. Read from the process once
//! ([`Environment::from_process`]); tests hand in their own.

use std::collections::BTreeSet;

use anyhow::bail;
use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

/// Every variable pgvault reads starts with this.
pub const PREFIX: &str = "PGVAULT_";
/// Between section and key: `PGVAULT_COORDINATOR__LISTEN`.
const SEPARATOR: &str = "__";
/// How figment names where a setting came from; see [`Environment::variable`].
pub const SOURCE: &str = "`PGVAULT_` environment variable(s)";

/// The settings sections (`[coordinator]` in `pgvault.toml`,
/// `PGVAULT_COORDINATOR__…` in the environment).
pub const SECTIONS: [&str; 7] = [
    "coordinator",
    "queue",
    "worker",
    "up",
    "log",
    "agent",
    "telemetry",
];

/// `PGVAULT_*` variables that are no setting, and who reads them.
pub const OTHER_VARIABLES: [(&str, &str); 14] = [
    ("PGVAULT_TOKEN", "the CLI's API token"),
    (
        "PGVAULT_AGENT_TOKEN",
        "the token of pgvault agent run and pgvault-agent",
    ),
    ("PGVAULT_ENDPOINT", "the CLI's coordinator endpoint"),
    (
        "PGVAULT_CA_CERT",
        "the CLI's CA certificate for https:// endpoints",
    ),
    ("PGVAULT_CONFIG", "the settings file"),
    (
        "PGVAULT_PG_BIN_DIR",
        "PostgreSQL server binaries for private clusters",
    ),
    ("PGVAULT_PG_OS_USER", "the OS user private clusters run as"),
    ("PGVAULT_BIN", "the binary end-to-end tests run"),
    (
        "PGVAULT_RABBITMQ_SERVER",
        "RabbitMQ for tests and benchmarks",
    ),
    ("PGVAULT_AZURITE_BIN", "Azurite for tests"),
    ("PGVAULT_MOTO_SERVER", "moto (S3) for tests"),
    ("PGVAULT_TEST_THREADS", "scripts/test.sh"),
    ("PGVAULT_DEMO_DIR", "scripts/demo-source.sh"),
    ("PGVAULT_DEMO_PORT", "scripts/demo-source.sh"),
];

/// The `PGVAULT_*` variables of a process.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    vars: Vec<(String, String)>,
}

impl Environment {
    /// This process's `PGVAULT_*` variables (values read lossily as UTF-8).
    pub fn from_process() -> Environment {
        Environment::from_vars(std::env::vars_os().map(|(name, value)| {
            (
                name.to_string_lossy().into_owned(),
                value.to_string_lossy().into_owned(),
            )
        }))
    }

    /// The `PGVAULT_*` variables among `vars`.
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Environment {
        Environment {
            vars: vars
                .into_iter()
                .filter(|(name, _)| name.starts_with(PREFIX))
                .collect(),
        }
    }

    /// The figment provider of the settings variables: those of a known
    /// section, as `section.key` (lowercase).
    pub fn settings(&self) -> SettingsVariables {
        SettingsVariables {
            settings: self
                .vars
                .iter()
                .filter_map(|(name, value)| Some((setting_key(name)?, value.clone())))
                .collect(),
        }
    }

    /// Refuses every `PGVAULT_*` variable that is neither a setting of a
    /// known section, nor one of [`OTHER_VARIABLES`], nor (when
    /// `secret_env_prefix` is set) a secret variable starting with it.
    pub fn check(&self, secret_env_prefix: &str) -> anyhow::Result<()> {
        let unknown: BTreeSet<&str> = self
            .vars
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| setting_key(name).is_none())
            .filter(|name| !OTHER_VARIABLES.iter().any(|(known, _)| known == name))
            .filter(|name| secret_env_prefix.is_empty() || !name.starts_with(secret_env_prefix))
            .collect();
        let Some(first) = unknown.first() else {
            return Ok(());
        };
        let sections: Vec<String> = SECTIONS.iter().map(|s| s.to_uppercase()).collect();
        let others: Vec<&str> = OTHER_VARIABLES.iter().map(|(name, _)| *name).collect();
        let secrets = if secret_env_prefix.is_empty() {
            "none (coordinator.secret_env_prefix is not set)".to_string()
        } else {
            format!("{secret_env_prefix}* (coordinator.secret_env_prefix)")
        };
        let more = match unknown.len() {
            1 => String::new(),
            n => format!(
                " (and {} more: {})",
                n - 1,
                unknown
                    .iter()
                    .skip(1)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        bail!(
            "unknown environment variable {first}{more}: pgvault reads PGVAULT_<SECTION>__<KEY> settings for the sections {}, the variables {}, and secret variables {secrets}; fix its name or unset it",
            sections.join(", "),
            others.join(", "),
        )
    }

    /// The variable a setting key came from (`coordinator.listen` →
    /// `PGVAULT_COORDINATOR__LISTEN`).
    pub fn variable(keys: &[&str]) -> String {
        format!("{PREFIX}{}", keys.join(SEPARATOR).to_uppercase())
    }
}

/// `section.key` of a settings variable of a known section, else `None`.
fn setting_key(name: &str) -> Option<String> {
    let rest = name.strip_prefix(PREFIX)?.to_ascii_lowercase();
    let (section, key) = rest.split_once(SEPARATOR)?;
    if !SECTIONS.contains(&section) || key.is_empty() {
        return None;
    }
    Some(format!("{section}.{}", key.replace(SEPARATOR, ".")))
}

/// The settings variables as a figment provider (values parsed as figment's
/// own environment provider does: `5`, `true`, `[a, b]`, else a string).
pub struct SettingsVariables {
    settings: Vec<(String, String)>,
}

impl Provider for SettingsVariables {
    fn metadata(&self) -> Metadata {
        Metadata::named(SOURCE)
            .interpolater(|_: &Profile, keys: &[&str]| Environment::variable(keys))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (key, value) in &self.settings {
            let parsed: Value = value.parse().unwrap_or_else(|never| match never {});
            let path: Vec<&str> = key.split('.').collect();
            insert(&mut dict, &path, parsed);
        }
        Ok(Profile::Default.collect(dict))
    }
}

/// Puts `value` at `path` into `dict`, creating the dictionaries on the way.
fn insert(dict: &mut Dict, path: &[&str], value: Value) {
    match path {
        [] => {}
        [key] => {
            dict.insert((*key).to_string(), value);
        }
        [key, rest @ ..] => {
            let entry = dict
                .entry((*key).to_string())
                .or_insert_with(|| Value::from(Dict::new()));
            if entry.as_dict().is_none() {
                *entry = Value::from(Dict::new());
            }
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(names: &[&str]) -> Environment {
        Environment::from_vars(names.iter().map(|n| (n.to_string(), "x".to_string())))
    }

    #[test]
    fn settings_variables_map_to_section_keys() {
        assert_eq!(
            setting_key("PGVAULT_COORDINATOR__LISTEN").as_deref(),
            Some("coordinator.listen")
        );
        assert_eq!(
            setting_key("PGVAULT_WORKER__SPLIT_THRESHOLD_MB").as_deref(),
            Some("worker.split_threshold_mb")
        );
        assert_eq!(setting_key("PGVAULT_TELEMTRY__ENDPOINT"), None);
        assert_eq!(setting_key("PGVAULT_TOKEN"), None);
        assert_eq!(setting_key("PGVAULT_LOG__"), None);
        assert_eq!(
            Environment::variable(&["coordinator", "listen"]),
            "PGVAULT_COORDINATOR__LISTEN"
        );
    }

    #[test]
    fn settings_variables_nest_by_section() {
        let env = Environment::from_vars([
            (
                "PGVAULT_COORDINATOR__LISTEN".to_string(),
                "0.0.0.0:1".to_string(),
            ),
            (
                "PGVAULT_COORDINATOR__MAX_ATTEMPTS".to_string(),
                "5".to_string(),
            ),
            ("PGVAULT_TOKEN".to_string(), "t".to_string()),
        ]);
        let data = env.settings().data().unwrap();
        let dict = &data[&Profile::Default];
        let coordinator = dict["coordinator"].as_dict().unwrap();
        assert_eq!(coordinator["listen"].as_str(), Some("0.0.0.0:1"));
        assert_eq!(coordinator["max_attempts"].to_u128(), Some(5));
        assert_eq!(dict.len(), 1, "{dict:?}");
    }

    #[test]
    fn known_variables_pass() {
        env(&[
            "PGVAULT_COORDINATOR__LISTEN",
            "PGVAULT_LOG__FILTER",
            "PGVAULT_TOKEN",
            "PGVAULT_ENDPOINT",
            "PGVAULT_CA_CERT",
            "PGVAULT_PG_BIN_DIR",
            "HOME",
            "AWS_REGION",
        ])
        .check("")
        .unwrap();
        env(&["PGVAULT_SECRET_SHOP", "PGVAULT_SECRET__ODD"])
            .check("PGVAULT_SECRET_")
            .unwrap();
    }

    #[test]
    fn a_misspelt_section_is_refused_naming_it_and_the_valid_ones() {
        let err = env(&["PGVAULT_TELEMTRY__ENDPOINT", "PGVAULT_COORDINATOR__LISTEN"])
            .check("")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("unknown environment variable PGVAULT_TELEMTRY__ENDPOINT:"),
            "{err}"
        );
        assert!(
            err.contains("COORDINATOR, QUEUE, WORKER, UP, LOG") && err.contains("PGVAULT_TOKEN"),
            "{err}"
        );
    }

    #[test]
    fn secret_variables_pass_only_under_the_configured_prefix() {
        let err = env(&["PGVAULT_SECRET_SHOP"])
            .check("")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("PGVAULT_SECRET_SHOP") && err.contains("secret_env_prefix is not set"),
            "{err}"
        );
        let err = env(&["PGVAULT_SECRET_SHOP", "PGVAULT_TOKN"])
            .check("PGVAULT_SECRET_")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("unknown environment variable PGVAULT_TOKN:"),
            "{err}"
        );
    }

    #[test]
    fn every_unknown_variable_is_named() {
        let err = env(&["PGVAULT_A", "PGVAULT_B", "PGVAULT_C"])
            .check("")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("PGVAULT_A (and 2 more: PGVAULT_B, PGVAULT_C)"),
            "{err}"
        );
    }
}
