//! `pgvault restore server POINT --target-server S`: every database of a
//! whole server's point set (the scheduled run POINT belongs to) onto
//! another server, the globals first; one restore job per database.

use std::process::ExitCode;

use clap::Args;
use pgvault_proto::v1::RestoreServerRequest;

use super::connect::{Api, Reply};
use super::output::print_json;
use super::{json, names, watch};

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  \
    pgvault restore server 0197c1e9 --vault prod --instance 0197c1d2 --target-server db2 \\\n      \
    --exclude-database postgres --wait\n\n\
    POINT is any recovery point of a scheduled run of a server protected whole\n\
    (backup configure --all-databases); the run's points of every database are restored\n\
    under their own names, after the server's roles (never their passwords). Refused when\n\
    a database of the set exists on the target or the target runs an older PostgreSQL.")]
pub struct ServerArgs {
    /// Recovery point id, or its full name "vaults/{v}/backupInstances/{i}/recoveryPoints/{p}".
    pub recovery_point: String,
    /// Vault of the recovery point (not needed with a full name).
    #[arg(long)]
    pub vault: Option<String>,
    /// Backup instance of the recovery point (not needed with a full name).
    #[arg(long)]
    pub instance: Option<String>,
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
    /// Follow every job until it ends; the exit code tells whether all succeeded.
    #[arg(long)]
    pub wait: bool,
}

/// The request, with every name spelled out.
pub fn request(args: &ServerArgs) -> anyhow::Result<RestoreServerRequest> {
    Ok(RestoreServerRequest {
        recovery_point: names::recovery_point(
            args.vault.as_deref(),
            args.instance.as_deref(),
            &args.recovery_point,
        )?,
        target_server: names::server(&args.target_server)?,
        secret: args
            .secret
            .as_deref()
            .map(names::secret_ref)
            .transpose()?
            .unwrap_or_default(),
        exclude_databases: args.exclude_databases.clone(),
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
        print_json(&serde_json::json!({ "jobs": jobs }));
        return Ok(ExitCode::SUCCESS);
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
        let request = request(&ServerArgs {
            recovery_point: "p1".into(),
            vault: Some("prod".into()),
            instance: Some("i1".into()),
            target_server: "db2".into(),
            secret: None,
            exclude_databases: vec!["postgres".into()],
            wait: false,
        })
        .expect("request");
        assert_eq!(
            request.recovery_point,
            "vaults/prod/backupInstances/i1/recoveryPoints/p1"
        );
        assert_eq!(request.target_server, "servers/db2");
        assert_eq!(request.secret, "");
        assert_eq!(request.exclude_databases, ["postgres"]);
    }
}
