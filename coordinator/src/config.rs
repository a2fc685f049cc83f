//! The coordinator's settings as the `pgvault` binary hands them over, with
//! defaults, and a redacted form of the state-database URL for messages.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;

use crate::clock::{Clock, SystemClock};
use crate::secret_ref::ExternalSecrets;

/// Provider maintenance databases that are never offered nor protected.
/// (`postgres` is deliberately absent: users may protect it.)
pub const DEFAULT_MAINTENANCE_DATABASES: [&str; 4] = [
    "azure_maintenance",
    "azure_sys",
    "rdsadmin",
    "cloudsqladmin",
];

/// How long a job of an absent agent waits before it fails
/// (`coordinator.agent_wait_seconds`).
pub const DEFAULT_AGENT_WAIT: Duration = Duration::from_secs(3600);
/// How often agents report (`coordinator.agent_status_interval_seconds`).
pub const DEFAULT_AGENT_STATUS_INTERVAL: Duration = Duration::from_secs(5);
/// The longest status interval accepted: an agent silent for three of them
/// counts as gone, so a longer one would hide a dead agent for hours.
pub const MAX_AGENT_STATUS_INTERVAL: Duration = Duration::from_secs(3600);

/// Everything [`crate::Coordinator::start`] needs.
#[derive(Clone)]
pub struct CoordinatorConfig {
    /// gRPC listen address; port 0 picks a free one (see `CoordinatorHandle::local_addr`).
    pub listen: SocketAddr,
    /// State database URL (`postgresql://…`); holds a password, never printed.
    pub database_url: String,
    pub database_max_connections: u32,
    /// How long a worker's claim stays valid without a heartbeat.
    pub lease_ttl: Duration,
    /// Attempts per job before it fails for good.
    pub max_attempts: u32,
    /// How often expired leases are looked for.
    pub reaper_interval: Duration,
    /// Wait before a job's second attempt; doubles with every further one
    /// (capped at 10 minutes).
    pub retry_backoff: Duration,
    /// Databases never offered nor protected, besides template0/template1.
    pub maintenance_databases: Vec<String>,
    /// Ensured to exist as an Owner token at start (stored hashed).
    pub bootstrap_token: Option<String>,
    /// Where a generated admin token is written (0600) when no token exists at all.
    pub admin_token_file: Option<PathBuf>,
    /// AES-256-GCM key sealing secrets.
    pub master_key: [u8; 32],
    /// How often the scheduler (on the leader) looks for due slots.
    pub scheduler_interval: Duration,
    /// A slot found later than this after its time (no coordinator ran) is
    /// skipped with a recorded reason instead of run.
    pub schedule_max_lateness: Duration,
    /// Where schedules and retention read "now": the system clock, or a test
    /// clock handed in by tests (never from a configuration file).
    pub clock: Arc<dyn Clock>,
    /// Where `env://` and `file://` secret references may point (both off
    /// by default).
    pub external_secrets: ExternalSecrets,
    /// Serve the gRPC API over TLS with this certificate chain and key.
    pub tls: Option<TlsFiles>,
    /// Serve the web console (`pgvault-console`) too, in this process, as
    /// a client of this coordinator's API (over TLS when `tls` is set).
    /// `None`: no console.
    pub console: Option<pgvault_console::ConsoleOptions>,
    /// How long a job routed to an agent waits in the queue while no
    /// instance of the agent is connected before it fails with
    /// `AgentUnavailable` (`coordinator.agent_wait_seconds`).
    pub agent_wait: Duration,
    /// How often agents send their status (told to them at hello; whole
    /// seconds); an instance silent for three intervals counts as gone
    /// (`coordinator.agent_status_interval_seconds`).
    pub agent_status_interval: Duration,
    /// Serve Prometheus metrics on `GET /metrics` at this address
    /// (`telemetry.metrics_listen`). `None`: no listener (the metrics are
    /// still kept, and the feed still runs when this coordinator leads it).
    pub metrics: Option<crate::metrics::MetricsOptions>,
    /// How notifications are sent: poll interval, retries, timeout
    /// (`coordinator.notification_*`).
    pub notifications: crate::notifications::NotificationOptions,
}

/// PEM files of the gRPC listener's certificate chain and private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CoordinatorConfig {
    /// Defaults for everything but the state database and the master key.
    pub fn new(database_url: impl Into<String>, master_key: [u8; 32]) -> Self {
        CoordinatorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            database_url: database_url.into(),
            database_max_connections: 10,
            lease_ttl: Duration::from_secs(30),
            max_attempts: 3,
            reaper_interval: Duration::from_secs(5),
            retry_backoff: Duration::from_secs(5),
            maintenance_databases: DEFAULT_MAINTENANCE_DATABASES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            bootstrap_token: None,
            admin_token_file: None,
            master_key,
            scheduler_interval: Duration::from_secs(5),
            schedule_max_lateness: Duration::from_secs(12 * 3600),
            clock: Arc::new(SystemClock),
            external_secrets: ExternalSecrets::default(),
            tls: None,
            console: None,
            agent_wait: DEFAULT_AGENT_WAIT,
            agent_status_interval: DEFAULT_AGENT_STATUS_INTERVAL,
            metrics: None,
            notifications: Default::default(),
        }
    }
}

impl fmt::Debug for CoordinatorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoordinatorConfig")
            .field("listen", &self.listen)
            .field("database_url", &redacted_database_url(&self.database_url))
            .field("database_max_connections", &self.database_max_connections)
            .field("lease_ttl", &self.lease_ttl)
            .field("max_attempts", &self.max_attempts)
            .field("reaper_interval", &self.reaper_interval)
            .field("retry_backoff", &self.retry_backoff)
            .field("maintenance_databases", &self.maintenance_databases)
            .field(
                "bootstrap_token",
                &self.bootstrap_token.as_ref().map(|_| "<redacted>"),
            )
            .field("admin_token_file", &self.admin_token_file)
            .field("master_key", &"<redacted>")
            .field("scheduler_interval", &self.scheduler_interval)
            .field("schedule_max_lateness", &self.schedule_max_lateness)
            .field("clock", &self.clock)
            .field("external_secrets", &self.external_secrets)
            .field("tls", &self.tls)
            .field("console", &self.console)
            .field("agent_wait", &self.agent_wait)
            .field("agent_status_interval", &self.agent_status_interval)
            .field("metrics", &self.metrics)
            .field("notifications", &self.notifications)
            .finish()
    }
}

/// `postgresql://user@host:port/db` without the password (or a placeholder
/// when the URL does not parse, since it could hold anything).
pub fn redacted_database_url(url: &str) -> String {
    match PgConnectOptions::from_str(url) {
        Ok(options) => {
            let host = options.get_host();
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host.to_string()
            };
            format!(
                "postgresql://{}@{}:{}/{}",
                options.get_username(),
                host,
                options.get_port(),
                options.get_database().unwrap_or(options.get_username())
            )
        }
        Err(_) => "<unparsable state database url>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_password_key_and_token() {
        let mut config =
            CoordinatorConfig::new("postgresql://pgv:hunter2@db.local:5433/state", [9u8; 32]);
        config.bootstrap_token = Some("tok-secret".into());
        let debug = format!("{config:?}");
        assert!(
            debug.contains("postgresql://pgv@db.local:5433/state"),
            "{debug}"
        );
        assert!(
            !debug.contains("hunter2") && !debug.contains("tok-secret") && !debug.contains("9, 9"),
            "{debug}"
        );
    }
}
