//! `pgvault backup configure`: the rows to protect (from flags, a CSV rows
//! file, or every database of a server with `--all-databases`), the request
//! built from them, and the per-row readiness table.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{ArgGroup, Args};
use pgvault_proto::v1::{
    ConfigureBackupRequest, ConfigureBackupResponse, ConfigureBackupRow, Readiness,
};

use super::connect::{Api, Reply};
use super::output::{list_table, print_json};
use super::{json, names};

#[derive(Debug, Args)]
#[command(
    group(ArgGroup::new("rows").args(["databases", "rows_file", "all_databases"]).required(true).multiple(true)),
    group(ArgGroup::new("on_server").args(["databases", "all_databases"])),
    after_help = "Examples:\n  \
        pgvault backup configure --vault prod --policy nightly --secret db1-backup \\\n      \
        --server db1 --database orders --database billing\n  \
        pgvault backup configure --vault prod --policy nightly --secret fleet --rows-file rows.csv\n  \
        pgvault backup configure --vault prod --policy nightly --secret secret://db1-backup/2 \\\n      \
        --server db1 --database orders --assign-missing-permissions\n  \
        pgvault backup configure --vault prod --policy nightly --secret db1-backup \\\n      \
        --server db1 --all-databases\n\n\
        --secret takes a secret id, secret://NAME (latest version, re-read for every backup),\n\
        secret://NAME/VERSION (pinned), env://VAR or file:///path (read by the coordinator,\n\
        when its configuration allows). Rows that fail a check are kept; fix the cause and run\n\
        \"pgvault backup revalidate INSTANCE\".\n\n\
        A rows file has one \"server,database[,secret]\" line per database; blank lines and\n\
        lines starting with '#' are ignored, and a first line \"server,database,secret\" is a header.\n\n\
        --all-databases protects every database of --server (templates and the coordinator's\n\
        maintenance databases excepted) and records the server as protected whole: at each\n\
        slot of the policy its databases are listed again, and new ones are protected and\n\
        backed up in that slot. Its backups also capture the server's roles and tablespaces\n\
        (never passwords unless --role-passwords, which an encrypted vault and a superuser's\n\
        secret allow)."
)]
pub struct ConfigureArgs {
    /// Vault that protects the databases.
    #[arg(long)]
    pub vault: String,
    /// Policy of that vault the backups follow.
    #[arg(long)]
    pub policy: String,
    /// Secret used for rows that name none.
    #[arg(long)]
    pub secret: Option<String>,
    /// Server of the --database rows (or of --all-databases).
    #[arg(long, requires = "on_server")]
    pub server: Option<String>,
    /// A database to protect on --server; repeat for several.
    #[arg(long = "database", value_name = "DATABASE", requires = "server")]
    pub databases: Vec<String>,
    /// Protect every database of --server, and the ones created later
    /// (found at each scheduled run).
    #[arg(long, requires = "server", conflicts_with_all = ["databases", "rows_file"])]
    pub all_databases: bool,
    /// With --all-databases: the server's globals also carry the roles'
    /// passwords (hashed, as the server stores them), so a server restore
    /// gives the roles it creates their passwords. Only for an encrypted
    /// vault; the secret must be a superuser's.
    #[arg(long, requires = "all_databases")]
    pub role_passwords: bool,
    /// CSV file of rows: server,database[,secret].
    #[arg(long, value_name = "FILE")]
    pub rows_file: Option<PathBuf>,
    /// Grant the vault access to the stored secrets it lacks (needs the
    /// Owner role on the vault); without it such rows fail and show the
    /// command an Owner must run.
    #[arg(long)]
    pub assign_missing_permissions: bool,
}

/// One database to protect, as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowSpec {
    pub server: String,
    pub database: String,
    pub secret: Option<String>,
}

