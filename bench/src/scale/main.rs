//! `pgvault-scale`: the measuring half of `bench/scale.sh` (the coordinator
//! scale benchmark). The script starts the servers, the coordinator and the
//! seeding; this binary times what it cannot time from a shell:
//!
//! ```text
//! pgvault-scale wait-published --database-url URL --amqp-url URL --queue pgvault.tasks \
//!                              --expect 10000 --slot-unix 1767225600.0
//! pgvault-scale list-jobs --endpoint http://127.0.0.1:PORT --vault vaults/v01 \
//!                         --instance vaults/v01/backupInstances/UUID [--calls 300]
//! ```
//! `wait-published` prints one JSON object; `list-jobs` prints one
//! tab-separated line per listing shape (shape, calls, p50, p95, p99 in ms,
//! average rows per page). The API token comes from `PGVAULT_TOKEN`.

mod list_jobs;
mod published;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "pgvault-scale",
    about = "Time the coordinator under a big history"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Wait until the scheduled jobs exist and are all in RabbitMQ; print the
    /// seconds from the slot instant to each.
    WaitPublished(published::Args),
    /// Time ListJobs over gRPC for the listing shapes users run.
    ListJobs(list_jobs::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::WaitPublished(args) => {
            let report = published::wait(&args).await?;
            println!("{}", serde_json::to_string(&report)?);
        }
        Command::ListJobs(args) => {
            let token = std::env::var("PGVAULT_TOKEN")
                .context("set PGVAULT_TOKEN to an API token of the coordinator")?;
            for shape in list_jobs::run(&args, &token).await? {
                println!("{}", shape.tsv());
            }
        }
    }
    Ok(())
}
