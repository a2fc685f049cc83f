//! `pgvault restore server POINT --target-server S` (or `--instance
//! VAULT/NAME --latest`): every database of a whole server's point set
//! (the scheduled run POINT belongs to) onto another server, the globals
//! first; one restore job per database. Databases of the run left out
//! for having no point (`--allow-partial`) are named on stderr.

use std::process::ExitCode;

use clap::Args;
use pgvault_proto::v1::RestoreServerRequest;

use super::connect::{Api, Reply};
use super::output::print_json;
use super::{json, names, watch};

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    pgvault restore server --instance prod/db1-orders --latest --target-server db2 \\\n      \
    --exclude-database postgres --wait\n  \
    pgvault restore server 0197c1e9 --instance prod/db1-orders --target-server db2 --no-tablespaces\n\n\
    POINT is any recovery point of a scheduled run of a server protected whole\n\
    (backup configure --all-databases); --latest takes the newest such point of --instance.\n\
    The run's points of every database are restored under their own names, after the\n\
    server's roles (passwords only when the protection captured them, and only onto roles\n\
    the target lacks). Refused when a database of the set exists on the target, when the\n\
    target runs an older PostgreSQL, or when a database of the run has no point in it (its\n\
    backup failed): leave those out by name, or accept the rest with --allow-partial.")]
pub struct ServerArgs {
    /// Recovery point id, or its full name "vaults/{v}/backupInstances/{i}/recoveryPoints/{p}".
    #[arg(required_unless_present = "latest")]
    pub recovery_point: Option<String>,
    /// Vault of the recovery point (not needed with a full name or VAULT/NAME).
    #[arg(long)]
    pub vault: Option<String>,
    /// Backup instance of the recovery point: VAULT/NAME (its short name, as
    /// `pgvault backup list` shows), or its id with --vault.
    #[arg(long)]
    pub instance: Option<String>,
    /// Restore the set of the newest point of a scheduled run of --instance.
    #[arg(long, conflicts_with = "recovery_point", requires = "instance")]
    pub latest: bool,
    /// Server to restore onto.
    #[arg(long, value_name = "SERVER")]
    pub target_server: String,
    /// Secret used to connect to the target (default: the instance's secret).
    #[arg(long)]
    pub secret: Option<String>,
    /// Leave this database of the set out (repeatable), e.g. postgres, which
    /// every new server already has.
    #[arg(long = "exclude-database", value_name = "DATABASE")]
    pub exclude_databases: Vec<String>,
    /// Restore the set even when databases of the run have no recovery point
    /// in it (their backup failed): they are left out and named.
    #[arg(long)]
    pub allow_partial: bool,
    /// Leave the tablespace definitions out of the globals (for a target
    /// without their directories); objects go to the default tablespace.
    #[arg(long)]
    pub no_tablespaces: bool,
    /// Follow every job until it ends; the exit code tells whether all succeeded.
    #[arg(long)]
    pub wait: bool,
}

/// The request, with every name spelled out.
pub fn request(args: &ServerArgs) -> anyhow::Result<RestoreServerRequest> {
    let (recovery_point, latest_of) = super::restore::chosen_point(
        args.vault.as_deref(),
        args.instance.as_deref(),
        args.recovery_point.as_deref(),
        args.latest,
    )?;
    Ok(RestoreServerRequest {
        recovery_point,
        latest_of,
        target_server: names::server(&args.target_server)?,
        secret: args
            .secret
            .as_deref()
            .map(names::secret_ref)
            .transpose()?
            .unwrap_or_default(),
        exclude_databases: args.exclude_databases.clone(),
        allow_partial: args.allow_partial,
        no_tablespaces: args.no_tablespaces,
    })
}

pub async fn run(api: &Api, args: ServerArgs) -> anyhow::Result<ExitCode> {
    let response = api
        .restores()
        .restore_server(request(&args)?)
        .await
        .reply(api)?;
    if api.json() && !args.wait {
        let jobs: Vec<_> = response.jobs.iter().map(json::job).collect();
        print_json(&serde_json::json!({ "jobs": jobs, "left_out": response.left_out }));
        return Ok(ExitCode::SUCCESS);
    }
    for line in &response.left_out {
        eprintln!("left out (no recovery point in this run): {line}");
    }
    if !args.wait {
        for job in &response.jobs {
            println!("{}", job.name);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut all_succeeded = true;
    for job in response.jobs {
        if !api.json() {
            println!("following {}", job.name);
        }
        if watch::follow(api, job.name).await? != ExitCode::SUCCESS {
            all_succeeded = false;
        }
    }
    Ok(if all_succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_spells_out_the_point_and_the_target() {
        let args = || ServerArgs {
            recovery_point: Some("p1".into()),
            vault: Some("prod".into()),
            instance: Some("i1".into()),
            latest: false,
            target_server: "db2".into(),
            secret: None,
            exclude_databases: vec!["postgres".into()],
            allow_partial: false,
            no_tablespaces: false,
            wait: false,
        };
        let request = request(&args()).expect("request");
        assert_eq!(
            request.recovery_point,
            "vaults/prod/backupInstances/i1/recoveryPoints/p1"
        );
        assert_eq!(request.latest_of, "");
        assert_eq!(request.target_server, "servers/db2");
        assert_eq!(request.secret, "");
        assert_eq!(request.exclude_databases, ["postgres"]);
        assert!(!request.allow_partial && !request.no_tablespaces);

        let latest = super::request(&ServerArgs {
            recovery_point: None,
            vault: None,
            instance: Some("prod/db1-orders".into()),
            latest: true,
            allow_partial: true,
            no_tablespaces: true,
            ..args()
        })
        .expect("latest");
        assert_eq!(latest.recovery_point, "");
        assert_eq!(latest.latest_of, "vaults/prod/backupInstances/db1-orders");
        assert!(latest.allow_partial && latest.no_tablespaces);
    }
}
