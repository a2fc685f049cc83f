//! `pgvault up`: the all-in-one. A coordinator, one in-process worker and an
//! in-process queue in this process; state in a private PostgreSQL cluster
//! under `--data-dir` (unless a database URL is configured); a local-disk
//! datastore beside it. Everything it generates (state cluster, its password,
//! the admin token, the secret-encryption key) lives in the data directory,
//! so a second `up` on the same directory comes back with the same state.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use base64::Engine;
use pgvault_coordinator::Coordinator;
use pgvault_localpg::{ClusterOptions, LocalCluster};
use pgvault_queue::amqp::AmqpQueue;
use pgvault_queue::memory::InProcessQueue;
use pgvault_queue::{DeadLetterSource, TaskConsumer, TaskPublisher};
use pgvault_telemetry::ServiceName;
use pgvault_worker::runner;
use rand::RngCore;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::serve::{
    CoordinatorFlags, Overrides, console_options, coordinator_config, metrics_options,
    worker_options,
};
use crate::{signals, telemetry};

/// Where `up` serves Prometheus metrics unless configured otherwise (the
/// next free port when this one is taken).
const DEFAULT_METRICS: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9750);

/// Where `up` serves the web console unless configured otherwise (the
/// next free port when this one is taken).
const DEFAULT_CONSOLE: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8080);

#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  pgvault up                       # state in ./.pgvault, API on http://127.0.0.1:50051,\n                                   # web console on http://127.0.0.1:8080/ (or the next free port),\n                                   # metrics on http://127.0.0.1:9750/metrics (or the next free port)\n  export PGVAULT_TOKEN=$(cat .pgvault/admin.token)"
)]
pub struct UpArgs {
    /// Directory for the state cluster, keys, tokens and local datastore [setting: up.data_dir].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    coordinator: CoordinatorFlags,
}

