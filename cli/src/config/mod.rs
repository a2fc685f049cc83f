//! Settings for the server commands (`up`, `coordinator`, `worker`), loaded in
//! one place: built-in defaults → `pgvault.toml` (or `--config`) →
//! `PGVAULT_*` environment variables (`__` separates sections, e.g.
//! `PGVAULT_COORDINATOR__LISTEN`) → command-line flags. Validated before
//! anything starts, with errors that name the key. What pgvault does not
//! know is refused everywhere: an unknown section or key in the file, an
//! unknown `PGVAULT_*` variable ([`env`]).
//!
//! # Layout
//! - `env`: the `PGVAULT_*` variables pgvault knows, and their check.
//! - `validate`: the checks run after loading.

pub mod env;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use figment::error::Kind;
use figment::providers::{Format, Serialized, Toml};
use figment::{Figment, Source};
use pgvault_agent::AgentSettings;
use serde::{Deserialize, Serialize};

use self::env::Environment;

/// Everything the server commands read. Unknown sections and keys are
/// refused; so are `PGVAULT_*` variables that are no setting and not one of
/// the others pgvault reads (`pgvault_environment::OTHER_VARIABLES`, secret variables).
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub coordinator: CoordinatorSettings,
    pub queue: QueueSettings,
    pub worker: WorkerSettings,
    pub up: UpSettings,
    pub log: LogSettings,
    /// `pgvault agent run` (defaults and checks in `pgvault_agent`).
    pub agent: AgentSettings,
    pub telemetry: TelemetrySettings,
}

#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    /// Where the coordinator serves Prometheus metrics (`GET /metrics`): an
    /// address, `off`, or empty for the command's default (`coordinator`:
    /// off; `up`: 127.0.0.1:9750, or the next free port when that one is
    /// taken). Same grammar as `coordinator.console_listen`.
    pub metrics_listen: String,
    /// OTLP/gRPC endpoint traces are exported to, e.g.
    /// `http://127.0.0.1:4317`; empty: no export (trace ids are still
    /// made, for logs and job details).
    pub otlp_endpoint: String,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoordinatorSettings {
    /// Address the gRPC API listens on.
    pub listen: SocketAddr,
    /// State database URL. Empty under `up`: a private cluster is used.
    pub database_url: String,
    pub database_max_connections: u32,
    pub lease_ttl_seconds: u64,
    pub max_attempts: u32,
    pub reaper_interval_seconds: u64,
    /// Wait before a job's second attempt; doubles per further attempt (max 10 min).
    pub retry_backoff_seconds: u64,
    /// Databases never offered for protection, besides template0/template1.
    pub maintenance_databases: Vec<String>,
    /// A token to create as an owner token on start (clusters, tests).
    pub bootstrap_token: String,
    /// Where the first admin token is written when none exists.
    pub admin_token_file: PathBuf,
    /// Secret-encryption key, base64 of 32 bytes (or use `master_key_file`).
    pub master_key: String,
    pub master_key_file: PathBuf,
    /// How often the scheduler looks for due slots.
    pub scheduler_interval_seconds: u64,
    /// Slots found later than this (no coordinator ran) are skipped with a reason.
    pub schedule_max_lateness_minutes: u64,
    /// Test builds only (`--features test-clock`): a file whose content
    /// (seconds) is added to the coordinator's clock, re-read on every use.
    /// Empty: the system clock. Production builds refuse the key as unknown.
    #[cfg(feature = "test-clock")]
    pub clock_offset_file: PathBuf,
    /// `env://VAR` secret references work only for variables whose name
    /// starts with this prefix. Empty: env:// references are refused.
    pub secret_env_prefix: String,
    /// `file:///path` secret references work only for files under this
    /// directory. Empty: file:// references are refused.
    pub secret_file_dir: PathBuf,
    /// PEM certificate chain of the gRPC listener; with `tls_key`, the API
    /// is served over TLS (https:// endpoints).
    pub tls_cert: PathBuf,
    /// PEM private key of the gRPC listener.
    pub tls_key: PathBuf,
    /// Where the web console listens: an address, `off`, or empty for the
    /// command's default (`coordinator`: off; `up`: 127.0.0.1:8080, or the
    /// next free port when that one is taken). See [`ConsoleListen`].
    pub console_listen: String,
    /// A console session ends after this long without a request.
    pub console_idle_timeout_seconds: u64,
    /// A job routed to an agent with no live instance fails with
    /// `AgentUnavailable` after waiting this long.
    pub agent_wait_seconds: u64,
    /// How often agents send their status (told to them when they connect);
    /// an agent instance silent for three intervals counts as gone.
    pub agent_status_interval_seconds: u64,
    /// Wait before a failed notification is sent again; doubles per further
    /// attempt (at most 10 minutes between two).
    pub notification_retry_seconds: u64,
    /// Attempts per notification before it is given up (the defaults keep
    /// trying for about an hour).
    pub notification_max_attempts: u32,
    /// How long one notification POST may take.
    pub notification_timeout_seconds: u64,
}

