//! A PostgreSQL server the test can reach, wherever it runs: on the host's
//! loopback ([`LocalCluster`], [`TempCluster`]) or inside a private network
//! ([`crate::netns::InsidePostgres`]). The fixtures and the comparisons
//! take any of them, so a source inside a private network is loaded and
//! compared like any other.

use std::future::Future;
use std::process::Command;

use pgvault_localpg::{LocalCluster, TempCluster};

pub trait PgAccess {
    /// `program` (psql, pg_dump, pgbench…) of the server's PostgreSQL, run
    /// where it reaches the server, with `PGHOST`, `PGPORT`, `PGUSER` and
    /// `PGPASSWORD` set for the superuser: add the database and arguments.
    fn client_command(&self, program: &str) -> Command;

    /// A superuser connection to `database`, driven on the current tokio runtime.
    fn client(
        &self,
        database: &str,
    ) -> impl Future<Output = anyhow::Result<tokio_postgres::Client>> + Send;
}

impl PgAccess for LocalCluster {
    fn client_command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin_dir().join(program));
        set_client_env(&mut command, self);
        command
    }

    async fn client(&self, database: &str) -> anyhow::Result<tokio_postgres::Client> {
        Ok(self.connect(database).await?)
    }
}

impl PgAccess for TempCluster {
    fn client_command(&self, program: &str) -> Command {
        (**self).client_command(program)
    }

    async fn client(&self, database: &str) -> anyhow::Result<tokio_postgres::Client> {
        (**self).client(database).await
    }
}

/// The libpq environment naming `cluster`'s server and superuser.
pub(crate) fn set_client_env(command: &mut Command, cluster: &LocalCluster) {
    command
        .env("PGHOST", cluster.host())
        .env("PGPORT", cluster.port().to_string())
        .env("PGUSER", cluster.user())
        .env("PGPASSWORD", cluster.password());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn client_programs_and_connections_reach_a_loopback_cluster() {
        let cluster = TempCluster::start("access-pw").expect("start private cluster");
        let output = cluster
            .client_command("psql")
            .args(["-X", "-A", "-t", "-d", "postgres", "-c", "select 40 + 2"])
            .output()
            .expect("run psql");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "42");
        let client = cluster.client("postgres").await.expect("connect");
        let row = client.query_one("select 7::int4", &[]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), 7);
    }
}
