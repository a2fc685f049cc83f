//! The cluster processes: `pgvault coordinator` and `pgvault worker`, both
//! talking to RabbitMQ. Also the translation from [`Settings`] to the
//! coordinator's and engine's own option types, shared with `up`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use pgvault_console::{ConsoleOptions, PortFallback};
use pgvault_coordinator::clock::{Clock, SystemClock};
use pgvault_coordinator::metrics::MetricsOptions;
use pgvault_coordinator::notifications::{NotificationOptions, RetryPolicy};
use pgvault_coordinator::secret_ref::ExternalSecrets;
use pgvault_coordinator::{Coordinator, CoordinatorConfig, TlsFiles};
use pgvault_engine::EngineOptions;
use pgvault_queue::amqp::AmqpQueue;
use pgvault_telemetry::ServiceName;
use pgvault_worker::runner::{self, WorkerOptions};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::config::{ConsoleListen, CoordinatorSettings, Settings};
use crate::{client, signals, telemetry};

#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  PGVAULT_COORDINATOR__DATABASE_URL=postgresql://pgvault:...@db:5432/pgvault \\\n  PGVAULT_COORDINATOR__MASTER_KEY=$(cat master.key) \\\n  pgvault coordinator --listen 0.0.0.0:50051 --amqp-url amqp://guest@rabbitmq:5672/%2f"
)]
pub struct CoordinatorArgs {
    #[command(flatten)]
    flags: CoordinatorFlags,
}

/// Flags shared by `coordinator` and `up`.
#[derive(clap::Args)]
pub struct CoordinatorFlags {
    /// Address the gRPC API listens on [setting: coordinator.listen].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// State database URL; prefer PGVAULT_COORDINATOR__DATABASE_URL so the
    /// password stays out of the process list [setting: coordinator.database_url].
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// RabbitMQ URL [setting: queue.amqp_url].
    #[arg(long, value_name = "URL")]
    amqp_url: Option<String>,
    /// Address the web console listens on, or "off" (default: off for
    /// `coordinator`; `up`: 127.0.0.1:8080 or the next free port)
    /// [setting: coordinator.console_listen].
    #[arg(long, value_name = "ADDR|off")]
    console_listen: Option<String>,
}

impl CoordinatorFlags {
    /// Adds the flags that were given to `overrides`.
    pub fn apply(self, overrides: &mut Overrides) {
        overrides.set(
            "coordinator",
            "listen",
            self.listen.map(|a| json!(a.to_string())),
        );
        overrides.set(
            "coordinator",
            "database_url",
            self.database_url.map(Value::from),
        );
        overrides.set("queue", "amqp_url", self.amqp_url.map(Value::from));
        overrides.set(
            "coordinator",
            "console_listen",
            self.console_listen.map(Value::from),
        );
    }
}

#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  pgvault worker --coordinator http://coordinator:50051 --amqp-url amqp://guest@rabbitmq:5672/%2f --token-file worker.token\n\nA coordinator serving TLS with a certificate of a private CA: pass the CA's PEM\ncertificate with --ca-cert FILE (or set worker.ca_cert)."
)]
pub struct WorkerArgs {
    /// Coordinator gRPC endpoint [setting: worker.coordinator].
    #[arg(long, value_name = "URL")]
    coordinator: Option<String>,
    /// RabbitMQ URL [setting: queue.amqp_url].
    #[arg(long, value_name = "URL")]
    amqp_url: Option<String>,
    /// File holding the worker's API token [setting: worker.token_file];
    /// --token / PGVAULT_TOKEN work too.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Tasks run at once [setting: worker.concurrency].
    #[arg(long, value_name = "N")]
    concurrency: Option<usize>,
    /// Database connections per task; 0 picks from the core count [setting: worker.connections].
    #[arg(long, value_name = "N")]
    connections: Option<usize>,
}

