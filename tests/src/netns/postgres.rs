//! A private PostgreSQL inside a private network: a [`TempCluster`] whose
//! `initdb`/`pg_ctl` run through `ip netns exec`, so the server listens on
//! the namespace's 127.0.0.1 and nothing on the host reaches it. The test
//! gets in the way a process inside would: client programs run inside
//! ([`InsidePostgres::psql`], [`PgAccess::client_command`]) and connections
//! are opened inside ([`InsidePostgres::connect`]). It implements
//! [`PgAccess`], so the fixtures and comparisons work on it unchanged.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use pgvault_localpg::TempCluster;

use super::PrivateNetwork;
use crate::pg_access::{PgAccess, set_client_env};

pub struct InsidePostgres {
    // Field order matters: the server stops before the network can go.
    cluster: TempCluster,
    network: PrivateNetwork,
}

impl InsidePostgres {
    pub(super) fn new(cluster: TempCluster, network: PrivateNetwork) -> InsidePostgres {
        InsidePostgres { cluster, network }
    }

    /// The address the server listens on, as seen inside: register the
    /// server with this host and [`Self::port`].
    pub fn host(&self) -> &str {
        self.cluster.host()
    }

    pub fn port(&self) -> u16 {
        self.cluster.port()
    }

    pub fn user(&self) -> &str {
        self.cluster.user()
    }

    pub fn password(&self) -> &str {
        self.cluster.password()
    }

    /// Directory of the PostgreSQL programs (psql, pg_dump, pgbench…).
    pub fn bin_dir(&self) -> &Path {
        self.cluster.bin_dir()
    }

    /// Server log, for failure messages.
    pub fn log_path(&self) -> std::path::PathBuf {
        self.cluster.log_path()
    }

    /// The network the server runs in.
    pub fn network(&self) -> &PrivateNetwork {
        &self.network
    }

    /// Stops and starts the server again, inside, on the same port.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        Ok(self.cluster.restart()?)
    }

    /// Runs `sql` with `psql` inside, as the superuser on `database`;
    /// returns its unaligned, tuples-only output (`a|b` per row).
    pub fn psql(&self, database: &str, sql: &str) -> anyhow::Result<String> {
        let output = self
            .client_command("psql")
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                database,
            ])
            .args(["-c", sql])
            .output()
            .context("run psql inside the private network")?;
        if !output.status.success() {
            bail!(
                "psql inside {} failed ({}): {}",
                self.network.name(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    /// A superuser connection to `database` over a socket opened inside,
    /// driven on the current tokio runtime.
    pub async fn connect(&self, database: &str) -> anyhow::Result<tokio_postgres::Client> {
        let address = SocketAddr::from(([127, 0, 0, 1], self.port()));
        let stream = self.network.connect_tcp(address)?;
        stream.set_nonblocking(true)?;
        let stream = tokio::net::TcpStream::from_std(stream)?;
        let (client, connection) = self
            .cluster
            .config(database)
            .connect_raw(stream, tokio_postgres::NoTls)
            .await
            .with_context(|| format!("connect to {database} inside {}", self.network.name()))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }
}

impl PgAccess for InsidePostgres {
    fn client_command(&self, program: &str) -> Command {
        let mut command = self.network.command(self.bin_dir().join(program));
        set_client_env(&mut command, &self.cluster);
        command
    }

    async fn client(&self, database: &str) -> anyhow::Result<tokio_postgres::Client> {
        self.connect(database).await
    }
}
