//! `pgvault`: the all-in-one (`up`), the cluster processes (`coordinator`,
//! `worker`) and the client verbs, in one binary.
//!
//! # Layout
//! - [`config`]: settings for the server commands (figment).
//! - [`up`]: the all-in-one mode.
//! - [`serve`]: the `coordinator` and `worker` processes.
//! - [`agent`]: `pgvault agent`: its admin verbs and `agent run`.
//! - [`client`]: the client verbs (gRPC).
//! - [`errors`]: `pgvault errors`, the error-code catalogue (offline).
//! - [`telemetry`]: logging; [`signals`]: Ctrl-C and SIGTERM.

mod agent;
mod client;
mod config;
mod errors;
mod serve;
mod signals;
mod telemetry;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Backup vault for PostgreSQL fleets: consistent, compressed, verified
/// logical backups on schedule or on demand, restored as a database.
#[derive(Parser)]
#[command(name = "pgvault", version, propagate_version = true)]
#[command(
    after_help = "Start here:\n  pgvault up                      # all-in-one on http://127.0.0.1:50051\n  pgvault vault create --help     # then protect a database (see the README walkthrough)"
)]
struct Cli {
    #[command(flatten)]
    client: client::ClientOptions,

    /// Settings file for the server commands (default: ./pgvault.toml when present).
    #[arg(long, global = true, env = "PGVAULT_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Run everything in one process: coordinator, one worker, an in-process
    /// queue and a private PostgreSQL state cluster under --data-dir.
    Up(up::UpArgs),
    /// Run a coordinator (API, dispatcher, lease reaper) for a cluster with RabbitMQ.
    Coordinator(serve::CoordinatorArgs),
    /// Run a worker that takes backup and restore tasks from RabbitMQ.
    Worker(serve::WorkerArgs),
    /// Agents for servers in private networks that no worker can reach:
    /// create, list, inspect and delete them, or run one (agent run).
    #[command(subcommand)]
    Agent(agent::AgentCommand),
    #[command(flatten)]
    Client(client::ClientCommand),
    /// Explain job error codes: what each means and what to do (offline).
    Errors(errors::ErrorsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Client(_) | Command::Errors(_)) {
        end_quietly_when_stdout_closes();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => up::run(cli.config.as_deref(), args)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Coordinator(args) => serve::run_coordinator(cli.config.as_deref(), args)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Worker(args) => serve::run_worker(cli.config.as_deref(), &cli.client, args)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Agent(command) => {
                agent::run(cli.config.as_deref(), &cli.client, command).await
            }
            Command::Client(command) => client::run(&cli.client, command).await,
            Command::Errors(args) => {
                errors::run(&args, cli.client.output).map(|()| ExitCode::SUCCESS)
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A client verb's reader may go away early (`pgvault job list | head`):
/// like every Unix tool, the command then ends quietly by SIGPIPE instead of
/// panicking in `println!`. Only for the printing commands: the server
/// processes keep Rust's default (SIGPIPE ignored), so a closed socket or a
/// child's closed pipe is an error they report.
fn end_quietly_when_stdout_closes() {
    // SAFETY: restores the default disposition of one signal, before any
    // thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