pub async fn run(config_file: Option<&Path>, args: UpArgs) -> anyhow::Result<()> {
    let mut overrides = Overrides::default();
    overrides.set("up", "data_dir", args.data_dir.map(|p| json!(p)));
    args.coordinator.apply(&mut overrides);
    let mut settings = Settings::load(config_file, overrides.into_value())?;
    let traces = telemetry::init(&settings, ServiceName::Coordinator)?;
    if !settings.coordinator.tls_cert.as_os_str().is_empty() {
        // The in-process worker reaches the API over plain HTTP/2 on loopback.
        anyhow::bail!(
            "coordinator.tls_cert/tls_key are for `pgvault coordinator`; `pgvault up` serves plain \
             HTTP/2 for its in-process worker: unset them, or run a coordinator and workers"
        );
    }

    let data_dir = std::path::absolute(&settings.up.data_dir).with_context(|| {
        format!(
            "up.data_dir: cannot resolve {}",
            settings.up.data_dir.display()
        )
    })?;
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    // Traversable (for the unprivileged PostgreSQL user), not listable.
    set_mode(&data_dir, 0o711)?;
    let datastore_dir = data_dir.join("datastore");
    std::fs::create_dir_all(&datastore_dir)
        .with_context(|| format!("cannot create {}", datastore_dir.display()))?;

    let token_path = data_dir.join("admin.token");
    let token = read_or_create(&token_path, || format!("pgv_{}", random_base64(32)))?;
    if settings.coordinator.master_key.is_empty()
        && settings.coordinator.master_key_file.as_os_str().is_empty()
    {
        let key_path = data_dir.join("master.key");
        read_or_create(&key_path, || random_base64_standard(32))?;
        settings.coordinator.master_key_file = key_path;
    }
    let master_key = settings.master_key()?;

    // The private state cluster, unless a database was configured.
    let mut cluster = None;
    let database_url = if settings.coordinator.database_url.is_empty() {
        let password = read_or_create(&data_dir.join("postgres.password"), || random_base64(24))?;
        let options = ClusterOptions {
            data_dir: data_dir.join("postgres"),
            port: None,
            password,
            durable: true,
            settings: Vec::new(),
            hba: None,
            command_prefix: Vec::new(),
        };
        eprintln!(
            "starting private PostgreSQL state cluster in {}",
            options.data_dir.display()
        );
        let started = tokio::task::spawn_blocking(move || LocalCluster::start(options))
            .await
            .context("state cluster start panicked")?
            .context("cannot start the private PostgreSQL state cluster")?;
        ensure_database(&started, "pgvault").await?;
        let url = started.url("pgvault");
        cluster = Some(started);
        url
    } else {
        settings.coordinator.database_url.clone()
    };

    // The queue: in-process unless RabbitMQ was configured.
    let memory = InProcessQueue::new();
    let amqp = if settings.queue.amqp_url.is_empty() {
        None
    } else {
        Some(AmqpQueue::connect(&settings.queue.amqp_url, &settings.queue.queue_name).await?)
    };
    let publisher: Arc<dyn TaskPublisher> = match &amqp {
        Some(q) => Arc::new(q.publisher()),
        None => memory.publisher(),
    };

    let mut config = coordinator_config(&settings, database_url, master_key);
    config.console = console_options(&settings.coordinator, Some(DEFAULT_CONSOLE));
    config.metrics = metrics_options(&settings, Some(DEFAULT_METRICS));
    config.bootstrap_token = Some(token.clone());
    config.admin_token_file = None;
    let dead_letters: Box<dyn DeadLetterSource> = match &amqp {
        Some(q) => Box::new(q.dead_letter_source("pgvault-up-dead-letters")),
        None => memory.dead_letter_source(),
    };
    let coordinator =
        Coordinator::start_with_dead_letters(config, publisher, Some(dead_letters)).await?;
    let address = coordinator.local_addr();
    let endpoint = format!("http://{}", loopback_for(address));

    let options = worker_options(&settings, endpoint.clone(), token);
    let worker_id = options.worker_id.clone();
    let consumers = move || -> Box<dyn TaskConsumer> {
        match &amqp {
            Some(q) => Box::new(q.consumer(&worker_id)),
            None => memory.consumer(),
        }
    };
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(runner::run(options, consumers, shutdown.clone()));

    println!("pgvault is up");
    println!("  endpoint     {endpoint}");
    if let Some(url) = coordinator.console_url() {
        println!("  web console  {url}  (sign in with the admin token)");
    }
    if let Some(url) = coordinator.metrics_url() {
        println!("  metrics      {url}");
    }
    println!(
        "  admin token  {}  (export PGVAULT_TOKEN=$(cat {}))",
        token_path.display(),
        token_path.display()
    );
    println!("  datastore    file://{}", datastore_dir.display());
    match &cluster {
        Some(c) => println!(
            "  state        private PostgreSQL on 127.0.0.1:{} ({})",
            c.port(),
            c.data_dir().display()
        ),
        None => println!("  state        configured database"),
    }
    println!("press Ctrl-C to stop");

    signals::shutdown_requested().await;
    eprintln!("stopping pgvault");
    shutdown.cancel();
    match worker.await {
        Ok(Err(e)) => tracing::warn!(error = %e, "worker stopped with an error"),
        Err(e) => tracing::warn!(error = %e, "worker task panicked"),
        Ok(Ok(())) => {}
    }
    coordinator.shutdown().await?;
    if let Some(mut cluster) = cluster {
        tokio::task::spawn_blocking(move || cluster.stop())
            .await
            .context("state cluster stop panicked")?
            .context("cannot stop the private PostgreSQL state cluster")?;
    }
    traces.shutdown().await;
    eprintln!("pgvault stopped");
    Ok(())
}

/// Creates `name` on the cluster when it does not exist yet.
async fn ensure_database(cluster: &LocalCluster, name: &str) -> anyhow::Result<()> {
    let client = cluster
        .connect("postgres")
        .await
        .context("cannot connect to the state cluster")?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .context("cannot list databases of the state cluster")?
        .is_some();
    if !exists {
        client
            .batch_execute(&format!(
                "CREATE DATABASE \"{}\"",
                name.replace('"', "\"\"")
            ))
            .await
            .context("cannot create the state database")?;
    }
    Ok(())
}

/// The file's trimmed content, or a new value written with mode 0600.
fn read_or_create(path: &Path, make: impl FnOnce() -> String) -> anyhow::Result<String> {
    if path.exists() {
        let value = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        return Ok(value.trim().to_string());
    }
    let value = make();
    std::fs::write(path, format!("{value}\n"))
        .with_context(|| format!("cannot write {}", path.display()))?;
    set_mode(path, 0o600)?;
    Ok(value)
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set permissions of {}", path.display()))
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}

fn random_base64(n: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes(n))
}

fn random_base64_standard(n: usize) -> String {
    base64::engine::general_purpose::STANDARD.encode(random_bytes(n))
}

/// The address a local client should dial for a listener bound to `address`.
fn loopback_for(address: SocketAddr) -> SocketAddr {
    if address.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], address.port()))
    } else {
        address
    }
}
