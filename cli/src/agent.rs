//! `pgvault agent`: the admin verbs (`create`, `get`, `list`, `delete`;
//! `client::agent`) and `pgvault agent run`, an agent in this process with
//! the flags of `pgvault-agent` plus the `[agent]` settings of
//! `pgvault.toml` and `PGVAULT_AGENT__*` variables.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use pgvault_agent::{AgentArgs, AgentOptions, AgentSettings, TOKEN_VARIABLE};
use pgvault_telemetry::ServiceName;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::serve::Overrides;
use crate::{client, signals, telemetry};

#[derive(clap::Subcommand)]
pub enum AgentCommand {
    /// Run an agent in this process, as pgvault-agent does (same flags),
    /// next to servers no worker can reach; it dials out to the coordinator.
    #[command(after_help = "Example:\n  \
        PGVAULT_AGENT_TOKEN=<token> pgvault agent run --coordinator https://vault.example:50051 --name dc1 --ca-cert ca.pem\n\n\
        The token is read from PGVAULT_AGENT_TOKEN, else agent.token or --token-file (agent.token_file),\n\
        else --token / PGVAULT_TOKEN. The coordinator's CA certificate is agent.ca_cert, else --ca-cert.\n\
        Settings come from the [agent] section of pgvault.toml and PGVAULT_AGENT__<KEY> variables;\n\
        flags override them. On SIGTERM the agent takes no more tasks and releases the running ones.")]
    Run(AgentArgs),
    #[command(flatten)]
    Admin(client::agent::AgentAdminCommand),
}

pub async fn run(
    config_file: Option<&Path>,
    client: &client::ClientOptions,
    command: AgentCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        AgentCommand::Admin(command) => client::run_agent_admin(client, command).await,
        AgentCommand::Run(args) => run_agent(config_file, client, args)
            .await
            .map(|()| ExitCode::SUCCESS),
    }
}

async fn run_agent(
    config_file: Option<&Path>,
    client: &client::ClientOptions,
    args: AgentArgs,
) -> anyhow::Result<()> {
    let mut overrides = Overrides::default();
    overrides.set("log", "format", args.log_format.clone().map(Value::from));
    let mut settings = Settings::load(config_file, overrides.into_value())?;
    let traces = telemetry::init(&settings, ServiceName::Agent)?;
    args.apply(&mut settings.agent);
    let environment_token = std::env::var(TOKEN_VARIABLE).ok();
    let agent = with_client_fallbacks(settings.agent, environment_token, client);
    let options = AgentOptions::from_settings(&agent)?;
    eprintln!(
        "pgvault agent {} started; coordinator {}",
        options.name, options.coordinator
    );
    let shutdown = CancellationToken::new();
    let mut agent = tokio::spawn(pgvault_agent::run(options, shutdown.clone()));
    let ended = tokio::select! {
        ended = &mut agent => ended,
        _ = signals::shutdown_requested() => {
            shutdown.cancel();
            agent.await
        }
    };
    traces.shutdown().await;
    ended.context("the agent ended abnormally")??;
    Ok(())
}