pub async fn run_coordinator(
    config_file: Option<&Path>,
    args: CoordinatorArgs,
) -> anyhow::Result<()> {
    let mut overrides = Overrides::default();
    args.flags.apply(&mut overrides);
    let settings = Settings::load(config_file, overrides.into_value())?;
    let traces = telemetry::init(&settings, ServiceName::Coordinator)?;
    if settings.coordinator.database_url.is_empty() {
        bail!(
            "coordinator.database_url is not set: set PGVAULT_COORDINATOR__DATABASE_URL, coordinator.database_url \
             in pgvault.toml, or pass --database-url"
        );
    }
    if settings.queue.amqp_url.is_empty() {
        bail!(
            "queue.amqp_url is not set: a coordinator needs RabbitMQ (use `pgvault up` for the all-in-one)"
        );
    }
    let master_key = settings.master_key()?;
    let queue = AmqpQueue::connect(&settings.queue.amqp_url, &settings.queue.queue_name).await?;
    let config = coordinator_config(
        &settings,
        settings.coordinator.database_url.clone(),
        master_key,
    );
    let dead_letters = Box::new(queue.dead_letter_source("pgvault-coordinator-dead-letters"));
    let handle = Coordinator::start_with_dead_letters(
        config,
        Arc::new(queue.publisher()),
        Some(dead_letters),
    )
    .await?;
    tracing::info!(endpoint = %format!("http://{}", handle.local_addr()), broker = %queue.redacted_url(), "coordinator ready");
    eprintln!(
        "pgvault coordinator listening on http://{}",
        handle.local_addr()
    );
    if let Some(url) = handle.console_url() {
        eprintln!("web console on {url}");
    }
    if let Some(url) = handle.metrics_url() {
        eprintln!("metrics on {url}");
    }
    signals::shutdown_requested().await;
    tracing::info!("shutting down");
    handle.shutdown().await?;
    traces.shutdown().await;
    Ok(())
}

pub async fn run_worker(
    config_file: Option<&Path>,
    client: &client::ClientOptions,
    args: WorkerArgs,
) -> anyhow::Result<()> {
    let mut overrides = Overrides::default();
    overrides.set("worker", "coordinator", args.coordinator.map(Value::from));
    overrides.set("queue", "amqp_url", args.amqp_url.map(Value::from));
    overrides.set("worker", "token_file", args.token_file.map(|p| json!(p)));
    overrides.set("worker", "concurrency", args.concurrency.map(Value::from));
    overrides.set("worker", "connections", args.connections.map(Value::from));
    let settings = Settings::load(config_file, overrides.into_value())?;
    let traces = telemetry::init(&settings, ServiceName::Worker)?;
    if settings.queue.amqp_url.is_empty() {
        bail!(
            "queue.amqp_url is not set: a worker needs RabbitMQ (use `pgvault up` for the all-in-one)"
        );
    }
    let token = match (settings.worker_token(), &client.token) {
        (Ok(token), _) => token,
        (Err(_), Some(token)) => token.clone(),
        (Err(e), None) => return Err(e),
    };
    let queue = AmqpQueue::connect(&settings.queue.amqp_url, &settings.queue.queue_name).await?;
    let mut options = worker_options(&settings, settings.worker.coordinator.clone(), token);
    // worker.ca_cert, else the global --ca-cert / PGVAULT_CA_CERT.
    if options.ca_cert.is_none() {
        options.ca_cert = client.ca_cert.clone();
    }
    let shutdown = CancellationToken::new();
    let worker_id = options.worker_id.clone();
    let consumers =
        move || -> Box<dyn pgvault_queue::TaskConsumer> { Box::new(queue.consumer(&worker_id)) };
    let worker = tokio::spawn(runner::run(options, consumers, shutdown.clone()));
    eprintln!(
        "pgvault worker started; coordinator {}",
        settings.worker.coordinator
    );
    signals::shutdown_requested().await;
    tracing::info!("shutting down: releasing running tasks");
    shutdown.cancel();
    worker.await.context("worker task panicked")??;
    traces.shutdown().await;
    Ok(())
}

/// The coordinator's options from settings.
pub fn coordinator_config(
    settings: &Settings,
    database_url: String,
    master_key: [u8; 32],
) -> CoordinatorConfig {
    let c = &settings.coordinator;
    CoordinatorConfig {
        listen: c.listen,
        database_url,
        database_max_connections: c.database_max_connections,
        lease_ttl: Duration::from_secs(c.lease_ttl_seconds),
        max_attempts: c.max_attempts,
        reaper_interval: Duration::from_secs(c.reaper_interval_seconds),
        retry_backoff: Duration::from_secs(c.retry_backoff_seconds),
        maintenance_databases: c.maintenance_databases.clone(),
        bootstrap_token: (!c.bootstrap_token.is_empty()).then(|| c.bootstrap_token.clone()),
        admin_token_file: (!c.admin_token_file.as_os_str().is_empty())
            .then(|| c.admin_token_file.clone()),
        master_key,
        scheduler_interval: Duration::from_secs(c.scheduler_interval_seconds),
        schedule_max_lateness: Duration::from_secs(c.schedule_max_lateness_minutes * 60),
        clock: clock(c),
        external_secrets: ExternalSecrets {
            env_prefix: (!c.secret_env_prefix.is_empty()).then(|| c.secret_env_prefix.clone()),
            file_dir: (!c.secret_file_dir.as_os_str().is_empty())
                .then(|| c.secret_file_dir.clone()),
        },
        tls: (!c.tls_cert.as_os_str().is_empty()).then(|| TlsFiles {
            cert: c.tls_cert.clone(),
            key: c.tls_key.clone(),
        }),
        console: console_options(c, None),
        agent_wait: Duration::from_secs(c.agent_wait_seconds),
        agent_status_interval: Duration::from_secs(c.agent_status_interval_seconds),
        metrics: metrics_options(settings, None),
        notifications: notification_options(c),
    }
}

