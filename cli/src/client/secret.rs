//! `pgvault secret put|list|grant|revoke`. Values are read from stdin or
//! from an environment variable, never from a plain argument (argv is
//! visible to every user through `ps`), are redacted in `Debug`, and are
//! never printed. `grant`/`revoke` let a vault read a secret (Owner only);
//! `list` shows which vaults may.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{ArgGroup, Subcommand};
use pgvault_proto::v1::{
    GrantSecretAccessRequest, ListSecretsRequest, PutSecretRequest, PutSigningKeyRequest,
    RevokeSecretAccessRequest, Secret,
};

use super::connect::{Api, Reply};
use super::output::{local_time, print_details, print_json, print_list};
use super::{json, names, paging};

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Store a connection string (or, with --signing-key, a notification
    /// signing key); a new version when the secret exists.
    #[command(
        group(ArgGroup::new("source").args(["value_stdin", "from_env"])),
        after_help = "The value is a connection string: libpq key=value, postgresql:// URI or\n\
            ADO.NET (Server=...;Database=...;User Id=...;Password=...).\n\n\
            Examples:\n  \
            printf '%s' 'postgresql://backup:pw@db1:5432/postgres' | pgvault secret put db1-backup\n  \
            PGCONN='host=db1 user=backup password=pw' pgvault secret put db1-backup --from-env PGCONN\n  \
            openssl rand -hex 32 | pgvault secret put hook-key --signing-key"
    )]
    Put {
        /// Short id of the secret.
        name: String,
        /// Read the value from stdin (the default).
        #[arg(long)]
        value_stdin: bool,
        /// Read the value from this environment variable instead of stdin.
        #[arg(long, value_name = "VAR")]
        from_env: Option<String>,
        /// The value is a key signing notification bodies (at least 16
        /// characters), not a connection string.
        #[arg(long)]
        signing_key: bool,
    },
    /// List secrets (names, versions and the vaults granted each; values are
    /// never returned).
    List,
    /// Let a vault read a secret (Owner of the vault only).
    #[command(after_help = "Example:\n  pgvault secret grant --vault prod db1-backup")]
    Grant {
        /// Secret id.
        name: String,
        /// Vault granted access.
        #[arg(long)]
        vault: String,
    },
    /// Take a vault's access to a secret away; its jobs using it then fail.
    Revoke {
        /// Secret id.
        name: String,
        /// Vault whose access is revoked.
        #[arg(long)]
        vault: String,
    },
}

/// A secret value: kept out of `Debug` output.
pub struct SecretValue(String);

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Reads the value of `secret put` from the environment variable, or stdin.
pub fn read_value(from_env: Option<&str>) -> anyhow::Result<SecretValue> {
    if let Some(var) = from_env {
        let value =
            std::env::var(var).with_context(|| format!("environment variable {var} is not set"))?;
        return checked(value);
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("enter the connection string, then press Ctrl-D:");
    }
    let mut value = String::new();
    stdin
        .lock()
        .read_to_string(&mut value)
        .context("read the secret value from stdin")?;
    checked(value)
}

/// Drops the trailing newline `echo` adds; refuses an empty value.
fn checked(value: String) -> anyhow::Result<SecretValue> {
    let trimmed = value.trim_end_matches(['\n', '\r']);
    if trimmed.trim().is_empty() {
        bail!("the secret value is empty");
    }
    Ok(SecretValue(trimmed.to_owned()))
}

pub async fn run(api: &Api, command: SecretCommand) -> anyhow::Result<ExitCode> {
    match command {
        SecretCommand::Put {
            name,
            from_env,
            signing_key,
            ..
        } => {
            let secret_id = names::short(&names::secret(&name)?).to_owned();
            let value = read_value(from_env.as_deref())?;
            let secret = if signing_key {
                let request = PutSigningKeyRequest {
                    secret_id,
                    value: value.0,
                };
                api.secrets().put_signing_key(request).await.reply(api)?
            } else {
                let request = PutSecretRequest {
                    secret_id,
                    value: value.0,
                };
                api.secrets().put_secret(request).await.reply(api)?
            };
            if api.json() {
                print_json(&json::secret(&secret));
            } else {
                print_details(&[
                    ("NAME", names::short(&secret.name).to_owned()),
                    ("VERSION", secret.latest_version.to_string()),
                    ("UPDATED", local_time(secret.update_time.as_ref())),
                ]);
            }
        }
        SecretCommand::List => list(api).await?,
        SecretCommand::Grant { name, vault } => {
            let request = GrantSecretAccessRequest {
                secret: names::secret(&name)?,
                vault: names::vault(&vault)?,
            };
            let secret = api
                .secrets()
                .grant_secret_access(request)
                .await
                .reply(api)?;
            show_access(api, &secret);
        }
        SecretCommand::Revoke { name, vault } => {
            let request = RevokeSecretAccessRequest {
                secret: names::secret(&name)?,
                vault: names::vault(&vault)?,
            };
            let secret = api
                .secrets()
                .revoke_secret_access(request)
                .await
                .reply(api)?;
            show_access(api, &secret);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn show_access(api: &Api, secret: &Secret) {
    if api.json() {
        print_json(&json::secret(secret));
    } else {
        print_details(&[
            ("NAME", names::short(&secret.name).to_owned()),
            ("VAULTS", granted(secret)),
        ]);
    }
}

/// The vaults granted a secret, as short ids.
fn granted(secret: &Secret) -> String {
    secret
        .granted_vaults
        .iter()
        .map(|v| names::short(v))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn list(api: &Api) -> anyhow::Result<()> {
    let secrets = paging::all_pages(|page_token| {
        let request = ListSecretsRequest {
            page_size: 0,
            page_token,
        };
        async move {
            let page = api.secrets().list_secrets(request).await.reply(api)?;
            Ok((page.secrets, page.next_page_token))
        }
    })
    .await?;
    if api.json() {
        print_json(&json::page(
            "secrets",
            secrets.iter().map(json::secret).collect(),
            "",
        ));
        return Ok(());
    }
    let rows = secrets
        .iter()
        .map(|s| {
            vec![
                names::short(&s.name).to_owned(),
                s.latest_version.to_string(),
                granted(s),
                local_time(s.create_time.as_ref()),
                local_time(s.update_time.as_ref()),
            ]
        })
        .collect();
    print_list(
        &["NAME", "VERSION", "VAULTS", "CREATED", "UPDATED"],
        rows,
        "no secrets yet; store one with: pgvault secret put NAME < connection-string.txt",
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_newline_is_dropped_and_empty_refused() {
        assert_eq!(
            checked("host=db1 password=x\n".into()).unwrap().0,
            "host=db1 password=x"
        );
        assert_eq!(
            checked("pw with space \r\n".into()).unwrap().0,
            "pw with space "
        );
        assert!(checked("\n".into()).is_err());
    }

    #[test]
    fn value_from_env_is_read_and_redacted() {
        let var = "PGVAULT_CLIENT_TEST_SECRET_VALUE";
        // SAFETY: this variable is unique to this test; no other thread reads it.
        unsafe { std::env::set_var(var, "password=hunter2") };
        let value = read_value(Some(var)).expect("read from env");
        assert!(!format!("{value:?}").contains("hunter2"));
        assert_eq!(value.0, "password=hunter2");
        let missing = read_value(Some("PGVAULT_CLIENT_TEST_UNSET_VAR"));
        assert!(missing.unwrap_err().to_string().contains("is not set"));
    }
}
