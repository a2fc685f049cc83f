//! `pgvault backup configure|revalidate|list|get|now|change-policy|stop|resume`:
//! protecting databases (and re-validating rows that failed), inspecting
//! backup instances, on-demand backups, and managing protection (in
//! `protection`).

use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use pgvault_proto::v1::{
    BackupInstance, BackupNowRequest, ConfigureBackupResponse, ConfigureBackupRow,
    GetBackupInstanceRequest, ListBackupInstancesRequest, ProtectionState, RetentionRuleKind,
    RevalidateBackupInstanceRequest,
};

use super::configure::{self, ConfigureArgs};
use super::connect::{Api, Reply};
use super::output::{local_time, print_details, print_json, print_list};
use super::protection::{self, KeepArg, StopModeArg};
use super::{json, names, paging, watch};

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Protect databases: validates each row and reports its readiness.
    Configure(ConfigureArgs),
    /// Run every configure check again on an instance; a row that failed
    /// validation is protected once it passes.
    #[command(after_help = "Examples:\n  \
        pgvault backup revalidate prod/db1-orders\n  \
        pgvault backup revalidate prod/db1-orders --assign-missing-permissions")]
    Revalidate {
        /// Instance: VAULT/NAME (its short name), its id with --vault, or "vaults/{vault}/backupInstances/{id}".
        instance: String,
        /// Vault of the instance.
        #[arg(long)]
        vault: Option<String>,
        /// Grant the vault access to its stored secret if it lacks it (Owner only).
        #[arg(long)]
        assign_missing_permissions: bool,
    },
    /// List backup instances (protected databases).
    List {
        /// Vault whose instances are listed (default: every vault).
        #[arg(long)]
        vault: Option<String>,
    },
    /// Show one backup instance.
    Get {
        /// Instance: VAULT/NAME (its short name), its id with --vault, or "vaults/{vault}/backupInstances/{id}".
        instance: String,
        /// Vault of the instance.
        #[arg(long)]
        vault: Option<String>,
    },
    /// Start an on-demand backup of an instance.
    #[command(after_help = "Examples:\n  \
        pgvault backup now prod/db1-orders --wait\n  \
        pgvault backup now prod/db1-orders --rule monthly\n  \
        job=$(pgvault backup now prod/db1-orders) && pgvault job watch \"$job\"")]
    Now {
        /// Instance: VAULT/NAME (its short name), its id with --vault, or "vaults/{vault}/backupInstances/{id}".
        instance: String,
        /// Vault of the instance.
        #[arg(long)]
        vault: Option<String>,
        /// Retention rule of the instance's policy the recovery point is kept by.
        #[arg(long, value_enum, default_value_t = RuleArg::Default)]
        rule: RuleArg,
        /// Fan the backup out across up to N workers (2-64), whatever its
        /// size; without it, only backups above the workers'
        /// worker.fanout_threshold_mb are fanned out.
        #[arg(long, value_name = "N")]
        workers: Option<u32>,
        /// Follow the job until it ends; the exit code tells whether it succeeded.
        #[arg(long)]
        wait: bool,
    },
    /// Move an instance to another policy of its vault.
    #[command(name = "change-policy")]
    ChangePolicy {
        /// Instance: VAULT/NAME (its short name), its id with --vault, or "vaults/{vault}/backupInstances/{id}".
        instance: String,
        /// Vault of the instance.
        #[arg(long)]
        vault: Option<String>,
        /// The new policy (id in the instance's vault).
        #[arg(long)]
        policy: String,
        /// Also recompute the expiry of existing recovery points from the new policy.
        #[arg(long)]
        reapply: bool,
    },
    /// Stop scheduled backups of an instance.
    #[command(after_help = "Examples:\n  \
        pgvault backup stop prod/db1-orders --keep all\n  \
        pgvault backup stop 0197c1d2 --vault prod --keep per-policy\n  \
        pgvault backup stop 0197c1d2 --vault prod --mode delete-all")]
    Stop {
        /// Instance: VAULT/NAME (its short name), its id with --vault, or "vaults/{vault}/backupInstances/{id}".
        instance: String,
        /// Vault of the instance.
        #[arg(long)]
        vault: Option<String>,
        /// What happens to existing recovery points.
        #[arg(
            long,
            value_enum,
            required_unless_present = "mode",
            conflicts_with = "mode"
        )]
        keep: Option<KeepArg>,
        /// What happens to existing recovery points; delete-all
        /// soft-deletes every one of them (purged after the vault's window).
        #[arg(long, value_enum)]
        mode: Option<StopModeArg>,
    },
    /// Resume scheduled backups of an instance from its next slot.
    Resume {
        /// Instance: VAULT/NAME (its short name), its id with --vault, or "vaults/{vault}/backupInstances/{id}".
        instance: String,
        /// Vault of the instance.
        #[arg(long)]
        vault: Option<String>,
    },
}

/// `--rule` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RuleArg {
    Default,
    Weekly,
    Monthly,
    Yearly,
}

impl From<RuleArg> for RetentionRuleKind {
    fn from(rule: RuleArg) -> Self {
        match rule {
            RuleArg::Default => Self::Default,
            RuleArg::Weekly => Self::Weekly,
            RuleArg::Monthly => Self::Monthly,
            RuleArg::Yearly => Self::Yearly,
        }
    }
}