/// How notifications are sent; the sender looks for due deliveries every
/// reaper interval.
fn notification_options(c: &CoordinatorSettings) -> NotificationOptions {
    NotificationOptions {
        poll_interval: Duration::from_secs(c.reaper_interval_seconds),
        retry: RetryPolicy {
            base: Duration::from_secs(c.notification_retry_seconds),
            max_delay: Duration::from_secs(600),
            max_attempts: c.notification_max_attempts,
        },
        timeout: Duration::from_secs(c.notification_timeout_seconds),
    }
}

/// Where metrics are served: at the configured `telemetry.metrics_listen`,
/// else at `default` (moving to a free port when it is taken), else nowhere.
/// The setting was validated when the settings were loaded.
pub fn metrics_options(settings: &Settings, default: Option<SocketAddr>) -> Option<MetricsOptions> {
    match settings
        .telemetry
        .metrics_listen()
        .unwrap_or(ConsoleListen::Off)
    {
        ConsoleListen::Off => None,
        ConsoleListen::At(listen) => Some(MetricsOptions {
            listen,
            fallback: PortFallback::Fail,
        }),
        ConsoleListen::Default => default.map(|listen| MetricsOptions {
            listen,
            fallback: PortFallback::NextFree,
        }),
    }
}

/// The web console's options: at the configured address, else at
/// `default` (moving to a free port when it is taken), else none.
/// `console_listen` was validated when the settings were loaded.
pub fn console_options(
    c: &CoordinatorSettings,
    default: Option<SocketAddr>,
) -> Option<ConsoleOptions> {
    let (listen, fallback) = match c.console_listen().unwrap_or(ConsoleListen::Off) {
        ConsoleListen::Off => return None,
        ConsoleListen::At(addr) => (addr, PortFallback::Fail),
        ConsoleListen::Default => (default?, PortFallback::NextFree),
    };
    Some(ConsoleOptions {
        listen,
        fallback,
        idle_timeout: Duration::from_secs(c.console_idle_timeout_seconds),
        ..ConsoleOptions::new(listen)
    })
}

/// The coordinator's clock: the system clock, or in test builds the one
/// `coordinator.clock_offset_file` shifts.
#[cfg(feature = "test-clock")]
fn clock(c: &CoordinatorSettings) -> Arc<dyn Clock> {
    if c.clock_offset_file.as_os_str().is_empty() {
        return Arc::new(SystemClock);
    }
    tracing::warn!(file = %c.clock_offset_file.display(), "coordinator clock shifted by a test offset file");
    Arc::new(pgvault_coordinator::clock::OffsetFileClock::new(
        c.clock_offset_file.clone(),
    ))
}

/// The coordinator's clock: production builds have only the system clock.
#[cfg(not(feature = "test-clock"))]
fn clock(_: &CoordinatorSettings) -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// The worker's options from settings.
pub fn worker_options(
    settings: &Settings,
    coordinator_endpoint: String,
    token: String,
) -> WorkerOptions {
    let w = &settings.worker;
    let mut engine = EngineOptions {
        zstd_level: w.zstd_level,
        ..EngineOptions::default()
    };
    if w.connections > 0 {
        engine.connections = w.connections;
    }
    engine.split_threshold_bytes = w.split_threshold_mb * 1024 * 1024;
    engine.fanout_threshold_bytes = w.fanout_threshold_mb.max(1) * 1024 * 1024;
    engine.pg_bin_dirs = w.pg_bin_dirs.clone();
    WorkerOptions {
        coordinator_endpoint,
        token,
        ca_cert: (!w.ca_cert.as_os_str().is_empty()).then(|| w.ca_cert.clone()),
        worker_id: runner::default_worker_id(),
        concurrency: w.concurrency,
        engine,
    }
}

/// Command-line flags as a partial settings tree, merged last.
#[derive(Default)]
pub struct Overrides(Map<String, Value>);

impl Overrides {
    pub fn set(&mut self, section: &str, key: &str, value: Option<Value>) {
        if let Some(value) = value {
            let entry = self
                .0
                .entry(section.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(map) = entry {
                map.insert(key.to_string(), value);
            }
        }
    }

    pub fn into_value(self) -> Value {
        Value::Object(self.0)
    }
}
