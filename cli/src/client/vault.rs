//! `pgvault vault create|get|list|delete|update|lock|unlock|rotate-key`. A
//! locked vault is immutable for good: its points cannot be deleted or
//! expire earlier, its retention cannot be shortened, its soft-delete window
//! cannot shrink, and the lock cannot be removed. New vaults encrypt their
//! points (`--encryption none` opts out); `rotate-key` rewraps every point's
//! data key under a new version of the vault's key; `export-key` writes the
//! vault's key file ([`super::vault_key`]).

use std::process::ExitCode;

use clap::Subcommand;
use pgvault_proto::v1::{
    CreateVaultRequest, DeleteVaultRequest, GetVaultRequest, ListVaultsRequest, LockVaultRequest,
    RotateVaultKeyRequest, UnlockVaultRequest, UpdateVaultRequest, Vault,
};

use super::connect::{Api, Reply};
use super::output::{local_time, or_dash, print_details, print_json, print_list};
use super::{json, names, paging};

#[derive(Debug, Subcommand)]
pub enum VaultCommand {
    /// Create a vault bound to a region and a datastore.
    #[command(after_help = "Examples:\n  \
        pgvault vault create prod --region eu-west --datastore file:///srv/pgvault\n  \
        pgvault vault create prod --region eu-west --datastore s3://backups/pg \\\n      \
        --archive-datastore az://archive/pg --description \"production fleet\"\n  \
        pgvault vault create scratch --region eu-west --datastore file:///srv/scratch --encryption none")]
    Create {
        /// Short id of the new vault: lowercase letters, digits and '-'.
        name: String,
        /// Region label; the vault protects only servers in the same region.
        #[arg(long)]
        region: String,
        /// Object-store URL of the standard datastore (file:///abs/dir, s3://bucket/prefix, az://container/prefix).
        #[arg(long, value_name = "URL")]
        datastore: String,
        /// Object-store URL of the archive datastore, for points moved to archive.
        #[arg(long, value_name = "URL")]
        archive_datastore: Option<String>,
        /// Free text shown in listings.
        #[arg(long)]
        description: Option<String>,
        /// Days a deleted recovery point stays recoverable before it is purged (at least 1; default 14).
        #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..))]
        soft_delete_days: Option<u32>,
        /// Client-side encryption of every recovery point: aes-256-gcm (the
        /// default) or none. Chosen once, at creation.
        #[arg(long, value_name = "ALGORITHM", value_parser = ["aes-256-gcm", "none"])]
        encryption: Option<String>,
    },
    /// Make a new version of an encrypted vault's key and rewrap every
    /// recovery point's data key under it (Owner only; no data is rewritten).
    #[command(
        name = "rotate-key",
        after_help = "Examples:\n  pgvault vault rotate-key prod"
    )]
    RotateKey {
        /// Vault id (or "vaults/{id}").
        name: String,
    },
    /// Write every version of an encrypted vault's key to a new file (mode
    /// 0600; Owner only): with the datastore, it opens the vault's points
    /// without pgvault (`pgvault recovery-point export --key-file`). Export
    /// again after `rotate-key`. Never overwrites.
    #[command(
        name = "export-key",
        after_help = "Examples:\n  pgvault vault export-key prod --out /secure/prod.pgvault-key"
    )]
    ExportKey {
        /// Vault id (or "vaults/{id}").
        name: String,
        /// The key file to create (must not exist).
        #[arg(long, value_name = "FILE")]
        out: std::path::PathBuf,
    },
    /// Change a vault's soft-delete window (a locked vault's window can only grow).
    #[command(after_help = "Examples:\n  pgvault vault update prod --soft-delete-days 30")]
    Update {
        /// Vault id (or "vaults/{id}").
        name: String,
        /// Days a deleted recovery point stays recoverable before it is purged (at least 1).
        #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..))]
        soft_delete_days: u32,
    },
    /// Lock a vault for good (Owner only): no point can be deleted or expire
    /// earlier, no retention can be shortened, the soft-delete window cannot
    /// shrink, and the lock can never be removed.
    #[command(after_help = "Examples:\n  pgvault vault lock prod --confirm")]
    Lock {
        /// Vault id (or "vaults/{id}").
        name: String,
        /// Confirm that the lock cannot be undone, not even by an Owner.
        #[arg(long)]
        confirm: bool,
    },
    /// Ask to unlock a vault: always refused for a locked vault (a lock is never removed).
    Unlock {
        /// Vault id (or "vaults/{id}").
        name: String,
    },
    /// Show one vault.
    Get {
        /// Vault id (or "vaults/{id}").
        name: String,
    },
    /// List every vault.
    List,
    /// Delete an empty vault (refused while it holds backup instances or recovery
    /// points, soft-deleted ones until they are purged, and for a locked vault).
    Delete {
        /// Vault id (or "vaults/{id}").
        name: String,
    },
}

