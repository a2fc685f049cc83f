//! The `PGVAULT_*` variables of `pgvault-agent`. It reads its settings
//! only through its flags' `env =` (no settings file), so without this
//! check a misspelt variable would be ignored; `pgvault agent run` refuses
//! it (`pgvault`'s settings loader), and so does `pgvault-agent`:
//!
//! - a variable pgvault does not know at all (`pgvault_environment`), or
//!   one of the `[agent]` section that `pgvault-agent` does not read
//!   (`PGVAULT_AGENT__NAEM`, or `PGVAULT_AGENT__TOKEN` where it reads
//!   `PGVAULT_AGENT_TOKEN`) is refused, naming the variables it reads;
//! - another pgvault variable it does not read (`PGVAULT_WORKER__…`,
//!   `PGVAULT_LOG__FILTER`, `PGVAULT_CONFIG`: an environment shared with
//!   other pgvault commands) is reported back as a warning; secret
//!   variables under the coordinator's prefix pass silently.

use pgvault_environment::{SECRET_ENV_PREFIX_VARIABLE, first_and_more, is_known};

use crate::error::AgentError;

/// Settings variables of the agent section start with this.
const AGENT_SECTION: &str = "PGVAULT_AGENT__";

/// Checks the process's variables `vars` (name, value) against `read`, the
/// variables `pgvault-agent` reads (its flags' `env =`). Returns one
/// warning per pgvault variable it ignores.
pub fn check_environment(
    vars: &[(String, String)],
    read: &[String],
) -> Result<Vec<String>, AgentError> {
    // Secret variables belong to the coordinator; one sharing this
    // environment says under which prefix.
    let secret_env_prefix = vars
        .iter()
        .find(|(name, _)| name == SECRET_ENV_PREFIX_VARIABLE)
        .map(|(_, value)| value.as_str())
        .unwrap_or_default();
    let ignored = |name: &str| {
        name.starts_with(pgvault_environment::PREFIX) && !read.iter().any(|r| r == name)
    };
    let mut refused: Vec<String> = Vec::new();
    let mut warnings = Vec::new();
    for (name, _) in vars.iter().filter(|(name, _)| ignored(name)) {
        if !is_known(name, secret_env_prefix) || name.starts_with(AGENT_SECTION) {
            refused.push(name.clone());
        } else if secret_env_prefix.is_empty() || !name.starts_with(secret_env_prefix) {
            warnings.push(format!(
                "pgvault-agent does not read {name}, a variable of other pgvault commands; it reads {}",
                read.join(", ")
            ));
        }
    }
    refused.sort();
    refused.dedup();
    if refused.is_empty() {
        return Ok(warnings);
    }
    Err(AgentError::Options(format!(
        "unknown environment variable {}: pgvault-agent reads {} (and RUST_LOG); fix its name or unset it",
        first_and_more(&refused),
        read.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(names: &[&str]) -> Vec<(String, String)> {
        names
            .iter()
            .map(|n| (n.to_string(), "x".to_string()))
            .collect()
    }

    fn read() -> Vec<String> {
        [
            "PGVAULT_AGENT_TOKEN",
            "PGVAULT_AGENT__NAME",
            "PGVAULT_LOG__FORMAT",
        ]
        .map(String::from)
        .to_vec()
    }

    #[test]
    fn variables_it_reads_and_others_pass_silently() {
        let warnings = check_environment(
            &vars(&[
                "PGVAULT_AGENT_TOKEN",
                "PGVAULT_AGENT__NAME",
                "HOME",
                "AWS_REGION",
            ]),
            &read(),
        )
        .unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn a_misspelt_variable_is_refused_naming_what_it_reads() {
        for name in [
            "PGVAULT_AGENT__NAEM",
            "PGVAULT_AGNT__NAME",
            "PGVAULT_AGENT_TOKN",
        ] {
            let err = check_environment(&vars(&[name, "PGVAULT_AGENT__NAME"]), &read())
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("unknown environment variable {name}: pgvault-agent reads PGVAULT_AGENT_TOKEN, PGVAULT_AGENT__NAME, PGVAULT_LOG__FORMAT")),
                "{err}"
            );
        }
    }

    #[test]
    fn an_agent_setting_it_does_not_read_is_refused() {
        // `pgvault agent run` reads agent.token; pgvault-agent reads PGVAULT_AGENT_TOKEN.
        let err = check_environment(
            &vars(&["PGVAULT_AGENT__TOKEN", "PGVAULT_AGENT__PG_BIN_DIRS"]),
            &read(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with(
                "unknown environment variable PGVAULT_AGENT__PG_BIN_DIRS (and 1 more: PGVAULT_AGENT__TOKEN)"
            ),
            "{err}"
        );
    }

    #[test]
    fn other_pgvault_variables_are_warned_about() {
        let warnings = check_environment(
            &vars(&[
                "PGVAULT_WORKER__CONNECTIONS",
                "PGVAULT_CONFIG",
                "PGVAULT_AGENT__NAME",
            ]),
            &read(),
        )
        .unwrap();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].starts_with(
                "pgvault-agent does not read PGVAULT_WORKER__CONNECTIONS, a variable of other pgvault commands; it reads PGVAULT_AGENT_TOKEN"
            ),
            "{warnings:?}"
        );
    }

    #[test]
    fn secret_variables_pass_under_the_coordinators_prefix_only() {
        let secret = ["PGVAULT_SECRET_SHOP"];
        assert!(check_environment(&vars(&secret), &read()).is_err());
        let mut with_prefix = vars(&secret);
        with_prefix.push((SECRET_ENV_PREFIX_VARIABLE.into(), "PGVAULT_SECRET_".into()));
        let warnings = check_environment(&with_prefix, &read()).unwrap();
        assert_eq!(
            warnings.len(),
            1,
            "only the prefix's own variable: {warnings:?}"
        );
        assert!(
            warnings[0].contains(SECRET_ENV_PREFIX_VARIABLE),
            "{warnings:?}"
        );
    }
}
