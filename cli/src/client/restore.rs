//! `pgvault restore database|files|server`: restores a recovery point, or
//! some of its schemas and tables, as a new database or as one plain SQL
//! file in a local directory or datastore; `server` (in `restore_server`)
//! restores a whole server's point set. `pgvault restore POINT --target-database
//! NAME` (no subcommand) is kept as the short form of `restore database`.
//! `--instance VAULT/NAME --latest` instead of a POINT restores the
//! instance's newest restorable point (chosen by the coordinator).
//! `--from-copy DATASTORE_URL` reads the point's copy in that datastore.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use pgvault_proto::v1::{RestoreAsDatabaseRequest, RestoreAsFilesRequest};

use super::connect::{Api, Reply};
use super::{names, watch};

/// `pgvault restore`: a subcommand, or the arguments of `restore database`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
#[command(after_help = "Examples:\n  \
    pgvault restore database --instance prod/db1-orders --latest --target-database orders_restored --wait\n  \
    pgvault restore files --instance prod/db1-orders --latest --to ./restored --wait\n  \
    pgvault restore database 0197c1e9 --vault prod --instance 0197c1d2 --target-database orders_restored --wait\n  \
    pgvault restore database 0197c1e9 --vault prod --instance 0197c1d2 --target-database sales_only \\\n      \
    --schema sales --table public.customers\n  \
    pgvault restore files 0197c1e9 --vault prod --instance 0197c1d2 --to ./restored --wait\n  \
    pgvault restore files vaults/prod/backupInstances/0197c1d2/recoveryPoints/0197c1e9 \\\n      \
    --to s3://exports/orders?region=eu-west-1 --name orders.sql --table sales.orders")]
pub struct RestoreCommand {
    #[command(subcommand)]
    pub command: Option<RestoreSubcommand>,
    /// `pgvault restore POINT --target-database NAME`: same as `restore database`.
    #[command(flatten)]
    pub database: Option<DatabaseArgs>,
}

#[derive(Debug, Subcommand)]
pub enum RestoreSubcommand {
    /// Restore a recovery point (or some of its schemas and tables) as a new database.
    Database(DatabaseArgs),
    /// Write a recovery point (or some of its schemas and tables) as one plain
    /// SQL file that `psql` loads into an empty database.
    Files(FilesArgs),
    /// Restore every database of a whole server's point set (one scheduled
    /// run of a server protected with --all-databases) onto another server,
    /// its roles first.
    Server(super::restore_server::ServerArgs),
}

/// Which recovery point, as an id with `--vault`/`--instance`, a full
/// name, or `--latest` of `--instance`.
#[derive(Debug, Args)]
pub struct PointArgs {
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
    /// Restore the newest restorable recovery point of --instance.
    #[arg(long, conflicts_with = "recovery_point", requires = "instance")]
    pub latest: bool,
}

/// Selective restore; none given restores everything.
#[derive(Debug, Args)]
pub struct SelectionArgs {
    /// Restore this schema (repeatable); with no --schema and no --table, everything.
    #[arg(long = "schema", value_name = "SCHEMA")]
    pub schemas: Vec<String>,
    /// Restore this table, written schema.table (repeatable).
    #[arg(long = "table", value_name = "SCHEMA.TABLE")]
    pub tables: Vec<String>,
}