impl TelemetrySettings {
    /// `otlp_endpoint`, `None` when empty; an error names the key.
    pub fn otlp_endpoint(&self) -> anyhow::Result<Option<&str>> {
        match self.otlp_endpoint.trim() {
            "" => Ok(None),
            url if url.starts_with("http://") || url.starts_with("https://") => Ok(Some(url)),
            url => anyhow::bail!(
                "telemetry.otlp_endpoint must be an http:// or https:// URL such as http://127.0.0.1:4317 (got {url:?})"
            ),
        }
    }

    /// `metrics_listen` parsed; an error names the key and what it takes.
    pub fn metrics_listen(&self) -> anyhow::Result<ConsoleListen> {
        parse_listen(
            "telemetry.metrics_listen",
            "127.0.0.1:9750",
            &self.metrics_listen,
        )
    }
}

/// An address, `off`, or empty (the command's default).
fn parse_listen(key: &str, example: &str, value: &str) -> anyhow::Result<ConsoleListen> {
    match value.trim() {
        "" => Ok(ConsoleListen::Default),
        off if off.eq_ignore_ascii_case("off") => Ok(ConsoleListen::Off),
        addr => addr.parse().map(ConsoleListen::At).map_err(|_| {
            anyhow::anyhow!("{key} must be an address such as {example}, or \"off\" (got {addr:?})")
        }),
    }
}

/// `coordinator.console_listen` or `telemetry.metrics_listen`, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleListen {
    /// Empty: the command decides.
    Default,
    /// `off`.
    Off,
    /// An address, bound exactly.
    At(SocketAddr),
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueSettings {
    /// RabbitMQ URL. Empty: the in-process queue (only with `up`).
    pub amqp_url: String,
    pub queue_name: String,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSettings {
    /// Coordinator gRPC endpoint.
    pub coordinator: String,
    pub token: String,
    pub token_file: PathBuf,
    /// PEM certificate of the private CA that signed the coordinator's
    /// certificate (https:// endpoints); empty: the system's roots.
    pub ca_cert: PathBuf,
    /// Tasks run at once.
    pub concurrency: usize,
    /// Database connections per task (0: a function of the cores).
    pub connections: usize,
    /// zstd level of chunk objects; 1, the engine's default, is what the
    /// benchmarks measure.
    pub zstd_level: i32,
    /// Tables larger than this are split into parallel chunks.
    pub split_threshold_mb: u64,
    /// Backups whose planned data is above this are fanned out across the
    /// workers (chunk sub-tasks on the leader's snapshot).
    pub fanout_threshold_mb: u64,
    /// Directories of pg_dump/pg_restore sets (one per PostgreSQL major),
    /// looked at before every `/usr/lib/postgresql/*/bin`, `pg_config
    /// --bindir` and `PATH`; each server gets the lowest major at least
    /// its own.
    pub pg_bin_dirs: Vec<PathBuf>,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpSettings {
    /// Where the all-in-one keeps its state cluster, keys, tokens and datastore.
    pub data_dir: PathBuf,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `text` or `json`.
    pub format: String,
    /// tracing filter, e.g. `info,pgvault_engine=debug`.
    pub filter: String,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            amqp_url: String::new(),
            queue_name: "pgvault.tasks".into(),
        }
    }
}

impl Default for UpSettings {
    fn default() -> Self {
        UpSettings {
            data_dir: PathBuf::from(".pgvault"),
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: "text".into(),
            filter: "info".into(),
        }
    }
}

impl Default for CoordinatorSettings {
    fn default() -> Self {
        CoordinatorSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            database_url: String::new(),
            database_max_connections: 10,
            lease_ttl_seconds: 30,
            max_attempts: 3,
            reaper_interval_seconds: 5,
            retry_backoff_seconds: 5,
            maintenance_databases: [
                "azure_maintenance",
                "azure_sys",
                "rdsadmin",
                "cloudsqladmin",
            ]
            .map(String::from)
            .to_vec(),
            bootstrap_token: String::new(),
            admin_token_file: PathBuf::new(),
            master_key: String::new(),
            scheduler_interval_seconds: 5,
            schedule_max_lateness_minutes: 12 * 60,
            #[cfg(feature = "test-clock")]
            clock_offset_file: PathBuf::new(),
            master_key_file: PathBuf::new(),
            secret_env_prefix: String::new(),
            secret_file_dir: PathBuf::new(),
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            console_listen: String::new(),
            console_idle_timeout_seconds: 30 * 60,
            agent_wait_seconds: 3600,
            agent_status_interval_seconds:
                pgvault_coordinator::config::DEFAULT_AGENT_STATUS_INTERVAL.as_secs(),
            notification_retry_seconds: 30,
            notification_max_attempts: 10,
            notification_timeout_seconds: 10,
        }
    }
}

