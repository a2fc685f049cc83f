//! Tests of the command tree: argument parsing as users type it, `--help`
//! for every subcommand, and token resolution.

use std::path::Path;

use clap::{CommandFactory, Parser};

use super::backup::{BackupCommand, RuleArg};
use super::job::{JobCommand, OperationArg, StateArg};
use super::policy::PolicyCommand;
use super::restore::RestoreSubcommand;
use super::secret::SecretCommand;
use super::vault::VaultCommand;
use super::*;

/// The shape the lead's `Cli` gives the client verbs.
#[derive(Debug, Parser)]
#[command(name = "pgvault")]
pub(super) struct TestCli {
    #[command(flatten)]
    pub(super) options: ClientOptions,
    #[command(subcommand)]
    pub(super) command: ClientCommand,
}

pub(super) fn parse(args: &[&str]) -> Result<TestCli, clap::Error> {
    TestCli::try_parse_from(std::iter::once("pgvault").chain(args.iter().copied()))
}

#[test]
fn command_tree_is_consistent() {
    TestCli::command().debug_assert();
}

#[test]
fn global_options_work_after_the_verb() {
    let cli = parse(&[
        "vault",
        "list",
        "--output",
        "json",
        "--endpoint",
        "http://10.0.0.1:50051",
        "--token",
        "t",
    ])
    .expect("parses");
    assert_eq!(cli.options.output, OutputFormat::Json);
    assert_eq!(cli.options.endpoint, "http://10.0.0.1:50051");
    assert_eq!(cli.options.token.as_deref(), Some("t"));
    assert!(matches!(
        cli.command,
        ClientCommand::Vault(VaultCommand::List)
    ));
    let debug = format!("{:?}", cli.options);
    assert!(
        !debug.contains("\"t\"") && debug.contains("<redacted>"),
        "{debug}"
    );
}

