//! An agent run in the test process against the fake coordinator, and
//! the private PostgreSQL some tests give it.

use std::time::Duration;

use pgvault_agent::{AgentError, AgentOptions, AgentSettings};
use pgvault_localpg::TempCluster;
use pgvault_proto::v1::ConnectionSpec;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::fake::TOKEN;

/// A job id the tests use.
pub const JOB: &str = "0b3e7c52-9a41-4d7e-b1f0-6c2d8e4a9f13";

/// An agent running in this process.
pub struct Agent {
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), AgentError>>,
}

impl Agent {
    pub fn start(options: AgentOptions) -> Agent {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(pgvault_agent::run(options, shutdown.clone()));
        Agent { shutdown, task }
    }

    /// Shuts the agent down as SIGTERM does and waits for it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("the agent stops within 20 s of shutdown")
            .expect("the agent's task")
            .expect("the agent ran");
    }
}

/// Agent `dc1` with the fake's token, dialling `endpoint`.
pub fn options(endpoint: &str, concurrency: usize) -> AgentOptions {
    AgentOptions::from_settings(&AgentSettings {
        coordinator: endpoint.to_string(),
        name: "dc1".into(),
        token: TOKEN.into(),
        concurrency,
        ..AgentSettings::default()
    })
    .expect("agent options")
}

/// A private PostgreSQL, or a failure saying what to install.
pub fn cluster() -> TempCluster {
    TempCluster::start("agent-test-pw").unwrap_or_else(|e| {
        panic!("cannot start a private PostgreSQL ({e}); install PostgreSQL 15 (initdb, pg_ctl) as /usr/lib/postgresql/15/bin or set PGVAULT_PG_BIN_DIR")
    })
}

/// How the coordinator would hand `cluster` over in a task or probe.
pub fn spec(cluster: &TempCluster, database: &str, user: &str, password: &str) -> ConnectionSpec {
    ConnectionSpec {
        host: cluster.host().into(),
        port: u32::from(cluster.port()),
        database: database.into(),
        user: user.into(),
        password: password.into(),
        ssl_mode: "disable".into(),
        ..ConnectionSpec::default()
    }
}

/// The major version of this machine's pg_dump, as the agent finds it.
pub fn pg_dump_major() -> u32 {
    let dir = pgvault_localpg::find_bin_dir(None, pgvault_localpg::CLIENT_PROGRAMS)
        .expect("pg_dump on this machine");
    let output = std::process::Command::new(dir.join("pg_dump"))
        .arg("--version")
        .output()
        .expect("pg_dump --version");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let version = text.split_whitespace().nth(2).expect("a version");
    version
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("cannot read {text:?}"))
}