/// Arguments of `restore database`. No nested `flatten` here: clap cannot
/// tell an optionally flattened struct apart from a nested one (clap#4697).
#[derive(Debug, Args)]
pub struct DatabaseArgs {
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
    /// Restore the newest restorable recovery point of --instance.
    #[arg(long, conflicts_with = "recovery_point", requires = "instance")]
    pub latest: bool,
    /// Name of the database to create; it must not exist yet.
    #[arg(long, value_name = "NAME")]
    pub target_database: String,
    /// Server to restore to (default: the instance's own server).
    #[arg(long, value_name = "SERVER")]
    pub target_server: Option<String>,
    /// Secret used to connect to the target (default: the instance's secret).
    #[arg(long)]
    pub secret: Option<String>,
    /// Restore this schema (repeatable); with no --schema and no --table, everything.
    #[arg(long = "schema", value_name = "SCHEMA")]
    pub schemas: Vec<String>,
    /// Restore this table, written schema.table (repeatable).
    #[arg(long = "table", value_name = "SCHEMA.TABLE")]
    pub tables: Vec<String>,
    /// Archive points only: days the point is rehydrated into the standard
    /// datastore before the restore runs, 10-30 (default 15).
    #[arg(long, value_name = "DAYS")]
    pub rehydrate_days: Option<u32>,
    /// Read the point's copy in this datastore (a URL that `pgvault
    /// recovery-point get` lists under COPIES) instead of the point itself.
    #[arg(long, value_name = "DATASTORE_URL")]
    pub from_copy: Option<String>,
    /// Fan the loads out across up to N workers (2-64), whatever the
    /// point's size; without it, only points above the workers'
    /// worker.fanout_threshold_mb are fanned out.
    #[arg(long, value_name = "N")]
    pub workers: Option<u32>,
    /// Follow the job until it ends; the exit code tells whether it succeeded.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Args)]
pub struct FilesArgs {
    #[command(flatten)]
    pub point: PointArgs,
    /// Destination directory: a path on the worker's machine (the local
    /// machine under `pgvault up`) or a datastore URL (file://, s3://, az://).
    #[arg(long, value_name = "DIR_OR_URL")]
    pub to: String,
    /// File name in that directory (default: <database>-<snapshot time>.sql).
    #[arg(long, value_name = "FILE")]
    pub name: Option<String>,
    #[command(flatten)]
    pub selection: SelectionArgs,
    /// Archive points only: days the point is rehydrated into the standard
    /// datastore before the restore runs, 10-30 (default 15).
    #[arg(long, value_name = "DAYS")]
    pub rehydrate_days: Option<u32>,
    /// Read the point's copy in this datastore (a URL that `pgvault
    /// recovery-point get` lists under COPIES) instead of the point itself.
    #[arg(long, value_name = "DATASTORE_URL")]
    pub from_copy: Option<String>,
    /// Follow the job until it ends; the exit code tells whether it succeeded.
    #[arg(long)]
    pub wait: bool,
}

/// `(recovery_point, latest_of)` of a request: the named point, or with
/// `--latest` the instance whose newest point the coordinator picks.
pub(super) fn chosen_point(
    vault: Option<&str>,
    instance: Option<&str>,
    recovery_point: Option<&str>,
    latest: bool,
) -> anyhow::Result<(String, String)> {
    match (recovery_point, latest) {
        (Some(_), true) => {
            anyhow::bail!("give either a recovery point or --latest, not both")
        }
        (Some(point), false) => Ok((
            names::recovery_point(vault, instance, point)?,
            String::new(),
        )),
        (None, true) => {
            let instance = instance.context(
                "--latest needs the instance: --instance VAULT/NAME (pgvault backup list shows the names)",
            )?;
            Ok((String::new(), names::instance(vault, instance)?))
        }
        (None, false) => anyhow::bail!(
            "say which recovery point to restore: its id (with --instance VAULT/NAME), or --instance VAULT/NAME --latest"
        ),
    }
}

fn point_name(point: &PointArgs) -> anyhow::Result<(String, String)> {
    chosen_point(
        point.vault.as_deref(),
        point.instance.as_deref(),
        point.recovery_point.as_deref(),
        point.latest,
    )
}

/// The request for `restore database`, with every name spelled out.
pub fn database_request(args: &DatabaseArgs) -> anyhow::Result<RestoreAsDatabaseRequest> {
    let (recovery_point, latest_of) = chosen_point(
        args.vault.as_deref(),
        args.instance.as_deref(),
        args.recovery_point.as_deref(),
        args.latest,
    )?;
    Ok(RestoreAsDatabaseRequest {
        recovery_point,
        latest_of,
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
            .map(names::secret_ref)
            .transpose()?
            .unwrap_or_default(),
        schemas: args.schemas.clone(),
        tables: args.tables.clone(),
        rehydrate_days: args.rehydrate_days.unwrap_or(0),
        copy_datastore: args.from_copy.clone().unwrap_or_default(),
        workers: args.workers.unwrap_or(0),
    })
}

/// The request for `restore files`; a local path becomes a file:// URL.
pub fn files_request(args: &FilesArgs, cwd: &Path) -> anyhow::Result<RestoreAsFilesRequest> {
    let (recovery_point, latest_of) = point_name(&args.point)?;
    Ok(RestoreAsFilesRequest {
        recovery_point,
        latest_of,
        target_url: destination_url(&args.to, cwd)?,
        file_name: args.name.clone().unwrap_or_default(),
        schemas: args.selection.schemas.clone(),
        tables: args.selection.tables.clone(),
        rehydrate_days: args.rehydrate_days.unwrap_or(0),
        copy_datastore: args.from_copy.clone().unwrap_or_default(),
    })
}

/// `to` as a datastore URL: URLs pass through; a local path (absolute, or
/// relative to `cwd`) becomes `file:///absolute/path`.
pub fn destination_url(to: &str, cwd: &Path) -> anyhow::Result<String> {
    let to = to.trim();
    if to.is_empty() {
        anyhow::bail!("--to needs a directory or a datastore URL (file://, s3://, az://)");
    }
    if to.contains("://") {
        return Ok(to.to_string());
    }
    let path = cwd.join(to);
    let mut absolute = std::path::PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                absolute.pop();
            }
            other => absolute.push(other),
        }
    }
    let text = absolute
        .to_str()
        .with_context(|| format!("--to {to}: the path is not valid UTF-8"))?;
    let mut url = String::from("file://");
    for c in text.chars() {
        match c {
            '%' => url.push_str("%25"),
            '?' => url.push_str("%3F"),
            '#' => url.push_str("%23"),
            ' ' => url.push_str("%20"),
            c => url.push(c),
        }
    }
    Ok(url)
}