#[test]
fn vault_create_takes_its_flags() {
    let cli = parse(&[
        "vault",
        "create",
        "prod",
        "--region",
        "eu",
        "--datastore",
        "file:///srv/b",
        "--description",
        "d",
    ])
    .expect("parses");
    match cli.command {
        ClientCommand::Vault(VaultCommand::Create {
            name,
            region,
            datastore,
            archive_datastore,
            description,
            soft_delete_days,
            encryption,
        }) => {
            assert_eq!(soft_delete_days, None, "the server's default window");
            assert_eq!(encryption, None, "the server's default: encrypted");
            assert_eq!(
                (name.as_str(), region.as_str(), datastore.as_str()),
                ("prod", "eu", "file:///srv/b")
            );
            assert_eq!(archive_datastore, None);
            assert_eq!(description.as_deref(), Some("d"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        parse(&["vault", "create", "prod", "--region", "eu"]).is_err(),
        "--datastore is required"
    );
}

#[test]
fn vault_create_takes_an_encryption_and_refuses_unknown_ones() {
    let args = |encryption: &str| {
        parse(&[
            "vault",
            "create",
            "v",
            "--region",
            "eu",
            "--datastore",
            "file:///d",
            "--encryption",
            encryption,
        ])
    };
    match args("none").expect("parses").command {
        ClientCommand::Vault(VaultCommand::Create { encryption, .. }) => {
            assert_eq!(encryption.as_deref(), Some("none"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(args("aes-256-gcm").is_ok());
    assert!(args("rot13").is_err(), "only aes-256-gcm or none");
    assert!(matches!(
        parse(&["vault", "rotate-key", "prod"])
            .expect("parses")
            .command,
        ClientCommand::Vault(VaultCommand::RotateKey { .. })
    ));
    assert!(matches!(
        parse(&["vault", "export-key", "prod", "--out", "prod.key"])
            .expect("parses")
            .command,
        ClientCommand::Vault(VaultCommand::ExportKey { .. })
    ));
    assert!(
        parse(&["vault", "export-key", "prod"]).is_err(),
        "--out is required"
    );
}

#[test]
fn recovery_point_export_needs_a_point_and_a_file_unless_listing() {
    use super::recovery_point::RecoveryPointCommand;
    let export = |extra: &[&str]| {
        let mut args = vec!["recovery-point", "export", "--datastore", "file:///srv/s"];
        args.extend_from_slice(extra);
        parse(&args)
    };
    let Ok(TestCli {
        command: ClientCommand::RecoveryPoint(RecoveryPointCommand::Export(args)),
        ..
    }) = export(&["--point", "p1", "--out", "p1.sql", "--key-file", "k"])
    else {
        panic!("export parses");
    };
    assert_eq!(args.point.as_deref(), Some("p1"));
    assert!(export(&["--list"]).is_ok());
    assert!(export(&["--point", "p1"]).is_err(), "--out is required");
    assert!(export(&["--list", "--out", "x.sql"]).is_err());
}

#[test]
fn policy_create_parses_weekdays_time_and_retention() {
    let cli = parse(&[
        "policy",
        "create",
        "nightly",
        "--vault",
        "prod",
        "--weekdays",
        "mon,thu",
        "--at",
        "2:30",
        "--retain",
        "p3m",
    ])
    .expect("parses");
    match cli.command {
        ClientCommand::Policy(PolicyCommand::Create {
            weekdays,
            at,
            retain,
            weekly,
            ..
        }) => {
            assert_eq!(
                weekdays,
                vec![
                    pgvault_proto::v1::Weekday::Monday,
                    pgvault_proto::v1::Weekday::Thursday
                ]
            );
            assert_eq!(at.as_deref(), Some("02:30"));
            assert_eq!(retain.as_deref(), Some("P3M"));
            assert_eq!(weekly, None);
        }
        other => panic!("unexpected {other:?}"),
    }
    let bad_day = parse(&[
        "policy",
        "create",
        "p",
        "--vault",
        "v",
        "--weekdays",
        "mon,xyz",
        "--at",
        "02:30",
    ]);
    assert!(bad_day.unwrap_err().to_string().contains("not a weekday"));
    assert!(
        parse(&["policy", "create", "p", "--vault", "v", "--at", "02:30"]).is_err(),
        "--weekdays required"
    );
}

#[test]
fn backup_stop_needs_a_keep_mode_and_change_policy_a_policy() {
    assert!(parse(&["backup", "stop", "i1", "--vault", "v"]).is_err());
    assert!(parse(&["backup", "stop", "i1", "--vault", "v", "--keep", "forever"]).is_err());
    assert!(
        parse(&[
            "backup",
            "stop",
            "i1",
            "--vault",
            "v",
            "--keep",
            "per-policy"
        ])
        .is_ok()
    );
    assert!(parse(&["backup", "change-policy", "i1", "--vault", "v"]).is_err());
    assert!(
        parse(&[
            "backup",
            "change-policy",
            "i1",
            "--vault",
            "v",
            "--policy",
            "p",
            "--reapply"
        ])
        .is_ok()
    );
    assert!(parse(&["backup", "resume", "i1", "--vault", "v"]).is_ok());
}

#[test]
fn backup_stop_takes_delete_all_as_a_mode_but_not_with_keep() {
    let ok = [
        "backup",
        "stop",
        "i1",
        "--vault",
        "v",
        "--mode",
        "delete-all",
    ];
    assert!(parse(&ok).is_ok());
    let both = [
        "backup",
        "stop",
        "i1",
        "--vault",
        "v",
        "--mode",
        "delete-all",
        "--keep",
        "all",
    ];
    assert!(parse(&both).is_err());
    assert_eq!(
        super::protection::stop_mode(None, Some(super::protection::StopModeArg::DeleteAll)),
        pgvault_proto::v1::StopMode::DeleteAllPoints
    );
}

#[test]
fn restore_takes_rehydrate_days_and_policy_create_archive_durations() {
    let restore = [
        "restore",
        "p1",
        "--vault",
        "v",
        "--instance",
        "i",
        "--target-database",
        "t",
        "--rehydrate-days",
        "20",
    ];
    assert!(parse(&restore).is_ok());
    let create = [
        "policy",
        "create",
        "p",
        "--vault",
        "v",
        "--weekdays",
        "mon",
        "--at",
        "02:00",
        "--retain",
        "P30D",
        "--retain-archive",
        "P6M",
        "--monthly",
        "P12M",
        "--monthly-archive",
        "P5Y",
    ];
    assert!(parse(&create).is_ok());
    let bad = [
        "policy",
        "create",
        "p",
        "--vault",
        "v",
        "--weekdays",
        "mon",
        "--at",
        "02:00",
        "--retain-archive",
        "six months",
    ];
    assert!(parse(&bad).is_err());
}

#[test]
fn secret_put_never_takes_the_value_as_an_argument() {
    assert!(parse(&["secret", "put", "db1", "postgresql://u:pw@h/db"]).is_err());
    assert!(parse(&["secret", "put", "db1", "--value", "pw"]).is_err());
    assert!(
        parse(&["secret", "put", "db1", "--value-stdin", "--from-env", "X"]).is_err(),
        "one source only"
    );
    let cli = parse(&["secret", "put", "db1", "--from-env", "PGCONN"]).expect("parses");
    assert!(matches!(
        cli.command,
        ClientCommand::Secret(SecretCommand::Put { from_env: Some(ref var), .. }) if var == "PGCONN"
    ));
}

#[test]
fn backup_configure_needs_rows() {
    let base = [
        "backup",
        "configure",
        "--vault",
        "prod",
        "--policy",
        "nightly",
        "--secret",
        "s",
    ];
    assert!(parse(&base).is_err(), "no rows");
    let with = |extra: &[&'static str]| parse(&[&base[..], extra].concat());
    assert!(
        with(&["--database", "orders"]).is_err(),
        "--database needs --server"
    );
    assert!(
        with(&["--server", "db1"]).is_err(),
        "--server needs --database"
    );
    let cli = with(&[
        "--server",
        "db1",
        "--database",
        "orders",
        "--database",
        "billing",
    ])
    .expect("parses");
    match cli.command {
        ClientCommand::Backup(BackupCommand::Configure(args)) => {
            assert_eq!(args.databases, ["orders", "billing"])
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(with(&["--rows-file", "rows.csv"]).is_ok());
}

#[test]
fn backup_now_rule_and_wait() {
    let cli = parse(&[
        "backup", "now", "inst", "--vault", "prod", "--rule", "monthly", "--wait",
    ])
    .expect("parses");
    assert!(matches!(
        cli.command,
        ClientCommand::Backup(BackupCommand::Now {
            rule: RuleArg::Monthly,
            wait: true,
            ..
        })
    ));
    let cli = parse(&["backup", "now", "vaults/prod/backupInstances/inst"])
        .expect("full name needs no --vault");
    assert!(matches!(
        cli.command,
        ClientCommand::Backup(BackupCommand::Now {
            rule: RuleArg::Default,
            wait: false,
            ..
        })
    ));
    assert!(parse(&["backup", "now", "inst", "--rule", "daily"]).is_err());
}

#[test]
fn restore_and_recovery_points_parse() {
    let cli = parse(&[
        "restore",
        "rp1",
        "--vault",
        "prod",
        "--instance",
        "inst",
        "--target-database",
        "copy",
        "--wait",
    ])
    .expect("parses");
    assert!(
        matches!(cli.command, ClientCommand::Restore(ref cmd) if cmd.command.is_none()
            && cmd.database.as_ref().is_some_and(|a| a.wait && a.target_database == "copy"))
    );
    assert!(
        parse(&["restore", "rp1", "--vault", "prod"]).is_err(),
        "--target-database is required"
    );
    let cli = parse(&[
        "restore",
        "database",
        "rp1",
        "--target-database",
        "copy",
        "--schema",
        "sales",
        "--table",
        "public.customers",
        "--table",
        "public.orders",
    ])
    .expect("parses");
    assert!(matches!(
        cli.command,
        ClientCommand::Restore(ref cmd) if matches!(&cmd.command,
            Some(RestoreSubcommand::Database(a)) if a.schemas == ["sales"]
                && a.tables == ["public.customers", "public.orders"])
    ));
    let cli = parse(&[
        "restore", "files", "rp1", "--to", "./out", "--name", "x.sql", "--wait",
    ])
    .expect("parses");
    assert!(matches!(
        cli.command,
        ClientCommand::Restore(ref cmd) if matches!(&cmd.command,
            Some(RestoreSubcommand::Files(a)) if a.to == "./out" && a.name.as_deref() == Some("x.sql") && a.wait)
    ));
    assert!(
        parse(&["restore", "files", "rp1"]).is_err(),
        "--to is required"
    );
    assert!(parse(&["recovery-point", "list", "inst", "--vault", "prod"]).is_ok());
}

#[test]
fn points_kept_only_as_copies_are_listed_apart_from_deleted_ones() {
    use super::recovery_point::RecoveryPointCommand;
    let cli = parse(&["recovery-point", "list", "prod/db1", "--copies-only"]).expect("parses");
    assert!(matches!(
        cli.command,
        ClientCommand::RecoveryPoint(RecoveryPointCommand::List {
            copies_only: true,
            deleted: false,
            ..
        })
    ));
    let both = parse(&[
        "recovery-point",
        "list",
        "prod/db1",
        "--copies-only",
        "--deleted",
    ])
    .expect_err("two lists at once");
    assert!(both.to_string().contains("--deleted"), "{both}");
}

#[test]
fn job_list_filters() {
    let cli = parse(&[
        "job",
        "list",
        "--vault",
        "prod",
        "--operation",
        "on-demand-backup",
        "--state",
        "completed-with-warnings",
        "--page-size",
        "20",
        "--page-token",
        "abc",
    ])
    .expect("parses");
    match cli.command {
        ClientCommand::Job(JobCommand::List {
            operation,
            state,
            page_size,
            page_token,
            ..
        }) => {
            assert_eq!(operation, Some(OperationArg::OnDemandBackup));
            assert_eq!(state, Some(StateArg::CompletedWithWarnings));
            assert_eq!(page_size, Some(20));
            assert_eq!(page_token.as_deref(), Some("abc"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(parse(&["job", "watch", "j1"]).is_ok());
    assert!(parse(&["job", "show"]).is_err());
}

/// Renders `--help` for the command and every subcommand below it.
fn assert_help_renders(command: &mut clap::Command, path: &str, seen: &mut Vec<String>) {
    let help = command.render_long_help().to_string();
    assert!(help.contains("Usage:"), "{path}: {help}");
    assert!(
        command.get_about().is_some() || path == "pgvault",
        "{path} has no description"
    );
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if id != "help" && id != "version" {
            assert!(
                arg.get_help().is_some(),
                "{path}: argument {id} has no help"
            );
        }
    }
    seen.push(path.to_owned());
    for sub in command.get_subcommands_mut() {
        let sub_path = format!("{path} {}", sub.get_name());
        assert_help_renders(sub, &sub_path, seen);
    }
}

#[test]
fn help_renders_for_every_subcommand() {
    let mut command = TestCli::command();
    command.build();
    let mut seen = Vec::new();
    assert_help_renders(&mut command, "pgvault", &mut seen);
    for expected in [
        "pgvault vault create",
        "pgvault backup configure",
        "pgvault job watch",
        "pgvault restore",
    ] {
        assert!(
            seen.iter().any(|s| s == expected),
            "{expected} missing from {seen:?}"
        );
    }
    let now_help = parse(&["backup", "now", "--help"]).unwrap_err().to_string();
    assert!(now_help.contains("Examples:"), "{now_help}");
}

#[test]
fn token_from_flag_then_file_then_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("admin.token");
    assert_eq!(
        resolve_token(Some(" given "), &file).expect("flag"),
        "given"
    );
    let missing = resolve_token(None, &file).unwrap_err();
    assert!(
        describe(&missing).contains("pass --token or set PGVAULT_TOKEN"),
        "{}",
        describe(&missing)
    );
    std::fs::write(&file, "from-file\n").expect("write token");
    assert_eq!(resolve_token(None, &file).expect("file"), "from-file");
    assert_eq!(
        resolve_token(Some(""), &file).expect("empty flag falls back"),
        "from-file"
    );
    assert!(Path::new(ADMIN_TOKEN_FILE).is_relative());
}