pub async fn run(api: &Api, command: VaultCommand) -> anyhow::Result<ExitCode> {
    match command {
        VaultCommand::Create {
            name,
            region,
            datastore,
            archive_datastore,
            description,
            soft_delete_days,
            encryption,
        } => {
            let vault_id = names::short(&names::vault(&name)?).to_owned();
            let request = CreateVaultRequest {
                vault_id,
                vault: Some(Vault {
                    region,
                    standard_datastore: datastore,
                    archive_datastore: archive_datastore.unwrap_or_default(),
                    description: description.unwrap_or_default(),
                    soft_delete_days: soft_delete_days.unwrap_or_default(),
                    encryption: encryption.unwrap_or_default(),
                    ..Vault::default()
                }),
            };
            let vault = api.vaults().create_vault(request).await.reply(api)?;
            show(api, &vault);
        }
        VaultCommand::Get { name } => {
            let request = GetVaultRequest {
                name: names::vault(&name)?,
            };
            let vault = api.vaults().get_vault(request).await.reply(api)?;
            show(api, &vault);
        }
        VaultCommand::List => list(api).await?,
        VaultCommand::Update {
            name,
            soft_delete_days,
        } => {
            let request = UpdateVaultRequest {
                name: names::vault(&name)?,
                soft_delete_days,
            };
            let vault = api.vaults().update_vault(request).await.reply(api)?;
            show(api, &vault);
        }
        VaultCommand::Lock { name, confirm } => {
            let name = names::vault(&name)?;
            if !confirm {
                anyhow::bail!(
                    "locking {name} cannot be undone, not even by an Owner; add --confirm to lock it"
                );
            }
            let request = LockVaultRequest { name, confirm };
            let vault = api.vaults().lock_vault(request).await.reply(api)?;
            show(api, &vault);
        }
        VaultCommand::RotateKey { name } => {
            let request = RotateVaultKeyRequest {
                name: names::vault(&name)?,
            };
            let rotated = api.vaults().rotate_vault_key(request).await.reply(api)?;
            let vault = rotated.vault.unwrap_or_default();
            if api.json() {
                print_json(&serde_json::json!({
                    "vault": json::vault(&vault),
                    "points_rewrapped": rotated.points_rewrapped,
                }));
            } else {
                println!(
                    "rotated the key of {} to version {}; {} recovery point key(s) rewrapped",
                    vault.name, vault.key_version, rotated.points_rewrapped
                );
            }
        }
        VaultCommand::ExportKey { name, out } => super::vault_key::export(api, &name, &out).await?,
        VaultCommand::Unlock { name } => {
            let request = UnlockVaultRequest {
                name: names::vault(&name)?,
            };
            let vault = api.vaults().unlock_vault(request).await.reply(api)?;
            show(api, &vault);
        }
        VaultCommand::Delete { name } => {
            let name = names::vault(&name)?;
            let request = DeleteVaultRequest { name: name.clone() };
            api.vaults().delete_vault(request).await.reply(api)?;
            if api.json() {
                print_json(&serde_json::json!({}));
            } else {
                println!("deleted {name}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(api: &Api) -> anyhow::Result<()> {
    let vaults = paging::all_pages(|page_token| {
        let request = ListVaultsRequest {
            page_size: 0,
            page_token,
        };
        async move {
            let page = api.vaults().list_vaults(request).await.reply(api)?;
            Ok((page.vaults, page.next_page_token))
        }
    })
    .await?;
    if api.json() {
        print_json(&json::page(
            "vaults",
            vaults.iter().map(json::vault).collect(),
            "",
        ));
        return Ok(());
    }
    let rows = vaults
        .iter()
        .map(|v| {
            vec![
                names::short(&v.name).to_owned(),
                v.region.clone(),
                v.standard_datastore.clone(),
                or_dash(&v.archive_datastore),
                lock_text(v),
                encryption_text(v),
                local_time(v.create_time.as_ref()),
                v.description.clone(),
            ]
        })
        .collect();
    print_list(
        &[
            "NAME",
            "REGION",
            "DATASTORE",
            "ARCHIVE DATASTORE",
            "LOCKED",
            "ENCRYPTION",
            "CREATED",
            "DESCRIPTION",
        ],
        rows,
        "no vaults yet; create one with: pgvault vault create NAME --region R --datastore URL",
    );
    Ok(())
}

fn show(api: &Api, vault: &Vault) {
    if api.json() {
        print_json(&json::vault(vault));
        return;
    }
    print_details(&[
        ("NAME", names::short(&vault.name).to_owned()),
        ("REGION", vault.region.clone()),
        ("DATASTORE", vault.standard_datastore.clone()),
        ("ARCHIVE DATASTORE", vault.archive_datastore.clone()),
        ("DESCRIPTION", vault.description.clone()),
        ("SOFT DELETE", format!("{} days", vault.soft_delete_days)),
        ("LOCKED", lock_text(vault)),
        ("ENCRYPTION", encryption_text(vault)),
        ("CREATED", local_time(vault.create_time.as_ref())),
    ]);
}

/// "no", or "since <time>" for a locked vault.
fn lock_text(vault: &Vault) -> String {
    match vault.lock_time.as_ref() {
        Some(time) => format!("since {}", local_time(Some(time))),
        None => "no".to_owned(),
    }
}

/// "aes-256-gcm (key v2)", or "none".
fn encryption_text(vault: &Vault) -> String {
    match vault.encryption.as_str() {
        "" | "none" => "none".to_owned(),
        algorithm => format!("{algorithm} (key v{})", vault.key_version),
    }
}
