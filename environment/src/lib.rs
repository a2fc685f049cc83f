//! The `PGVAULT_*` environment: which variables pgvault knows, how a
//! settings variable names its setting (`PGVAULT_<SECTION>__<KEY>`, e.g.
//! `PGVAULT_COORDINATOR__LISTEN`), and the check that refuses any other
//! `PGVAULT_*` variable, so a misspelt one (`PGVAULT_TELEMTRY__…`,
//! `PGVAULT_COORDNATOR__…`) fails at start instead of being ignored.
//!
//! Shared by `pgvault` (whose settings loader turns the variables into
//! settings) and `pgvault-agent` (which reads its own few through its
//! flags), so the two cannot disagree on what a known variable is. No
//! dependencies, and no reading of the process environment: callers hand
//! in the names.

use std::fmt;

/// Every variable pgvault reads starts with this.
pub const PREFIX: &str = "PGVAULT_";
/// Between section and key: `PGVAULT_COORDINATOR__LISTEN`.
pub const SEPARATOR: &str = "__";

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

/// The variable that sets `coordinator.secret_env_prefix`, under which
/// secret variables pass the check.
pub const SECRET_ENV_PREFIX_VARIABLE: &str = "PGVAULT_COORDINATOR__SECRET_ENV_PREFIX";

/// `section.key` of a settings variable of a known section, else `None`.
pub fn setting_key(name: &str) -> Option<String> {
    let rest = name.strip_prefix(PREFIX)?.to_ascii_lowercase();
    let (section, key) = rest.split_once(SEPARATOR)?;
    if !SECTIONS.contains(&section) || key.is_empty() {
        return None;
    }
    Some(format!("{section}.{}", key.replace(SEPARATOR, ".")))
}

/// The variable a setting key comes from (`coordinator.listen` →
/// `PGVAULT_COORDINATOR__LISTEN`).
pub fn variable(keys: &[&str]) -> String {
    format!("{PREFIX}{}", keys.join(SEPARATOR).to_uppercase())
}

/// Whether pgvault knows `name`: not a `PGVAULT_*` variable at all, a
/// setting of a known section, one of [`OTHER_VARIABLES`], or (when
/// `secret_env_prefix` is set) a secret variable starting with it.
pub fn is_known(name: &str, secret_env_prefix: &str) -> bool {
    !name.starts_with(PREFIX)
        || setting_key(name).is_some()
        || OTHER_VARIABLES.iter().any(|(known, _)| *known == name)
        || (!secret_env_prefix.is_empty() && name.starts_with(secret_env_prefix))
}

/// Refuses every variable among `names` that pgvault does not know (see
/// [`is_known`]).
pub fn check<'a>(
    names: impl IntoIterator<Item = &'a str>,
    secret_env_prefix: &str,
) -> Result<(), UnknownVariables> {
    let mut unknown: Vec<String> = names
        .into_iter()
        .filter(|name| !is_known(name, secret_env_prefix))
        .map(str::to_string)
        .collect();
    unknown.sort();
    unknown.dedup();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(UnknownVariables {
        names: unknown,
        secret_env_prefix: secret_env_prefix.to_string(),
    })
}

/// `PGVAULT_*` variables pgvault does not know; the message names them,
/// the forms pgvault reads, and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownVariables {
    /// Sorted, without repeats; never empty.
    pub names: Vec<String>,
    secret_env_prefix: String,
}

impl fmt::Display for UnknownVariables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sections: Vec<String> = SECTIONS.iter().map(|s| s.to_uppercase()).collect();
        let others: Vec<&str> = OTHER_VARIABLES.iter().map(|(name, _)| *name).collect();
        let secrets = if self.secret_env_prefix.is_empty() {
            "none (coordinator.secret_env_prefix is not set)".to_string()
        } else {
            format!(
                "{}* (coordinator.secret_env_prefix)",
                self.secret_env_prefix
            )
        };
        write!(
            f,
            "unknown environment variable {}: pgvault reads PGVAULT_<SECTION>__<KEY> settings for the sections {}, the variables {}, and secret variables {secrets}; fix its name or unset it",
            first_and_more(&self.names),
            sections.join(", "),
            others.join(", "),
        )
    }
}

impl std::error::Error for UnknownVariables {}

/// `A` for one name, `A (and 2 more: B, C)` for several.
pub fn first_and_more(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [first, rest @ ..] => format!("{first} (and {} more: {})", rest.len(), rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_names(names: &[&str], secret_env_prefix: &str) -> Result<(), UnknownVariables> {
        check(names.iter().copied(), secret_env_prefix)
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
            variable(&["coordinator", "listen"]),
            "PGVAULT_COORDINATOR__LISTEN"
        );
    }

    #[test]
    fn known_variables_pass() {
        check_names(
            &[
                "PGVAULT_COORDINATOR__LISTEN",
                "PGVAULT_LOG__FILTER",
                "PGVAULT_TOKEN",
                "PGVAULT_ENDPOINT",
                "PGVAULT_CA_CERT",
                "PGVAULT_PG_BIN_DIR",
                "HOME",
                "AWS_REGION",
            ],
            "",
        )
        .unwrap();
        check_names(
            &["PGVAULT_SECRET_SHOP", "PGVAULT_SECRET__ODD"],
            "PGVAULT_SECRET_",
        )
        .unwrap();
    }

    #[test]
    fn a_misspelt_section_is_refused_naming_it_and_the_valid_ones() {
        let err = check_names(
            &["PGVAULT_TELEMTRY__ENDPOINT", "PGVAULT_COORDINATOR__LISTEN"],
            "",
        )
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
        let err = check_names(&["PGVAULT_SECRET_SHOP"], "")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("PGVAULT_SECRET_SHOP") && err.contains("secret_env_prefix is not set"),
            "{err}"
        );
        let err = check_names(&["PGVAULT_SECRET_SHOP", "PGVAULT_TOKN"], "PGVAULT_SECRET_")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("unknown environment variable PGVAULT_TOKN:"),
            "{err}"
        );
    }

    #[test]
    fn every_unknown_variable_is_named_once() {
        let err =
            check_names(&["PGVAULT_C", "PGVAULT_A", "PGVAULT_B", "PGVAULT_A"], "").unwrap_err();
        assert_eq!(err.names, ["PGVAULT_A", "PGVAULT_B", "PGVAULT_C"]);
        assert!(
            err.to_string()
                .contains("PGVAULT_A (and 2 more: PGVAULT_B, PGVAULT_C)"),
            "{err}"
        );
    }
}
