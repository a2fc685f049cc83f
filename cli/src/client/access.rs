//! `pgvault token create|list|revoke` and `pgvault role assign|list|remove`:
//! API tokens and the roles they hold, globally or on one vault. Only a
//! token with the `Owner` role may run these.

use std::process::ExitCode;

use clap::Subcommand;
use pgvault_proto::v1::{
    ApiToken, AssignRoleRequest, CreateTokenRequest, ListRolesRequest, ListTokensRequest,
    RemoveRoleRequest, RevokeTokenRequest, RoleAssignment,
};
use serde_json::json;

use super::connect::{Api, Reply};
use super::names;
use super::output::{local_time, or_dash, print_json, print_list};

const ROLES: &str = "Owner, BackupContributor, BackupOperator, BackupReader or Worker";

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token; its value is printed once and never again.
    #[command(after_help = "Examples:\n  \
        pgvault token create ci --role BackupOperator\n  \
        pgvault token create team-a --role BackupContributor --vault prod\n  \
        pgvault token create worker-1 --role Worker")]
    Create {
        /// A name to recognise the token by.
        display_name: String,
        /// Role to assign at once: Owner, BackupContributor, BackupOperator, BackupReader or Worker.
        #[arg(long)]
        role: Option<String>,
        /// Assign the role on this vault only (default: globally).
        #[arg(long, requires = "role")]
        vault: Option<String>,
    },
    /// List tokens (names and ids; never values).
    List,
    /// Revoke a token: it stops working at once.
    Revoke {
        /// "tokens/{id}" or the bare id.
        token: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Give a token a role, globally or on one vault (replaces its role there).
    #[command(
        after_help = "Example:\n  pgvault role assign tokens/6f1c… BackupReader --vault prod"
    )]
    Assign {
        /// "tokens/{id}" or the bare id.
        token: String,
        /// Owner, BackupContributor, BackupOperator, BackupReader or Worker.
        role: String,
        /// Assign on this vault only (default: globally).
        #[arg(long)]
        vault: Option<String>,
    },
    /// List role assignments, of every token or of one.
    List {
        /// Only this token's roles.
        #[arg(long)]
        token: Option<String>,
    },
    /// Remove a token's role, globally or on one vault.
    Remove {
        /// "tokens/{id}" or the bare id.
        token: String,
        /// Remove the role on this vault (default: the global role).
        #[arg(long)]
        vault: Option<String>,
    },
}

fn scope(vault: Option<&str>) -> anyhow::Result<String> {
    vault
        .map(names::vault)
        .transpose()
        .map(Option::unwrap_or_default)
}

fn token_json(t: &ApiToken) -> serde_json::Value {
    json!({
        "name": t.name,
        "display_name": t.display_name,
        "create_time": super::output::to_utc(t.create_time.as_ref()).map(|t| t.to_rfc3339()),
    })
}

fn assignment_json(a: &RoleAssignment) -> serde_json::Value {
    json!({ "principal": a.principal, "role": a.role, "scope": a.scope })
}

pub async fn run_token(api: &Api, command: TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::Create {
            display_name,
            role,
            vault,
        } => {
            let request = CreateTokenRequest {
                display_name,
                role: role.unwrap_or_default(),
                scope: scope(vault.as_deref())?,
            };
            let created = api.access().create_token(request).await.reply(api)?;
            let token = created.token.unwrap_or_default();
            if api.json() {
                print_json(&json!({ "token": token_json(&token), "secret": created.secret }));
            } else {
                println!("created {} ({})", token.name, token.display_name);
                println!(
                    "token (shown only now; store it safely): {}",
                    created.secret
                );
            }
        }
        TokenCommand::List => {
            let tokens = api
                .access()
                .list_tokens(ListTokensRequest {})
                .await
                .reply(api)?
                .tokens;
            if api.json() {
                print_json(&json!({ "tokens": tokens.iter().map(token_json).collect::<Vec<_>>() }));
            } else {
                let rows = tokens
                    .iter()
                    .map(|t| {
                        vec![
                            t.name.clone(),
                            t.display_name.clone(),
                            local_time(t.create_time.as_ref()),
                        ]
                    })
                    .collect();
                print_list(&["NAME", "DISPLAY NAME", "CREATED"], rows, "no tokens");
            }
        }
        TokenCommand::Revoke { token } => {
            let name = names::token(&token);
            api.access()
                .revoke_token(RevokeTokenRequest { name: name.clone() })
                .await
                .reply(api)?;
            if api.json() {
                print_json(&json!({}));
            } else {
                println!("revoked {name}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn run_role(api: &Api, command: RoleCommand) -> anyhow::Result<ExitCode> {
    match command {
        RoleCommand::Assign { token, role, vault } => {
            let assignment = RoleAssignment {
                principal: names::token(&token),
                role,
                scope: scope(vault.as_deref())?,
            };
            let done = api
                .access()
                .assign_role(AssignRoleRequest {
                    assignment: Some(assignment),
                })
                .await
                .reply(api)?;
            if api.json() {
                print_json(&assignment_json(&done));
            } else {
                let on = if done.scope.is_empty() {
                    "globally".to_string()
                } else {
                    format!("on {}", done.scope)
                };
                println!("{} is {} {on}", done.principal, done.role);
            }
        }
        RoleCommand::List { token } => {
            let principal = token.as_deref().map(names::token).unwrap_or_default();
            let assignments = api
                .access()
                .list_roles(ListRolesRequest { principal })
                .await
                .reply(api)?
                .assignments;
            if api.json() {
                print_json(
                    &json!({ "assignments": assignments.iter().map(assignment_json).collect::<Vec<_>>() }),
                );
            } else {
                let rows = assignments
                    .iter()
                    .map(|a| vec![a.principal.clone(), a.role.clone(), or_dash(&a.scope)])
                    .collect();
                print_list(
                    &["TOKEN", "ROLE", "SCOPE"],
                    rows,
                    &format!("no role assignments (roles: {ROLES})"),
                );
            }
        }
        RoleCommand::Remove { token, vault } => {
            let request = RemoveRoleRequest {
                principal: names::token(&token),
                scope: scope(vault.as_deref())?,
            };
            api.access().remove_role(request).await.reply(api)?;
            if api.json() {
                print_json(&json!({}));
            } else {
                println!("removed the role of {}", names::token(&token));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