pub async fn run(api: &Api, command: RestoreCommand) -> anyhow::Result<ExitCode> {
    match (command.command, command.database) {
        (Some(RestoreSubcommand::Files(args)), _) => {
            let cwd = std::env::current_dir().context("read the current directory")?;
            let request = files_request(&args, &cwd)?;
            let job = api.restores().restore_as_files(request).await.reply(api)?;
            watch::started(api, job, args.wait).await
        }
        (Some(RestoreSubcommand::Server(args)), _) => super::restore_server::run(api, args).await,
        (Some(RestoreSubcommand::Database(args)), _) | (None, Some(args)) => {
            let request = database_request(&args)?;
            let job = api
                .restores()
                .restore_as_database(request)
                .await
                .reply(api)?;
            watch::started(api, job, args.wait).await
        }
        (None, None) => anyhow::bail!(
            "say what to restore: pgvault restore database POINT --target-database NAME, \
             or pgvault restore files POINT --to DIR"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(recovery_point: &str) -> PointArgs {
        PointArgs {
            recovery_point: Some(recovery_point.into()),
            vault: Some("prod".into()),
            instance: Some("inst".into()),
            latest: false,
        }
    }

    fn args(recovery_point: &str) -> DatabaseArgs {
        DatabaseArgs {
            recovery_point: Some(recovery_point.into()),
            vault: Some("prod".into()),
            instance: Some("inst".into()),
            latest: false,
            target_database: "orders_restored".into(),
            target_server: Some("db2".into()),
            secret: None,
            schemas: Vec::new(),
            tables: Vec::new(),
            rehydrate_days: None,
            from_copy: None,
            workers: None,
            wait: false,
        }
    }

    #[test]
    fn workers_ask_the_restore_to_fan_out() {
        assert_eq!(database_request(&args("rp1")).expect("valid").workers, 0);
        let fanned = database_request(&DatabaseArgs {
            workers: Some(3),
            ..args("rp1")
        })
        .expect("valid");
        assert_eq!(fanned.workers, 3);
    }

    #[test]
    fn request_from_short_ids() {
        let request = database_request(&args("rp1")).expect("valid");
        assert_eq!(
            request.recovery_point,
            "vaults/prod/backupInstances/inst/recoveryPoints/rp1"
        );
        assert_eq!(request.target_server, "servers/db2");
        assert_eq!(request.target_database, "orders_restored");
        assert_eq!(request.secret, "");
        assert!(request.schemas.is_empty() && request.tables.is_empty());
    }

    #[test]
    fn request_from_full_name_without_flags() {
        let full = "vaults/prod/backupInstances/inst/recoveryPoints/rp1";
        let request = database_request(&DatabaseArgs {
            vault: None,
            instance: None,
            target_server: None,
            ..args(full)
        })
        .expect("valid");
        assert_eq!(request.recovery_point, full);
        assert_eq!(request.target_server, "");
    }

    #[test]
    fn latest_asks_for_the_newest_point_of_the_instance() {
        let request = database_request(&DatabaseArgs {
            recovery_point: None,
            vault: None,
            instance: Some("prod/db1-orders".into()),
            latest: true,
            ..args("unused")
        })
        .expect("valid");
        assert_eq!(request.recovery_point, "");
        assert_eq!(request.latest_of, "vaults/prod/backupInstances/db1-orders");
        let files = files_request(
            &FilesArgs {
                point: PointArgs {
                    recovery_point: None,
                    vault: Some("prod".into()),
                    instance: Some("db1-orders".into()),
                    latest: true,
                },
                to: "/tmp/out".into(),
                name: None,
                selection: SelectionArgs {
                    schemas: Vec::new(),
                    tables: Vec::new(),
                },
                rehydrate_days: None,
                from_copy: None,
                wait: false,
            },
            Path::new("/"),
        )
        .expect("valid");
        assert_eq!(files.latest_of, "vaults/prod/backupInstances/db1-orders");
        assert_eq!(files.recovery_point, "");
    }

    #[test]
    fn a_point_and_latest_are_exclusive_and_one_is_needed() {
        let both = database_request(&DatabaseArgs {
            latest: true,
            ..args("rp1")
        })
        .unwrap_err()
        .to_string();
        assert!(both.contains("not both"), "{both}");
        let neither = database_request(&DatabaseArgs {
            recovery_point: None,
            ..args("unused")
        })
        .unwrap_err()
        .to_string();
        assert!(neither.contains("--latest"), "{neither}");
        let no_instance = database_request(&DatabaseArgs {
            recovery_point: None,
            instance: None,
            latest: true,
            ..args("unused")
        })
        .unwrap_err()
        .to_string();
        assert!(
            no_instance.contains("--instance VAULT/NAME"),
            "{no_instance}"
        );
    }

    #[test]
    fn clap_refuses_a_point_with_latest() {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct Cli {
            #[command(subcommand)]
            restore: RestoreSubcommand,
        }
        let parsed = Cli::try_parse_from([
            "pgvault",
            "database",
            "rp1",
            "--instance",
            "prod/db1",
            "--latest",
            "--target-database",
            "x",
        ]);
        assert!(parsed.is_err());
        let parsed = Cli::try_parse_from([
            "pgvault",
            "database",
            "--instance",
            "prod/db1",
            "--latest",
            "--target-database",
            "x",
        ])
        .expect("parses");
        let RestoreSubcommand::Database(args) = parsed.restore else {
            panic!("database");
        };
        assert!(args.latest && args.recovery_point.is_none());
        assert!(Cli::try_parse_from(["pgvault", "database", "--target-database", "x"]).is_err());
    }

    #[test]
    fn files_request_carries_destination_name_and_selection() {
        let request = files_request(
            &FilesArgs {
                point: point("rp1"),
                to: "s3://exports/x?region=eu-west-1".into(),
                name: Some("orders.sql".into()),
                selection: SelectionArgs {
                    schemas: vec!["sales".into()],
                    tables: vec!["public.customers".into()],
                },
                rehydrate_days: Some(20),
                from_copy: Some("az://copies/pgvault".into()),
                wait: false,
            },
            Path::new("/home/me"),
        )
        .expect("valid");
        assert_eq!(request.target_url, "s3://exports/x?region=eu-west-1");
        assert_eq!(request.file_name, "orders.sql");
        assert_eq!(request.copy_datastore, "az://copies/pgvault");
        assert_eq!(request.schemas, vec!["sales"]);
        assert_eq!(request.tables, vec!["public.customers"]);
        assert_eq!(request.rehydrate_days, 20);
    }

    #[test]
    fn local_paths_become_absolute_file_urls() {
        let cwd = Path::new("/home/me/work");
        assert_eq!(
            destination_url("./out", cwd).expect("ok"),
            "file:///home/me/work/out"
        );
        assert_eq!(
            destination_url("../out", cwd).expect("ok"),
            "file:///home/me/out"
        );
        assert_eq!(
            destination_url("/tmp/out", cwd).expect("ok"),
            "file:///tmp/out"
        );
        assert_eq!(
            destination_url("file:///srv/dumps", cwd).expect("ok"),
            "file:///srv/dumps"
        );
        assert!(destination_url(" ", cwd).is_err());
    }

    #[test]
    fn awkward_local_paths_survive_the_url() {
        let url = destination_url("/tmp/my dir #1?%", Path::new("/")).expect("ok");
        let location = pgvault_datastore::Location::parse(&url).expect("parses");
        assert_eq!(
            location,
            pgvault_datastore::Location::Local {
                dir: "/tmp/my dir #1?%".into()
            }
        );
    }
}
