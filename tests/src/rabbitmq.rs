//! A private RabbitMQ node on free loopback ports, from Debian's
//! `rabbitmq-server` package (`PGVAULT_RABBITMQ_SERVER` overrides the path).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::ports::start_on_free_ports;
use crate::process::{ChildProcess, wait_for_port};

pub struct RabbitMq {
    process: Option<ChildProcess>,
    port: u16,
    dist_port: u16,
    dir: tempfile::TempDir,
}

impl RabbitMq {
    pub fn start() -> anyhow::Result<RabbitMq> {
        start_on_free_ports(2, |ports| {
            let mut node = RabbitMq {
                process: None,
                port: ports[0],
                dist_port: ports[1],
                dir: tempfile::Builder::new()
                    .prefix("pgvault-rabbitmq-")
                    .tempdir()?,
            };
            node.launch()?;
            Ok(node)
        })
    }

    /// `amqp://guest:guest@127.0.0.1:<port>/%2f`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Stops the node, keeping its data (durable queues survive).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop(Duration::from_secs(20));
        }
    }

    /// Starts the node again on the same ports and data.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.launch()
    }

    fn launch(&mut self) -> anyhow::Result<()> {
        let bin = find_binary()?;
        let base = self.dir.path();
        let plugins = base.join("enabled_plugins");
        std::fs::write(&plugins, "[].\n")?;
        let mut command = Command::new(bin);
        command
            .env("HOME", base)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env(
                "RABBITMQ_NODENAME",
                format!("pgvault{}@localhost", self.port),
            )
            .env("RABBITMQ_MNESIA_BASE", base.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", base.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", &plugins)
            .env("RABBITMQ_CONFIG_FILE", base.join("rabbitmq"))
            .env(
                "RABBITMQ_ADVANCED_CONFIG_FILE",
                base.join("advanced.config"),
            );
        let mut process =
            ChildProcess::spawn("rabbitmq-server", command, &base.join("server.log"))?;
        wait_for_port(self.port, Duration::from_secs(90), &mut process)?;
        self.process = Some(process);
        self.wait_for_amqp()
    }

    /// The client connections the node holds now, as `rabbitmqctl
    /// list_connections` lists them: (the name the client gave it, empty if
    /// none, and the connection's process id). rabbitmqctl sits next to the server binary
    /// and finds the node's cookie through the same `HOME`.
    pub fn connections(&self) -> anyhow::Result<Vec<(String, String)>> {
        let ctl = find_binary()?.with_file_name("rabbitmqctl");
        let output = Command::new(&ctl)
            .env("HOME", self.dir.path())
            .args(["-n", &format!("pgvault{}@localhost", self.port)])
            .args(["list_connections", "--quiet", "--no-table-headers"])
            .args(["pid", "client_properties"])
            .output()
            .map_err(|e| anyhow::anyhow!("cannot run {}: {e}", ctl.display()))?;
        if !output.status.success() {
            bail!(
                "{} list_connections failed: {}",
                ctl.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let listed = String::from_utf8_lossy(&output.stdout);
        Ok(listed
            .lines()
            .filter_map(|line| line.split_once('\t'))
            .map(|(pid, properties)| (connection_name(properties), pid.to_string()))
            .collect())
    }

    fn wait_for_amqp(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        loop {
            let result = runtime.block_on(pgvault_queue::amqp::AmqpQueue::connect(
                &self.url(),
                "pgvault.harness.ping",
            ));
            match result {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    bail!("RabbitMQ did not accept AMQP connections: {e}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(300)),
            }
        }
    }
}

impl Drop for RabbitMq {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `connection_name` in a connection's client properties as rabbitmqctl
/// prints them (`[..., {"connection_name","pgvault inspect"}, ...]`).
fn connection_name(properties: &str) -> String {
    properties
        .split_once("{\"connection_name\",\"")
        .and_then(|(_, rest)| rest.split_once("\"}"))
        .map(|(name, _)| name.to_string())
        .unwrap_or_default()
}

fn find_binary() -> anyhow::Result<PathBuf> {
    let bin = std::env::var_os("PGVAULT_RABBITMQ_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/rabbitmq/bin/rabbitmq-server"));
    if !bin.is_file() {
        bail!(
            "RabbitMQ is not installed ({} missing): run scripts/test.sh, or `apt-get install rabbitmq-server`",
            bin.display()
        );
    }
    Ok(bin)
}
