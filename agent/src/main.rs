//! `pgvault-agent`: reads its flags (and their `PGVAULT_AGENT_*`
//! variables; any other `PGVAULT_*` variable is refused or warned about,
//! see `pgvault_agent::environment`), sets up logging with the runner's log tail, and runs the
//! agent until SIGTERM or Ctrl-C, then shuts down gracefully.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use pgvault_agent::environment::check_environment;
use pgvault_agent::{AgentArgs, AgentOptions, AgentSettings};
use pgvault_telemetry::{ServiceName, Tracing};
use tokio_util::sync::CancellationToken;

/// Protects PostgreSQL servers that no pgvault worker can reach: runs next
/// to them, dials out to the coordinator (nothing connects to the agent),
/// and runs the backups, restores and checks of the servers bound to it.
#[derive(Parser)]
#[command(name = "pgvault-agent", version)]
#[command(
    long_about = "Protects PostgreSQL servers that no pgvault worker can reach.\n\n\
    Run it on a host inside the private network, next to the servers. It dials OUT to the \
    coordinator and keeps one stream open (nothing ever connects to the agent); the \
    coordinator sends it the tasks and checks of the servers registered with --agent NAME. \
    Backups and restores go from the agent straight to the datastore, so give it the \
    datastore's credentials (e.g. AWS_* or AZURE_* variables) as you would a worker.\n\n\
    Start several processes with the same name and token for a group: each task goes to \
    one of them, and another takes over if one dies. On SIGTERM the agent takes no more \
    tasks and releases the running ones (they are retried on another instance)."
)]
#[command(after_help = "Examples:\n  \
    pgvault agent create dc1 --region eu-west      # prints the token once\n  \
    PGVAULT_AGENT_TOKEN=... pgvault-agent --coordinator https://vault.example:50051 --name dc1 --ca-cert ca.pem\n  \
    pgvault server register billing-db --host 10.1.2.3 --port 5432 --region eu-west --agent dc1\n\n\
    Logs go to stderr; RUST_LOG sets the filter (default: info).")]
struct Cli {
    #[command(flatten)]
    args: AgentArgs,
    /// The agent's token, printed once by `pgvault agent create`; prefer
    /// PGVAULT_AGENT_TOKEN or --token-file so it stays out of the process
    /// list
    #[arg(
        long,
        env = "PGVAULT_AGENT_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    token: Option<String>,
    /// PEM certificate of the private CA that signed the coordinator's TLS
    /// certificate, for https:// endpoints [default: the system's roots]
    #[arg(long, env = "PGVAULT_AGENT__CA_CERT", value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// OTLP/gRPC endpoint to export traces to, e.g. http://127.0.0.1:4317
    /// [default: no export]
    #[arg(long, env = "PGVAULT_TELEMETRY__OTLP_ENDPOINT", value_name = "URL")]
    otlp_endpoint: Option<String>,
}

/// The variables `pgvault-agent` reads: its flags' `env =`.
fn variables_read() -> Vec<String> {
    let mut read: Vec<String> = Cli::command()
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .map(|name| name.to_string_lossy().into_owned())
        .collect();
    read.sort();
    read
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The environment's values (the token's among them) are copied only
    // for the check and dropped with this block.
    let checked = {
        let vars: Vec<(String, String)> = std::env::vars_os()
            .map(|(name, value)| {
                (
                    name.to_string_lossy().into_owned(),
                    value.to_string_lossy().into_owned(),
                )
            })
            .collect();
        check_environment(&vars, &variables_read())
    };
    let warnings = match checked {
        Ok(warnings) => warnings,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut settings = AgentSettings::default();
    cli.args.apply(&mut settings);
    if let Some(token) = cli.token {
        settings.token = token;
    }
    if let Some(ca_cert) = cli.ca_cert {
        settings.ca_cert = ca_cert;
    }
    let options = match AgentOptions::from_settings(&settings) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The exporter's gRPC channel lives on the runtime.
    let traces = {
        let _runtime = runtime.enter();
        match Tracing::start(ServiceName::Agent, cli.otlp_endpoint.as_deref()) {
            Ok(traces) => traces,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    pgvault_worker::logging::init(
        None,
        cli.args.log_format.as_deref().unwrap_or("text"),
        Some(&traces),
    );
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    let result = runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let mut agent = tokio::spawn(pgvault_agent::run(options, shutdown.clone()));
        let ended = tokio::select! {
            ended = &mut agent => ended,
            _ = shutdown_requested() => {
                shutdown.cancel();
                agent.await
            }
        };
        traces.shutdown().await;
        ended
    });
    match result {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: the agent ended abnormally: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown_requested() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops this process");
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variables_read_are_those_of_the_flags() {
        assert_eq!(
            variables_read(),
            [
                "PGVAULT_AGENT_TOKEN",
                "PGVAULT_AGENT__CA_CERT",
                "PGVAULT_AGENT__CONCURRENCY",
                "PGVAULT_AGENT__CONNECTIONS",
                "PGVAULT_AGENT__COORDINATOR",
                "PGVAULT_AGENT__NAME",
                "PGVAULT_AGENT__PG_BIN_DIR",
                "PGVAULT_AGENT__TOKEN_FILE",
                "PGVAULT_LOG__FORMAT",
                "PGVAULT_TELEMETRY__OTLP_ENDPOINT",
            ]
        );
        let vars = vec![("PGVAULT_AGENT__NAEM".to_string(), "dc1".to_string())];
        assert!(check_environment(&vars, &variables_read()).is_err());
    }
}
