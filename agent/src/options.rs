//! What an agent is told: the flags `pgvault-agent` and `pgvault agent run`
//! share ([`AgentArgs`]), the settings they fill ([`AgentSettings`], also the
//! `[agent]` section of `pgvault.toml` for `pgvault agent run`), and the
//! checked options the agent runs with ([`AgentOptions`]). Defaults live
//! here, once. The token never shows in `Debug` output.

use std::path::{Path, PathBuf};

use pgvault_engine::EngineOptions;
use serde::{Deserialize, Serialize};

use crate::error::AgentError;

/// The variable `pgvault-agent --token` reads, so the token stays out of
/// the process list (`pgvault agent run` reads it too).
pub const TOKEN_VARIABLE: &str = "PGVAULT_AGENT_TOKEN";
/// Most tasks one agent process runs at once.
pub const MAX_CONCURRENCY: usize = 64;

/// The flags both commands share. `--token` and `--ca-cert` are not here:
/// `pgvault agent run` has them as global flags of `pgvault`, and
/// `pgvault-agent` declares them itself (in its `main.rs`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AgentArgs {
    /// Coordinator gRPC endpoint the agent dials out to (the help shows an
    /// example and the default).
    #[arg(
        long,
        env = "PGVAULT_AGENT__COORDINATOR",
        value_name = "URL",
        help = "Coordinator gRPC endpoint the agent dials out to, e.g. https://vault.example:50051 \
                (nothing ever connects to the agent) [default: http://127.0.0.1:50051]"
    )]
    pub coordinator: Option<String>,
    /// The agent's name, as created with `pgvault agent create NAME`;
    /// processes started with the same name and token form a group that
    /// shares its servers' tasks
    #[arg(long, env = "PGVAULT_AGENT__NAME", value_name = "NAME")]
    pub name: Option<String>,
    /// File holding the agent's token, used when no token is given
    /// directly
    #[arg(long, env = "PGVAULT_AGENT__TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Tasks run at once [default: 1]
    #[arg(long, env = "PGVAULT_AGENT__CONCURRENCY", value_name = "N")]
    pub concurrency: Option<usize>,
    /// Database connections per task; 0 picks from the core count
    /// [default: 0]
    #[arg(long, env = "PGVAULT_AGENT__CONNECTIONS", value_name = "N")]
    pub connections: Option<usize>,
    /// Directory of pg_dump and pg_restore [default: the newest
    /// /usr/lib/postgresql/*/bin, then pg_config --bindir, then PATH]
    #[arg(long, env = "PGVAULT_AGENT__PG_BIN_DIR", value_name = "DIR")]
    pub pg_bin_dir: Option<PathBuf>,
    /// Log format on stderr: text or json [default: text]
    #[arg(long, env = "PGVAULT_LOG__FORMAT", value_name = "FORMAT",
          value_parser = ["text", "json"])]
    pub log_format: Option<String>,
}

impl AgentArgs {
    /// Puts the flags that were given over `settings`.
    pub fn apply(&self, settings: &mut AgentSettings) {
        if let Some(coordinator) = &self.coordinator {
            settings.coordinator = coordinator.clone();
        }
        if let Some(name) = &self.name {
            settings.name = name.clone();
        }
        if let Some(file) = &self.token_file {
            // A token file given here is the one to read.
            settings.token_file = file.clone();
            settings.token.clear();
        }
        if let Some(concurrency) = self.concurrency {
            settings.concurrency = concurrency;
        }
        if let Some(connections) = self.connections {
            settings.connections = connections;
        }
        if let Some(dir) = &self.pg_bin_dir {
            settings.pg_bin_dir = dir.clone();
        }
    }
}

/// The agent's settings, empty values meaning "not set".
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentSettings {
    /// Coordinator gRPC endpoint.
    pub coordinator: String,
    /// The agent's short id (`agents/{name}`).
    pub name: String,
    /// The agent's token; `token_file` when empty.
    pub token: String,
    pub token_file: PathBuf,
    /// PEM certificate of the private CA that signed the coordinator's
    /// certificate; empty: the system's roots.
    pub ca_cert: PathBuf,
    /// Tasks run at once.
    pub concurrency: usize,
    /// Database connections per task (0: a function of the cores).
    pub connections: usize,
    /// Directory of pg_dump/pg_restore; empty: searched.
    pub pg_bin_dir: PathBuf,
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            coordinator: "http://127.0.0.1:50051".into(),
            name: String::new(),
            token: String::new(),
            token_file: PathBuf::new(),
            ca_cert: PathBuf::new(),
            concurrency: 1,
            connections: 0,
            pg_bin_dir: PathBuf::new(),
        }
    }
}

impl std::fmt::Debug for AgentSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentSettings")
            .field("coordinator", &self.coordinator)
            .field("name", &self.name)
            .field("token", &(!self.token.is_empty()).then_some("<redacted>"))
            .field("token_file", &self.token_file)
            .field("ca_cert", &self.ca_cert)
            .field("concurrency", &self.concurrency)
            .field("connections", &self.connections)
            .field("pg_bin_dir", &self.pg_bin_dir)
            .finish()
    }
}

impl AgentSettings {
    /// Checks what can be checked without the token or the name (those
    /// only `pgvault agent run` needs), naming the setting at fault.
    pub fn validate(&self) -> Result<(), AgentError> {
        if self.concurrency == 0 || self.concurrency > MAX_CONCURRENCY {
            return Err(AgentError::Options(format!(
                "agent.concurrency must be between 1 and {MAX_CONCURRENCY} (got {})",
                self.concurrency
            )));
        }
        if !self.name.is_empty() {
            pgvault_proto::names::validate_short_id(&self.name).map_err(|e| {
                AgentError::Options(format!(
                    "agent name (--name, agent.name) {e}; use the name given to pgvault agent create"
                ))
            })?;
        }
        Ok(())
    }
}

