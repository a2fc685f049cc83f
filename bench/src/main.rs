//! `pgvault-bench`: runs the engine directly (no coordinator, no queue) so
//! `bench/run.sh` can time it against `pg_dump`/`pg_restore` and measure
//! its peak memory. Prints one JSON object per run on stdout.
//!
//! ```text
//! pgvault-bench backup  --source "host=127.0.0.1 port=5432 user=postgres dbname=bench" \
//!                       --datastore file:///tmp/store --prefix run1 [--connections 2] [--zstd-level 1]
//! pgvault-bench restore --source "host=127.0.0.1 port=5432 user=postgres" \
//!                       --datastore file:///tmp/store --prefix run1 --target-database copy1
//! ```
//! The password comes from `--password` or `PGPASSWORD`, never from the
//! conninfo echoed anywhere. Each JSON object carries the process's CPU
//! seconds and the engine's stage split ([`report`]).

mod report;

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use pgvault_datastore::Datastore;
use pgvault_engine::{self as engine, EngineOptions, NoProgress, PgTarget};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "pgvault-bench",
    about = "Run the pgvault engine directly and time it"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Back up a database into a datastore.
    Backup {
        #[command(flatten)]
        common: Common,
    },
    /// Restore a recovery point as a new database on the source server.
    Restore {
        #[command(flatten)]
        common: Common,
        /// Name of the database to create.
        #[arg(long)]
        target_database: String,
        /// Expected manifest SHA-256 (hex), as a job would pass it.
        #[arg(long)]
        manifest_sha256: Option<String>,
    },
}

#[derive(Args)]
struct Common {
    /// libpq-style `key=value` conninfo (host, port, user, dbname, sslmode);
    /// the flags below (and PGHOST, PGPORT, PGUSER) override it.
    #[arg(long, default_value = "")]
    source: String,
    #[arg(long, env = "PGHOST")]
    host: Option<String>,
    #[arg(long, env = "PGPORT")]
    port: Option<u16>,
    #[arg(long, env = "PGUSER")]
    user: Option<String>,
    #[arg(long)]
    dbname: Option<String>,
    #[arg(long, env = "PGPASSWORD", hide_env_values = true, default_value = "")]
    password: String,
    /// Datastore URL, e.g. `file:///tmp/store`.
    #[arg(long)]
    datastore: String,
    /// Recovery point prefix inside the datastore.
    #[arg(long)]
    prefix: String,
    #[arg(long)]
    connections: Option<usize>,
    #[arg(long)]
    zstd_level: Option<i32>,
    /// Tables larger than this (MiB) are split into ctid ranges.
    #[arg(long)]
    split_threshold_mib: Option<u64>,
    /// Multipart part size (MiB).
    #[arg(long)]
    part_size_mib: Option<usize>,
    /// Directory holding pg_dump/pg_restore.
    #[arg(long)]
    pg_bin_dir: Option<std::path::PathBuf>,
}

impl Common {
    fn target(&self) -> anyhow::Result<PgTarget> {
        let mut target = PgTarget {
            host: "127.0.0.1".into(),
            port: 5432,
            database: "postgres".into(),
            user: "postgres".into(),
            password: self.password.clone(),
            ssl_mode: String::new(),
            trust_server_certificate: false,
            ssl_root_cert: None,
        };
        for (key, value) in parse_conninfo(&self.source)? {
            match key.as_str() {
                "host" | "hostaddr" => target.host = value,
                "port" => target.port = value.parse().context("port in --source")?,
                "user" => target.user = value,
                "dbname" => target.database = value,
                "sslmode" => target.ssl_mode = value,
                "password" => target.password = value,
                other => bail!("unsupported conninfo key {other:?} in --source"),
            }
        }
        if let Some(host) = &self.host {
            target.host = host.clone();
        }
        if let Some(port) = self.port {
            target.port = port;
        }
        if let Some(user) = &self.user {
            target.user = user.clone();
        }
        if let Some(db) = &self.dbname {
            target.database = db.clone();
        }
        Ok(target)
    }

    fn options(&self) -> EngineOptions {
        let mut options = EngineOptions::default();
        if let Some(n) = self.connections {
            options.connections = n.max(1);
        }
        if let Some(level) = self.zstd_level {
            options.zstd_level = level;
        }
        if let Some(mib) = self.split_threshold_mib {
            options.split_threshold_bytes = mib.max(1) * 1024 * 1024;
        }
        if let Some(mib) = self.part_size_mib {
            options.part_size = mib.max(5) * 1024 * 1024;
        }
        options.pg_bin_dirs = self.pg_bin_dir.clone().into_iter().collect();
        options
    }

    async fn datastore(&self) -> anyhow::Result<Datastore> {
        let store = Datastore::open(&self.datastore).context("open the datastore")?;
        store
            .ensure_exists()
            .await
            .context("create the datastore")?;
        Ok(store)
    }
}

/// Splits `key=value key2='quoted value'` (libpq conninfo without escapes
/// beyond `\'` and `\\`).
fn parse_conninfo(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let key: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim()
            .to_string();
        if key.is_empty() {
            bail!("bad --source conninfo: a value without a key");
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => bail!("bad --source conninfo: unterminated quote for {key}"),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((key, value));
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Engine logs (e.g. RUST_LOG=pgvault_engine=debug for phase timings) on stderr.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let started = Instant::now();
    let report = match cli.command {
        Command::Backup { common } => {
            let store = common.datastore().await?;
            let options = common.options();
            let summary = engine::backup(
                &common.target()?,
                &store,
                &common.prefix,
                &options,
                Arc::new(NoProgress),
                CancellationToken::new(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("backup failed ({}): {e}", e.code))?;
            serde_json::json!({
                "operation": "backup",
                "wall_seconds": started.elapsed().as_secs_f64(),
                "stored_bytes": summary.stored_bytes,
                "raw_bytes": summary.raw_bytes,
                "rows": summary.rows,
                "chunks": summary.chunk_count,
                "connections": options.connections,
                "zstd_level": options.zstd_level,
                "manifest_sha256": summary.manifest_sha256,
                "stages": report::stages_json(&summary.stages),
            })
        }
        Command::Restore {
            common,
            target_database,
            manifest_sha256,
        } => {
            let store = common.datastore().await?;
            let options = common.options();
            let mut target = common.target()?;
            target.database = target_database;
            let summary = engine::restore_database(
                &target,
                &store,
                &common.prefix,
                manifest_sha256.as_deref(),
                &options,
                Arc::new(NoProgress),
                CancellationToken::new(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("restore failed ({}): {e}", e.code))?;
            serde_json::json!({
                "operation": "restore",
                "wall_seconds": started.elapsed().as_secs_f64(),
                "rows": summary.rows,
                "raw_bytes": summary.bytes,
                "tables": summary.tables,
                "connections": options.connections,
                "stages": report::stages_json(&summary.stages),
            })
        }
    };
    let mut report = report;
    let (user, system) = report::process_cpu_seconds();
    report["cpu_user_seconds"] = serde_json::json!(user);
    report["cpu_system_seconds"] = serde_json::json!(system);
    println!("{report}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conninfo_is_split_with_quotes() {
        let parsed = parse_conninfo(" host=127.0.0.1 port=5 dbname='my db' user='o\\'k'").unwrap();
        assert_eq!(
            parsed,
            vec![
                ("host".to_string(), "127.0.0.1".to_string()),
                ("port".to_string(), "5".to_string()),
                ("dbname".to_string(), "my db".to_string()),
                ("user".to_string(), "o'k".to_string()),
            ]
        );
        assert!(parse_conninfo("dbname='x").is_err());
    }
}
