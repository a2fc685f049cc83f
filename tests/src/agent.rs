//! Agents for end-to-end tests: `pgvault agent run` started inside a
//! private network ([`AgentProcess`]: token in a file, SIGTERM and SIGKILL, its log for
//! failure messages), the agent created through the CLI
//! ([`create_agent`]), and waiting until its instances are connected
//! ([`wait_connected`]).

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use pgvault_proto::v1::{Agent, GetAgentRequest};

use crate::netns::{InsideProcess, PrivateNetwork};
use crate::pgvault::{Api, PgvaultCluster, pgvault_bin};

/// One `pgvault agent run` process inside a private network; SIGKILLed
/// (with its process group) when dropped.
pub struct AgentProcess {
    // Field order matters: the process stops before its directory goes.
    process: InsideProcess,
    name: String,
    /// Kept after the process has exited, to name its attempts.
    pid: u32,
    /// Holds the token file.
    _dir: tempfile::TempDir,
}

impl AgentProcess {
    /// `pgvault agent run --coordinator ENDPOINT --name NAME --token-file
    /// FILE` inside `network`, the token in a file only its owner reads.
    /// Backups go to file:// datastores, which need no credentials.
    pub fn start(
        network: &PrivateNetwork,
        endpoint: &str,
        name: &str,
        token: &str,
    ) -> anyhow::Result<AgentProcess> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("pgvault-agent-")
            .tempdir()?;
        let token_file = dir.path().join("agent.token");
        std::fs::write(&token_file, token)?;
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600))?;
        let mut command = network.command(pgvault_bin()?);
        command
            .args(["agent", "run", "--coordinator", endpoint, "--name", name])
            .arg("--token-file")
            .arg(&token_file)
            // No pgvault.toml of the test's working directory applies.
            .current_dir(dir.path())
            .env("RUST_LOG", "info");
        let process = network.spawn(&format!("agent {name}"), command)?;
        Ok(AgentProcess {
            pid: process.pid(),
            process,
            name: name.to_string(),
            _dir: dir,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id, also once it has exited.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether `worker` (a job's or an attempt's `worker`) names this
    /// process: the runner names attempts `host:pid`, agents as workers do
    /// (`ip netns exec` execs the program, so the pid is the agent's own).
    pub fn is_worker(&self, worker: &str) -> bool {
        worker
            .rsplit(':')
            .next()
            .and_then(|pid| pid.parse::<u32>().ok())
            == Some(self.pid())
    }

    /// SIGKILL (no chance to release anything, as in a crash); waits for the exit.
    pub fn kill(&mut self) -> anyhow::Result<ExitStatus> {
        self.process.kill()
    }

    /// SIGTERM, as a service manager stops it; waits up to `timeout` for
    /// the exit (it releases its running tasks first).
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        self.process.signal(libc::SIGTERM);
        self.process.wait(timeout)
    }

    /// Fails with the agent's output if it has exited.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        self.process.ensure_running()
    }

    pub fn log_text(&self) -> String {
        self.process.log_text()
    }

    /// The log headed with the agent's name and pid, for failure messages.
    pub fn labelled_log(&self) -> String {
        format!(
            "--- agent {} (pid {}) ---\n{}",
            self.name,
            self.pid(),
            self.log_text()
        )
    }
}

/// `pgvault agent create NAME --region REGION --output json` against
/// `cluster`; returns the token it printed once.
pub fn create_agent(cluster: &PgvaultCluster, name: &str, region: &str) -> anyhow::Result<String> {
    let output = cluster.cli(
        &[
            "agent", "create", name, "--region", region, "--output", "json",
        ],
        None,
    )?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "`pgvault agent create {name}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let value: serde_json::Value = serde_json::from_str(&stdout)
        .with_context(|| format!("`pgvault agent create` printed no JSON: {stdout}"))?;
    value["token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .with_context(|| format!("`pgvault agent create` printed no token: {value}"))
}

/// Waits until `agent` (short id) has exactly `instances` connected
/// instances; returns it. `agents` are checked to be running meanwhile,
/// and their logs end the error otherwise.
pub async fn wait_connected(
    api: &mut Api,
    agent: &str,
    instances: usize,
    agents: &mut [&mut AgentProcess],
) -> anyhow::Result<Agent> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for process in agents.iter_mut() {
            process.ensure_running()?;
        }
        let found = api
            .agents
            .get_agent(GetAgentRequest {
                name: format!("agents/{agent}"),
            })
            .await?
            .into_inner();
        let connected = found.instances.iter().filter(|i| i.connected).count();
        if connected == instances {
            return Ok(found);
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = agents.iter().map(|a| a.labelled_log()).collect();
            bail!(
                "agent {agent} has {connected} connected instances, not {instances}: {found:?}\n{}",
                logs.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
