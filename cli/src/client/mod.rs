//! The client verbs of `pgvault` (`vault`, `policy`, `secret`, `server`,
//! `backup`, `recovery-point`, `restore`, `job`, `notification`, `token`, `role`, and the
//! admin verbs of `agent`): global options, the command tree, and the
//! dispatch from a parsed command to its gRPC calls.
//!
//! Every verb talks to the coordinator through [`connect::Api`], a shared
//! channel that attaches the bearer token to each call. Errors are printed
//! here, once, as one human line (never a `Debug` dump), and become exit code 1.

mod access;
pub mod agent;
mod backup;
mod configure;
mod connect;
mod dead_letters;
mod enum_names;
mod job;
mod job_details;
mod job_fanout;
mod job_time;
mod json;
mod names;
mod notification;
mod output;
mod paging;
mod policy;
mod policy_file;
mod protection;
mod recovery_point;
mod recovery_point_export;
mod restore;
mod restore_server;
mod secret;
mod server;
mod vault;
mod vault_key;
mod watch;
mod when;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use self::connect::{Api, ClientError};
pub use self::output::OutputFormat;

/// Where the `pgvault up` all-in-one mode writes the administrator's token.
const ADMIN_TOKEN_FILE: &str = ".pgvault/admin.token";

/// Options shared by every client verb.
#[derive(Clone, clap::Args)]
pub struct ClientOptions {
    /// Address of the pgvault coordinator's gRPC API.
    #[arg(
        long,
        global = true,
        env = "PGVAULT_ENDPOINT",
        default_value = "http://127.0.0.1:50051",
        value_name = "URL"
    )]
    pub endpoint: String,

    /// API token sent as "authorization: Bearer <token>". When absent,
    /// ./.pgvault/admin.token (written by "pgvault up") is used.
    #[arg(
        long,
        global = true,
        env = "PGVAULT_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,

    /// Output format: human-readable tables, or JSON with the API's field names.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    /// PEM certificate of the CA that signed the coordinator's TLS
    /// certificate, for https:// endpoints (default: the system's roots).
    #[arg(long, global = true, env = "PGVAULT_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<std::path::PathBuf>,
}

/// Hand-written so the token never reaches `Debug` output.
impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("output", &self.output)
            .field("ca_cert", &self.ca_cert)
            .finish()
    }
}

/// The client verbs, noun first.
#[derive(Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// Manage vaults: containers of protected databases and their recovery points.
    #[command(subcommand)]
    Vault(vault::VaultCommand),
    /// Manage backup policies: a weekly schedule plus retention rules.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Store credentials (connection strings, signing keys); values are write-only.
    #[command(subcommand)]
    Secret(secret::SecretCommand),
    /// Register and inspect PostgreSQL servers.
    #[command(subcommand)]
    Server(server::ServerCommand),
    /// Protect databases, inspect backup instances, take on-demand backups.
    #[command(subcommand)]
    Backup(backup::BackupCommand),
    /// List the recovery points of a backup instance.
    #[command(subcommand, name = "recovery-point")]
    RecoveryPoint(recovery_point::RecoveryPointCommand),
    /// Restore a recovery point as a new database or as a SQL file, whole or some schemas and tables.
    Restore(Box<restore::RestoreCommand>),
    /// List, inspect and follow jobs (backups, restores, validations).
    #[command(subcommand)]
    Job(job::JobCommand),
    /// Webhook channels told when jobs fail, slots are missed or jobs succeed,
    /// and their deliveries.
    #[command(subcommand)]
    Notification(notification::NotificationCommand),
    /// Create, list and revoke API tokens (Owner only).
    #[command(subcommand)]
    Token(access::TokenCommand),
    /// Assign, list and remove the roles of API tokens (Owner only).
    #[command(subcommand)]
    Role(access::RoleCommand),
}

/// Runs one client verb. Failures are printed to stderr as one human line and
/// returned as exit code 1; job-following verbs map the job's final state.
pub async fn run(options: &ClientOptions, command: ClientCommand) -> anyhow::Result<ExitCode> {
    match dispatch(options, command).await {
        Ok(code) => Ok(code),
        Err(error) => {
            eprintln!("error: {}", describe(&error));
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Runs `pgvault agent create|get|list|delete` like any client verb.
pub async fn run_agent_admin(
    options: &ClientOptions,
    command: agent::AgentAdminCommand,
) -> anyhow::Result<ExitCode> {
    let outcome = match api(options) {
        Ok(api) => agent::run(&api, command).await,
        Err(error) => Err(error),
    };
    outcome.or_else(|error| {
        eprintln!("error: {}", describe(&error));
        Ok(ExitCode::FAILURE)
    })
}

/// The API with the caller's token; the channel connects on the first call,
/// so local mistakes (bad names, unreadable rows files, empty secrets) are
/// reported before any round trip.
fn api(options: &ClientOptions) -> anyhow::Result<Api> {
    let token = resolve_token(options.token.as_deref(), Path::new(ADMIN_TOKEN_FILE))?;
    Ok(Api::with_ca_cert(
        &options.endpoint,
        &token,
        options.output,
        options.ca_cert.as_deref(),
    )?)
}

async fn dispatch(options: &ClientOptions, command: ClientCommand) -> anyhow::Result<ExitCode> {
    // The offline export needs neither a coordinator nor a token.
    if let ClientCommand::RecoveryPoint(recovery_point::RecoveryPointCommand::Export(args)) =
        command
    {
        return recovery_point_export::run(*args, options.output == OutputFormat::Json).await;
    }
    let api = api(options)?;
    match command {
        ClientCommand::Vault(cmd) => vault::run(&api, cmd).await,
        ClientCommand::Policy(cmd) => policy::run(&api, cmd).await,
        ClientCommand::Secret(cmd) => secret::run(&api, cmd).await,
        ClientCommand::Server(cmd) => server::run(&api, cmd).await,
        ClientCommand::Backup(cmd) => backup::run(&api, cmd).await,
        ClientCommand::RecoveryPoint(cmd) => recovery_point::run(&api, cmd).await,
        ClientCommand::Restore(args) => restore::run(&api, *args).await,
        ClientCommand::Job(cmd) => job::run(&api, cmd).await,
        ClientCommand::Notification(cmd) => notification::run(&api, cmd).await,
        ClientCommand::Token(cmd) => access::run_token(&api, cmd).await,
        ClientCommand::Role(cmd) => access::run_role(&api, cmd).await,
    }
}

/// The token from `--token`/`PGVAULT_TOKEN`, else from the admin token file.
fn resolve_token(given: Option<&str>, token_file: &Path) -> anyhow::Result<String> {
    if let Some(token) = given.map(str::trim).filter(|t| !t.is_empty()) {
        return Ok(token.to_owned());
    }
    if token_file.exists() {
        let token = std::fs::read_to_string(token_file)
            .with_context(|| format!("read token file {}", token_file.display()))?;
        let token = token.trim();
        if !token.is_empty() {
            return Ok(token.to_owned());
        }
    }
    Err(ClientError::NoToken.into())
}

/// One line for the user: our own errors as they display, anyhow chains joined.
fn describe(error: &anyhow::Error) -> String {
    match error.downcast_ref::<ClientError>() {
        Some(client_error) => client_error.to_string(),
        None => format!("{error:#}"),
    }
}

#[cfg(test)]
mod fake_server;
#[cfg(test)]
mod live_coordinator;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;
