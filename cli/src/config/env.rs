//! The `PGVAULT_*` environment as settings: the variables of a process
//! ([`Environment::from_process`]; tests hand in their own), the settings
//! they carry as a figment provider, and the check that refuses any other
//! `PGVAULT_*` variable. Which variables pgvault knows, and the check
//! itself, live in `pgvault_environment`, shared with `pgvault-agent`.

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};
use pgvault_environment::setting_key;
pub use pgvault_environment::{PREFIX, SECTIONS};

/// How figment names where a setting came from; see [`Environment::variable`].
pub const SOURCE: &str = "`PGVAULT_` environment variable(s)";

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
    /// known section, nor one of `pgvault_environment::OTHER_VARIABLES`, nor (when
    /// `secret_env_prefix` is set) a secret variable starting with it.
    pub fn check(&self, secret_env_prefix: &str) -> anyhow::Result<()> {
        pgvault_environment::check(
            self.vars.iter().map(|(name, _)| name.as_str()),
            secret_env_prefix,
        )?;
        Ok(())
    }

    /// The variable a setting key came from (`coordinator.listen` →
    /// `PGVAULT_COORDINATOR__LISTEN`).
    pub fn variable(keys: &[&str]) -> String {
        pgvault_environment::variable(keys)
    }
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
            ("HOME".to_string(), "/root".to_string()),
        ]);
        let data = env.settings().data().unwrap();
        let dict = &data[&Profile::Default];
        let coordinator = dict["coordinator"].as_dict().unwrap();
        assert_eq!(coordinator["listen"].as_str(), Some("0.0.0.0:1"));
        assert_eq!(coordinator["max_attempts"].to_u128(), Some(5));
        assert_eq!(dict.len(), 1, "{dict:?}");
    }

    #[test]
    fn the_check_refuses_what_pgvault_environment_does_not_know() {
        let env = |names: &[&str]| {
            Environment::from_vars(names.iter().map(|n| (n.to_string(), "x".to_string())))
        };
        env(&["PGVAULT_LOG__FILTER", "PGVAULT_TOKEN"])
            .check("")
            .unwrap();
        let err = env(&["PGVAULT_TELEMTRY__ENDPOINT"])
            .check("")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("unknown environment variable PGVAULT_TELEMTRY__ENDPOINT:"),
            "{err}"
        );
    }
}