/// Builds the request, reading the rows file. Fails on rows without a secret.
pub fn prepare(args: ConfigureArgs) -> anyhow::Result<ConfigureBackupRequest> {
    if args.all_databases {
        return prepare_whole_server(&args);
    }
    let mut specs: Vec<RowSpec> = match (&args.server, args.databases.is_empty()) {
        (Some(server), false) => args
            .databases
            .iter()
            .map(|database| RowSpec {
                server: server.clone(),
                database: database.clone(),
                secret: None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if let Some(path) = &args.rows_file {
        specs.extend(read_rows_file(path)?);
    }
    let mut rows = Vec::with_capacity(specs.len());
    for (index, spec) in specs.iter().enumerate() {
        if spec.secret.is_none() && args.secret.is_none() {
            bail!(
                "row {} ({}/{}) names no secret; pass --secret or add a third column to the rows file",
                index + 1,
                spec.server,
                spec.database
            );
        }
        rows.push(ConfigureBackupRow {
            server: names::server(&spec.server)?,
            database: spec.database.clone(),
            secret: spec
                .secret
                .as_deref()
                .map(names::secret_ref)
                .transpose()?
                .unwrap_or_default(),
        });
    }
    Ok(ConfigureBackupRequest {
        parent: names::vault(&args.vault)?,
        policy: names::policy(Some(&args.vault), &args.policy)?,
        rows,
        default_secret: args
            .secret
            .as_deref()
            .map(names::secret_ref)
            .transpose()?
            .unwrap_or_default(),
        assign_missing_permissions: args.assign_missing_permissions,
        all_databases_of: String::new(),
        role_passwords: false,
    })
}

/// `--server S --all-databases`: no rows; the coordinator lists them.
fn prepare_whole_server(args: &ConfigureArgs) -> anyhow::Result<ConfigureBackupRequest> {
    let (Some(server), Some(secret)) = (&args.server, &args.secret) else {
        bail!(
            "--all-databases needs --server and --secret (the secret lists and backs up every database)"
        );
    };
    Ok(ConfigureBackupRequest {
        parent: names::vault(&args.vault)?,
        policy: names::policy(Some(&args.vault), &args.policy)?,
        rows: Vec::new(),
        default_secret: names::secret_ref(secret)?,
        assign_missing_permissions: args.assign_missing_permissions,
        all_databases_of: names::server(server)?,
        role_passwords: args.role_passwords,
    })
}

fn read_rows_file(path: &Path) -> anyhow::Result<Vec<RowSpec>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read rows file {}", path.display()))?;
    parse_rows(&text).with_context(|| format!("rows file {}", path.display()))
}

/// Parses `server,database[,secret]` lines.
pub fn parse_rows(text: &str) -> anyhow::Result<Vec<RowSpec>> {
    let mut rows = Vec::new();
    let mut first = true;
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let is_header = first
            && fields
                .first()
                .is_some_and(|f| f.eq_ignore_ascii_case("server"));
        first = false;
        if is_header {
            continue;
        }
        let row = match fields.as_slice() {
            [server, database] if !server.is_empty() && !database.is_empty() => RowSpec {
                server: server.to_string(),
                database: database.to_string(),
                secret: None,
            },
            [server, database, secret] if !server.is_empty() && !database.is_empty() => RowSpec {
                server: server.to_string(),
                database: database.to_string(),
                secret: Some(secret.to_string()).filter(|s| !s.is_empty()),
            },
            _ => bail!(
                "line {}: expected \"server,database[,secret]\", found \"{line}\"",
                index + 1
            ),
        };
        rows.push(row);
    }
    if rows.is_empty() {
        bail!("no rows; expected \"server,database[,secret]\" lines");
    }
    Ok(rows)
}

pub async fn run(api: &Api, request: ConfigureBackupRequest) -> anyhow::Result<ExitCode> {
    let server = request.all_databases_of.clone();
    let mut rows = request.rows.clone();
    let response = api.instances().configure_backup(request).await.reply(api)?;
    if !server.is_empty() {
        rows = listed_rows(&server, &response);
    }
    if api.json() {
        print_json(&json::configure_response(&response));
    } else {
        println!("{}", readiness_table(&rows, &response));
        print!("{}", grant_scripts(&rows, &response));
        let ready = response
            .results
            .iter()
            .filter(|r| r.readiness == Readiness::Success as i32)
            .count();
        println!("{ready} of {} databases protected", rows.len());
    }
    Ok(exit_code(&response))
}

/// The rows of an `--all-databases` answer: one per database the
/// coordinator found, in its order.
pub fn listed_rows(server: &str, response: &ConfigureBackupResponse) -> Vec<ConfigureBackupRow> {
    response
        .results
        .iter()
        .map(|r| ConfigureBackupRow {
            server: server.to_string(),
            database: r.database.clone(),
            secret: String::new(),
        })
        .collect()
}

/// The grant scripts of rows that lack privileges, ready to run as the
/// database owner or a superuser (`--output json` also has the psql and
/// PowerShell wrappers).
pub fn grant_scripts(rows: &[ConfigureBackupRow], response: &ConfigureBackupResponse) -> String {
    let mut out = String::new();
    for (position, result) in response.results.iter().enumerate() {
        let Some(script) = &result.grant_script else {
            continue;
        };
        let row = rows.get(position).cloned().unwrap_or_default();
        let then = match &result.backup_instance {
            Some(instance) => format!("then run: pgvault backup revalidate {}", instance.name),
            None => "then configure the row again".to_owned(),
        };
        out.push_str(&format!(
            "\n-- fix for row {} ({}/{}): run this SQL as the database owner or a superuser, {then}\n{}",
            position + 1,
            names::short(&row.server),
            row.database,
            script.sql
        ));
    }
    out
}

/// Success only when every row is protected.
pub fn exit_code(response: &ConfigureBackupResponse) -> ExitCode {
    let all_ready = !response.results.is_empty()
        && response
            .results
            .iter()
            .all(|r| r.readiness == Readiness::Success as i32);
    if all_ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// ROW, SERVER, DATABASE, READINESS, and the instance id or what went wrong.
pub fn readiness_table(rows: &[ConfigureBackupRow], response: &ConfigureBackupResponse) -> String {
    let lines = response
        .results
        .iter()
        .enumerate()
        .map(|(position, result)| {
            // Results come one per row, in order.
            let row = rows.get(position).cloned().unwrap_or_default();
            let readiness = match Readiness::try_from(result.readiness) {
                Ok(Readiness::Success) => "success",
                Ok(Readiness::FailedValidation) => "failed validation",
                Ok(Readiness::Validating) => "validating",
                _ => "unknown",
            };
            let mut outcome = result
                .backup_instance
                .as_ref()
                .map(|instance| names::typed_instance(&instance.name, &instance.short_name))
                .unwrap_or_default();
            if let Some(error) = &result.error {
                if !outcome.is_empty() {
                    outcome.push('\n');
                }
                outcome.push_str(&format!("{}: {}", error.code, error.message));
                if !error.recommended_action.is_empty() {
                    outcome.push_str(&format!("\naction: {}", error.recommended_action));
                }
            }
            vec![
                (position + 1).to_string(),
                names::short(&row.server).to_owned(),
                row.database,
                readiness.to_owned(),
                outcome,
            ]
        })
        .collect();
    list_table(
        &["ROW", "SERVER", "DATABASE", "READINESS", "INSTANCE / ERROR"],
        lines,
    )
}

#[cfg(test)]
mod tests {
    use pgvault_proto::v1::{BackupInstance, ConfigureBackupResult, JobError};

    use super::*;

    fn args() -> ConfigureArgs {
        ConfigureArgs {
            vault: "prod".into(),
            policy: "nightly".into(),
            secret: Some("fleet".into()),
            server: Some("db1".into()),
            databases: vec!["orders".into(), "billing".into()],
            rows_file: None,
            all_databases: false,
            role_passwords: false,
            assign_missing_permissions: false,
        }
    }

    #[test]
    fn all_databases_sends_the_server_and_no_rows() {
        let request = prepare(ConfigureArgs {
            databases: Vec::new(),
            all_databases: true,
            ..args()
        })
        .expect("request");
        assert!(request.rows.is_empty());
        assert_eq!(request.all_databases_of, "servers/db1");
        assert_eq!(request.default_secret, "secrets/fleet");
        assert!(!request.role_passwords, "never passwords unless asked");
        let with_passwords = prepare(ConfigureArgs {
            databases: Vec::new(),
            all_databases: true,
            role_passwords: true,
            ..args()
        })
        .expect("request");
        assert!(with_passwords.role_passwords);
        let missing_secret = prepare(ConfigureArgs {
            databases: Vec::new(),
            all_databases: true,
            secret: None,
            ..args()
        });
        assert!(missing_secret.is_err());
    }

    #[test]
    fn rows_file_with_header_comments_and_secrets() {
        let text = "server,database,secret\n# fleet\n\ndb1, orders\ndb2,billing,db2-backup\n";
        let rows = parse_rows(text).expect("valid rows");
        assert_eq!(
            rows,
            vec![
                RowSpec {
                    server: "db1".into(),
                    database: "orders".into(),
                    secret: None
                },
                RowSpec {
                    server: "db2".into(),
                    database: "billing".into(),
                    secret: Some("db2-backup".into())
                },
            ]
        );
    }

    #[test]
    fn bad_rows_name_their_line() {
        let error = parse_rows("db1,orders\ndb2\n").unwrap_err().to_string();
        assert!(error.contains("line 2"), "{error}");
        assert!(parse_rows("# only a comment\n").is_err());
    }

    #[test]
    fn request_has_resource_names() {
        let request = prepare(args()).expect("valid args");
        assert_eq!(request.parent, "vaults/prod");
        assert_eq!(request.policy, "vaults/prod/policies/nightly");
        assert_eq!(request.default_secret, "secrets/fleet");
        assert_eq!(request.rows.len(), 2);
        assert_eq!(request.rows[1].server, "servers/db1");
        assert_eq!(request.rows[1].database, "billing");
        assert_eq!(request.rows[1].secret, "");
    }

    #[test]
    fn rows_without_any_secret_are_refused() {
        let error = prepare(ConfigureArgs {
            secret: None,
            ..args()
        })
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("row 1 (db1/orders) names no secret"),
            "{error}"
        );
    }

    #[test]
    fn readiness_table_and_exit_code() {
        let request = prepare(args()).expect("valid args");
        let response = ConfigureBackupResponse {
            results: vec![
                ConfigureBackupResult {
                    row: 0,
                    database: "orders".into(),
                    readiness: Readiness::Success as i32,
                    backup_instance: Some(BackupInstance {
                        name: "vaults/prod/backupInstances/inst-1".into(),
                        ..Default::default()
                    }),
                    error: None,
                    grant_script: None,
                },
                ConfigureBackupResult {
                    row: 1,
                    database: "billing".into(),
                    readiness: Readiness::FailedValidation as i32,
                    backup_instance: None,
                    error: Some(JobError {
                        code: pgvault_errors::ErrorCode::UserErrorMissingDBPermissions.to_string(),
                        message: "backup lacks SELECT on public.invoices".into(),
                        recommended_action: "run the grant script".into(),
                    }),
                    grant_script: Some(pgvault_proto::v1::GrantScript {
                        sql: "GRANT USAGE ON SCHEMA \"we\"\"ird\" TO \"u\";\n".into(),
                        psql: String::new(),
                        powershell: String::new(),
                    }),
                },
            ],
        };
        let rendered = readiness_table(&request.rows, &response).to_string();
        for expected in [
            "inst-1",
            "failed validation",
            "UserErrorMissingDBPermissions",
            "action: run the grant script",
        ] {
            assert!(
                rendered.contains(expected),
                "missing {expected} in\n{rendered}"
            );
        }
        let scripts = grant_scripts(&request.rows, &response);
        assert!(scripts.contains("fix for row 2 (db1/billing)"), "{scripts}");
        assert!(
            scripts.contains("GRANT USAGE ON SCHEMA \"we\"\"ird\""),
            "{scripts}"
        );
        assert_eq!(exit_code(&response), ExitCode::FAILURE);
        let all_ok = ConfigureBackupResponse {
            results: response.results[..1].to_vec(),
        };
        assert_eq!(exit_code(&all_ok), ExitCode::SUCCESS);
    }
}