/// Everything the agent runs with, checked.
#[derive(Clone)]
pub struct AgentOptions {
    /// Coordinator gRPC endpoint.
    pub coordinator: String,
    /// The agent's short id.
    pub name: String,
    /// Its token (role Agent).
    pub token: String,
    /// Private CA of the coordinator's certificate.
    pub ca_cert: Option<PathBuf>,
    /// Tasks run at once.
    pub concurrency: usize,
    /// Engine tuning, including where pg_dump/pg_restore are.
    pub engine: EngineOptions,
}

impl std::fmt::Debug for AgentOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentOptions")
            .field("coordinator", &self.coordinator)
            .field("name", &self.name)
            .field("token", &"<redacted>")
            .field("ca_cert", &self.ca_cert)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

impl AgentOptions {
    /// The options of `settings`; the token from `agent.token`, else read
    /// from `agent.token_file`.
    pub fn from_settings(settings: &AgentSettings) -> Result<AgentOptions, AgentError> {
        settings.validate()?;
        if settings.name.is_empty() {
            return Err(AgentError::Options(
                "the agent's name is not set: pass --name NAME (or set PGVAULT_AGENT__NAME), the name given to pgvault agent create"
                    .into(),
            ));
        }
        let token = token(settings)?;
        let mut engine = EngineOptions::default();
        if settings.connections > 0 {
            engine.connections = settings.connections;
        }
        engine.pg_bin_dir = non_empty(&settings.pg_bin_dir);
        Ok(AgentOptions {
            coordinator: settings.coordinator.clone(),
            name: settings.name.clone(),
            token,
            ca_cert: non_empty(&settings.ca_cert),
            concurrency: settings.concurrency,
            engine,
        })
    }
}

fn non_empty(path: &Path) -> Option<PathBuf> {
    (!path.as_os_str().is_empty()).then(|| path.to_path_buf())
}

fn token(settings: &AgentSettings) -> Result<String, AgentError> {
    let token = if !settings.token.trim().is_empty() {
        settings.token.trim().to_string()
    } else if !settings.token_file.as_os_str().is_empty() {
        std::fs::read_to_string(&settings.token_file)
            .map_err(|e| {
                AgentError::Options(format!(
                    "cannot read the agent's token file {}: {e}",
                    settings.token_file.display()
                ))
            })?
            .trim()
            .to_string()
    } else {
        String::new()
    };
    if token.is_empty() {
        return Err(AgentError::Options(format!(
            "the agent's token is not set: pass --token-file FILE or set {TOKEN_VARIABLE} (pgvault agent create NAME printed it once; create the agent again if it is lost)"
        )));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AgentSettings {
        AgentSettings {
            name: "dc1".into(),
            token: "t0ken".into(),
            ..AgentSettings::default()
        }
    }

    #[test]
    fn flags_given_override_settings_and_the_rest_stay() {
        let mut s = settings();
        AgentArgs {
            coordinator: Some("https://vault.example:50051".into()),
            concurrency: Some(3),
            ..AgentArgs::default()
        }
        .apply(&mut s);
        assert_eq!(s.coordinator, "https://vault.example:50051");
        assert_eq!((s.concurrency, s.name.as_str()), (3, "dc1"));
        let options = AgentOptions::from_settings(&s).unwrap();
        assert_eq!(options.token, "t0ken");
        assert_eq!(options.engine.pg_bin_dir, None);
        assert_eq!(options.ca_cert, None);
        // A token file given as a flag is the one read, over a token setting.
        AgentArgs {
            token_file: Some("/etc/pgvault/agent.token".into()),
            ..AgentArgs::default()
        }
        .apply(&mut s);
        assert!(s.token.is_empty());
        assert_eq!(s.token_file, PathBuf::from("/etc/pgvault/agent.token"));
    }

    #[test]
    fn the_token_comes_from_its_file_when_not_given() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agent.token");
        std::fs::write(&file, "from-file\n").unwrap();
        let s = AgentSettings {
            token: String::new(),
            token_file: file,
            ..settings()
        };
        assert_eq!(AgentOptions::from_settings(&s).unwrap().token, "from-file");
    }

    #[test]
    fn missing_or_invalid_values_are_refused_naming_the_fix() {
        let error = |s: AgentSettings| AgentOptions::from_settings(&s).unwrap_err().to_string();
        let no_token = error(AgentSettings {
            token: String::new(),
            ..settings()
        });
        assert!(
            no_token.contains("--token-file FILE or set PGVAULT_AGENT_TOKEN"),
            "{no_token}"
        );
        let no_name = error(AgentSettings {
            name: String::new(),
            ..settings()
        });
        assert!(no_name.contains("pass --name NAME"), "{no_name}");
        let bad_name = error(AgentSettings {
            name: "DC 1".into(),
            ..settings()
        });
        assert!(
            bad_name.starts_with("agent name (--name, agent.name) \"DC 1\" is not a valid id"),
            "{bad_name}"
        );
        let zero = error(AgentSettings {
            concurrency: 0,
            ..settings()
        });
        assert_eq!(zero, "agent.concurrency must be between 1 and 64 (got 0)");
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let s = settings();
        let options = AgentOptions::from_settings(&s).unwrap();
        assert!(!format!("{s:?} {options:?}").contains("t0ken"));
    }
}
