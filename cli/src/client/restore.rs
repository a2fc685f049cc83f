//! `pgvault restore`: restores a recovery point as a new database.

use std::process::ExitCode;

use clap::Args;
use pgvault_proto::v1::RestoreAsDatabaseRequest;

use super::connect::{Api, Reply};
use super::{names, watch};

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    pgvault restore 0197c1e9 --vault prod --instance 0197c1d2 --target-database orders_restored --wait\n  \
    pgvault restore vaults/prod/backupInstances/0197c1d2/recoveryPoints/0197c1e9 \\\n      \
    --target-server db2 --secret db2-admin --target-database orders_copy")]
pub struct RestoreArgs {
    /// Recovery point id, or its full name "vaults/{v}/backupInstances/{i}/recoveryPoints/{p}".
    pub recovery_point: String,
    /// Vault of the recovery point (not needed with a full name).
    #[arg(long)]
    pub vault: Option<String>,
    /// Backup instance of the recovery point (not needed with a full name).
    #[arg(long)]
    pub instance: Option<String>,
    /// Name of the database to create; it must not exist yet.
    #[arg(long, value_name = "NAME")]
    pub target_database: String,
    /// Server to restore to (default: the instance's own server).
    #[arg(long, value_name = "SERVER")]
    pub target_server: Option<String>,
    /// Secret used to connect to the target (default: the instance's secret).
    #[arg(long)]
    pub secret: Option<String>,
    /// Follow the job until it ends; the exit code tells whether it succeeded.
    #[arg(long)]
    pub wait: bool,
}

/// The request for these arguments, with every name spelled out.
pub fn request(args: &RestoreArgs) -> anyhow::Result<RestoreAsDatabaseRequest> {
    Ok(RestoreAsDatabaseRequest {
        recovery_point: names::recovery_point(
            args.vault.as_deref(),
            args.instance.as_deref(),
            &args.recovery_point,
        )?,
        target_server: args
            .target_server
            .as_deref()
            .map(names::server)
            .transpose()?
            .unwrap_or_default(),
        target_database: args.target_database.clone(),
        secret: args
            .secret
            .as_deref()
            .map(names::secret)
            .transpose()?
            .unwrap_or_default(),
    })
}

pub async fn run(api: &Api, args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let request = request(&args)?;
    let job = api
        .restores()
        .restore_as_database(request)
        .await
        .reply(api)?;
    watch::started(api, job, args.wait).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(recovery_point: &str) -> RestoreArgs {
        RestoreArgs {
            recovery_point: recovery_point.into(),
            vault: Some("prod".into()),
            instance: Some("inst".into()),
            target_database: "orders_restored".into(),
            target_server: Some("db2".into()),
            secret: None,
            wait: false,
        }
    }

    #[test]
    fn request_from_short_ids() {
        let request = request(&args("rp1")).expect("valid");
        assert_eq!(
            request.recovery_point,
            "vaults/prod/backupInstances/inst/recoveryPoints/rp1"
        );
        assert_eq!(request.target_server, "servers/db2");
        assert_eq!(request.target_database, "orders_restored");
        assert_eq!(request.secret, "");
    }

    #[test]
    fn request_from_full_name_without_flags() {
        let full = "vaults/prod/backupInstances/inst/recoveryPoints/rp1";
        let request = request(&RestoreArgs {
            vault: None,
            instance: None,
            target_server: None,
            ..args(full)
        })
        .expect("valid");
        assert_eq!(request.recovery_point, full);
        assert_eq!(request.target_server, "");
    }
}