/// The token from `PGVAULT_AGENT_TOKEN`, else `agent.token` or
/// `agent.token_file`, else the global `--token` (`PGVAULT_TOKEN`); the
/// coordinator's CA from `agent.ca_cert`, else the global `--ca-cert`.
fn with_client_fallbacks(
    mut agent: AgentSettings,
    environment_token: Option<String>,
    client: &client::ClientOptions,
) -> AgentSettings {
    match environment_token {
        Some(token) if !token.trim().is_empty() => agent.token = token,
        _ if agent.token.is_empty() && agent.token_file.as_os_str().is_empty() => {
            agent.token = client.token.clone().unwrap_or_default();
        }
        _ => {}
    }
    if agent.ca_cert.as_os_str().is_empty()
        && let Some(ca_cert) = &client.ca_cert
    {
        agent.ca_cert = ca_cert.clone();
    }
    agent
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use clap::{CommandFactory, Parser};

    use super::*;
    use crate::client::agent::AgentAdminCommand;

    /// The shape `pgvault`'s own command line gives `agent`.
    #[derive(Parser)]
    #[command(name = "pgvault")]
    struct TestCli {
        #[command(flatten)]
        client: client::ClientOptions,
        #[command(subcommand)]
        command: Top,
    }

    #[derive(clap::Subcommand)]
    enum Top {
        #[command(subcommand)]
        Agent(AgentCommand),
    }

    fn parse(args: &[&str]) -> TestCli {
        TestCli::try_parse_from(std::iter::once("pgvault").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    fn agent(command: TestCli) -> AgentCommand {
        let Top::Agent(command) = command.command;
        command
    }

    #[test]
    fn agent_run_takes_the_flags_of_pgvault_agent() {
        TestCli::command().debug_assert();
        let cli = parse(&[
            "agent",
            "run",
            "--coordinator",
            "https://vault.example:50051",
            "--name",
            "dc1",
            "--token",
            "t0ken",
            "--token-file",
            "/etc/agent.token",
            "--ca-cert",
            "/etc/ca.pem",
            "--concurrency",
            "2",
            "--connections",
            "4",
            "--pg-bin-dir",
            "/usr/lib/postgresql/17/bin",
            "--log-format",
            "json",
        ]);
        assert_eq!(cli.client.token.as_deref(), Some("t0ken"));
        assert_eq!(cli.client.ca_cert, Some(PathBuf::from("/etc/ca.pem")));
        let AgentCommand::Run(args) = agent(cli) else {
            panic!("not run");
        };
        assert_eq!(
            args.coordinator.as_deref(),
            Some("https://vault.example:50051")
        );
        assert_eq!(args.name.as_deref(), Some("dc1"));
        assert_eq!(args.token_file, Some(PathBuf::from("/etc/agent.token")));
        assert_eq!((args.concurrency, args.connections), (Some(2), Some(4)));
        assert_eq!(
            args.pg_bin_dir,
            vec![PathBuf::from("/usr/lib/postgresql/17/bin")]
        );
        assert_eq!(args.log_format.as_deref(), Some("json"));
    }

    #[test]
    fn the_admin_verbs_parse_as_users_type_them() {
        assert!(matches!(
            agent(parse(&["agent", "create", "dc1", "--region", "eu-west"])),
            AgentCommand::Admin(AgentAdminCommand::Create { name, region })
                if name == "dc1" && region == "eu-west"
        ));
        assert!(matches!(
            agent(parse(&["agent", "list", "--output", "json"])),
            AgentCommand::Admin(AgentAdminCommand::List)
        ));
        assert!(matches!(
            agent(parse(&["agent", "get", "agents/dc1"])),
            AgentCommand::Admin(AgentAdminCommand::Get { .. })
        ));
        assert!(matches!(
            agent(parse(&["agent", "delete", "dc1"])),
            AgentCommand::Admin(AgentAdminCommand::Delete { .. })
        ));
    }

    fn client(token: Option<&str>, ca_cert: Option<&str>) -> client::ClientOptions {
        let mut cli = parse(&["agent", "list"]).client;
        cli.token = token.map(str::to_owned);
        cli.ca_cert = ca_cert.map(PathBuf::from);
        cli
    }

    #[test]
    fn the_agent_token_wins_over_the_global_one_which_is_the_last_resort() {
        let settings = AgentSettings::default();
        let from_env = with_client_fallbacks(
            settings.clone(),
            Some("agent-token".into()),
            &client(Some("admin-token"), None),
        );
        assert_eq!(from_env.token, "agent-token");
        let file = AgentSettings {
            token_file: PathBuf::from("/etc/agent.token"),
            ..settings.clone()
        };
        let from_file = with_client_fallbacks(file, None, &client(Some("admin-token"), None));
        assert_eq!(from_file.token, "", "the file is read later, not replaced");
        let from_flag =
            with_client_fallbacks(settings, None, &client(Some("flag-token"), Some("/ca.pem")));
        assert_eq!(from_flag.token, "flag-token");
        assert_eq!(from_flag.ca_cert, PathBuf::from("/ca.pem"));
    }
}