pub async fn run(api: &Api, command: BackupCommand) -> anyhow::Result<ExitCode> {
    match command {
        BackupCommand::Configure(args) => {
            return configure::run(api, configure::prepare(args)?).await;
        }
        BackupCommand::Revalidate {
            instance,
            vault,
            assign_missing_permissions,
        } => {
            let name = names::instance(vault.as_deref(), &instance)?;
            let request = RevalidateBackupInstanceRequest {
                name: name.clone(),
                assign_missing_permissions,
            };
            let result = api
                .instances()
                .revalidate_backup_instance(request)
                .await
                .reply(api)?;
            let current = result.backup_instance.clone().unwrap_or_default();
            let rows = [ConfigureBackupRow {
                server: current.server.clone(),
                database: current.database.clone(),
                secret: current.secret.clone(),
            }];
            let response = ConfigureBackupResponse {
                results: vec![result],
            };
            if api.json() {
                print_json(&json::configure_response(&response));
            } else {
                println!("{}", configure::readiness_table(&rows, &response));
                print!("{}", configure::grant_scripts(&rows, &response));
            }
            return Ok(configure::exit_code(&response));
        }
        BackupCommand::List { vault } => {
            let parent = match vault {
                Some(vault) => names::vault(&vault)?,
                None => "vaults/-".to_owned(),
            };
            list(api, parent).await?;
        }
        BackupCommand::Get { instance, vault } => {
            let request = GetBackupInstanceRequest {
                name: names::instance(vault.as_deref(), &instance)?,
            };
            let instance = api
                .instances()
                .get_backup_instance(request)
                .await
                .reply(api)?;
            show(api, &instance);
        }
        BackupCommand::Now {
            instance,
            vault,
            rule,
            workers,
            wait,
        } => {
            let request = BackupNowRequest {
                name: names::instance(vault.as_deref(), &instance)?,
                rule: RetentionRuleKind::from(rule) as i32,
                workers: workers.unwrap_or(0),
            };
            let job = api.instances().backup_now(request).await.reply(api)?;
            return watch::started(api, job, wait).await;
        }
        BackupCommand::ChangePolicy {
            instance,
            vault,
            policy,
            reapply,
        } => {
            let name = names::instance(vault.as_deref(), &instance)?;
            show(
                api,
                &protection::change_policy(api, name, policy, reapply).await?,
            );
        }
        BackupCommand::Stop {
            instance,
            vault,
            keep,
            mode,
        } => {
            let name = names::instance(vault.as_deref(), &instance)?;
            let mode = protection::stop_mode(keep, mode);
            show(api, &protection::stop(api, name, mode).await?);
        }
        BackupCommand::Resume { instance, vault } => {
            let name = names::instance(vault.as_deref(), &instance)?;
            show(api, &protection::resume(api, name).await?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(api: &Api, parent: String) -> anyhow::Result<()> {
    let instances = paging::all_pages(|page_token| {
        let request = ListBackupInstancesRequest {
            parent: parent.clone(),
            page_size: 0,
            page_token,
        };
        async move {
            let page = api
                .instances()
                .list_backup_instances(request)
                .await
                .reply(api)?;
            Ok((page.backup_instances, page.next_page_token))
        }
    })
    .await?;
    if api.json() {
        print_json(&json::page(
            "backup_instances",
            instances.iter().map(json::instance).collect(),
            "",
        ));
        return Ok(());
    }
    let rows = instances
        .iter()
        .map(|i| {
            vec![
                names::typed_instance(&i.name, &i.short_name),
                names::short(&i.name).to_owned(),
                names::vault_of(&i.name).to_owned(),
                names::short(&i.server).to_owned(),
                i.database.clone(),
                names::short(&i.policy).to_owned(),
                names::secret_ref_short(&i.secret).to_owned(),
                protection_text(i.protection_state).to_owned(),
                local_time(i.create_time.as_ref()),
            ]
        })
        .collect();
    print_list(
        &[
            "NAME",
            "INSTANCE",
            "VAULT",
            "SERVER",
            "DATABASE",
            "POLICY",
            "SECRET",
            "PROTECTION",
            "CREATED",
        ],
        rows,
        "no protected databases; protect some with: pgvault backup configure",
    );
    Ok(())
}

fn show(api: &Api, instance: &BackupInstance) {
    if api.json() {
        print_json(&json::instance(instance));
        return;
    }
    print_details(&[
        (
            "NAME",
            names::typed_instance(&instance.name, &instance.short_name),
        ),
        ("INSTANCE", names::short(&instance.name).to_owned()),
        ("VAULT", names::vault_of(&instance.name).to_owned()),
        ("SERVER", names::short(&instance.server).to_owned()),
        ("DATABASE", instance.database.clone()),
        ("POLICY", names::short(&instance.policy).to_owned()),
        (
            "SECRET",
            names::secret_ref_short(&instance.secret).to_owned(),
        ),
        (
            "PROTECTION",
            protection_text(instance.protection_state).to_owned(),
        ),
        (
            "LAST ERROR",
            instance
                .last_error
                .as_ref()
                .map(|e| {
                    format!(
                        "{}: {} (action: {})",
                        e.code, e.message, e.recommended_action
                    )
                })
                .unwrap_or_default(),
        ),
        ("CREATED", local_time(instance.create_time.as_ref())),
    ]);
}

fn protection_text(state: i32) -> &'static str {
    match ProtectionState::try_from(state) {
        Ok(ProtectionState::Configured) => "configured",
        Ok(ProtectionState::Stopped) => "stopped",
        Ok(ProtectionState::Validating) => "validating",
        Ok(ProtectionState::ValidationFailed) => "validation failed",
        _ => "unknown",
    }
}