impl CoordinatorSettings {
    /// `console_listen` parsed; an error names the key and what it takes.
    pub fn console_listen(&self) -> anyhow::Result<ConsoleListen> {
        parse_listen(
            "coordinator.console_listen",
            "127.0.0.1:8080",
            &self.console_listen,
        )
    }
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            coordinator: "http://127.0.0.1:50051".into(),
            token: String::new(),
            token_file: PathBuf::new(),
            ca_cert: PathBuf::new(),
            concurrency: 1,
            connections: 0,
            zstd_level: 1,
            split_threshold_mb: 256,
            fanout_threshold_mb: 4096,
            pg_bin_dirs: Vec::new(),
        }
    }
}

impl Settings {
    /// Defaults → file → this process's environment → `overrides` (flags,
    /// as a partial tree).
    pub fn load(
        config_file: Option<&Path>,
        overrides: serde_json::Value,
    ) -> anyhow::Result<Settings> {
        Settings::load_from(config_file, overrides, &Environment::from_process())
    }

    /// [`Settings::load`] with the `PGVAULT_*` variables of `environment`.
    pub fn load_from(
        config_file: Option<&Path>,
        overrides: serde_json::Value,
        environment: &Environment,
    ) -> anyhow::Result<Settings> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        match config_file {
            Some(path) => {
                if !path.is_file() {
                    bail!("config file {} does not exist", path.display());
                }
                figment = figment.merge(Toml::file(path));
            }
            None => figment = figment.merge(Toml::file("pgvault.toml")),
        }
        figment = figment
            .merge(environment.settings())
            .merge(Serialized::defaults(overrides));
        let settings: Settings = figment.extract().map_err(describe)?;
        environment.check(&settings.coordinator.secret_env_prefix)?;
        settings.validate()?;
        Ok(settings)
    }

    /// The secret-encryption key from `master_key` or `master_key_file`.
    pub fn master_key(&self) -> anyhow::Result<[u8; 32]> {
        let c = &self.coordinator;
        let encoded = if !c.master_key.is_empty() {
            c.master_key.clone()
        } else if !c.master_key_file.as_os_str().is_empty() {
            std::fs::read_to_string(&c.master_key_file).with_context(|| {
                format!(
                    "coordinator.master_key_file: cannot read {}",
                    c.master_key_file.display()
                )
            })?
        } else {
            bail!(
                "coordinator.master_key is not set: set PGVAULT_COORDINATOR__MASTER_KEY to the base64 of 32 random \
                 bytes (e.g. `openssl rand -base64 32`) or point coordinator.master_key_file at a file holding it"
            );
        };
        decode_key(encoded.trim())
    }

    /// The worker's token from `worker.token` or `worker.token_file`.
    pub fn worker_token(&self) -> anyhow::Result<String> {
        let w = &self.worker;
        if !w.token.is_empty() {
            return Ok(w.token.clone());
        }
        if !w.token_file.as_os_str().is_empty() {
            let token = std::fs::read_to_string(&w.token_file).with_context(|| {
                format!("worker.token_file: cannot read {}", w.token_file.display())
            })?;
            return Ok(token.trim().to_string());
        }
        bail!(
            "worker.token is not set: pass --token-file, or set PGVAULT_WORKER__TOKEN or worker.token_file"
        )
    }
}

/// `invalid setting coordinator.listen (from PGVAULT_COORDINATOR__LISTEN): …`,
/// `unknown section [telemtry] (from TOML file /etc/pgvault.toml): …`.
fn describe(error: figment::Error) -> anyhow::Error {
    let Some(e) = error.into_iter().next() else {
        return anyhow::anyhow!("invalid configuration");
    };
    let key = e.path.join(".").to_lowercase();
    let source = e
        .metadata
        .as_ref()
        .map(|m| {
            if m.name == env::SOURCE {
                let profile = e.profile.clone().unwrap_or_default();
                format!(" (from {})", m.interpolate(&profile, &e.path))
            } else if let Some(Source::File(path)) = &m.source {
                format!(" (from {} {})", m.name, path.display())
            } else {
                // Defaults never fail: the rest are flags.
                " (from command-line flags)".to_string()
            }
        })
        .unwrap_or_default();
    match (&e.kind, e.path.as_slice()) {
        (Kind::UnknownField(field, _), [_]) => anyhow::anyhow!(
            "unknown section [{field}]{source}: pgvault's sections are {}",
            env::SECTIONS.map(|s| format!("[{s}]")).join(", ")
        ),
        (Kind::UnknownField(field, expected), [section, ..]) => anyhow::anyhow!(
            "unknown setting {key}{source}: [{section}] has no key {field:?}; its keys are {}",
            expected.join(", ")
        ),
        _ if key.is_empty() => anyhow::anyhow!("invalid configuration{source}: {}", e.kind),
        _ => anyhow::anyhow!("invalid setting {key}{source}: {}", e.kind),
    }
}

fn decode_key(encoded: &str) -> anyhow::Result<[u8; 32]> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| anyhow::anyhow!("coordinator.master_key is not valid base64"))?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        anyhow::anyhow!(
            "coordinator.master_key must decode to 32 bytes (got {})",
            b.len()
        )
    })
}

#[cfg(test)]
mod tests;
