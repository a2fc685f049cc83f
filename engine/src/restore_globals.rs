//! Restoring a point's globals (`globals.sql`, captured for servers
//! protected whole) onto a server, before its databases: the object read
//! and checked against the manifest's SHA-256, adjusted
//! ([`super::globals_script`]: tablespaces left out when asked, roles the
//! target has keep their password), then fed to the `psql` of the tool
//! set that serves the target and the point, statement by statement
//! without stopping at errors. Objects that already exist on the target
//! (its own superuser, a role restored before) are reported as warnings;
//! a tablespace whose directory the target lacks fails the restore naming
//! it and the fix; any other error fails it with `psql`'s messages.

use std::sync::Arc;

use pgvault_datastore::Datastore;

use tokio::io::AsyncWriteExt;

use super::connect::connect;
use super::cpu::pool;
use super::error::{EngineError, ErrorCode};
use super::globals_script;
use super::objects::{get_small, open_small};
use super::pgtools;
use super::recovery_point::read_manifest;
use super::stages::StageClock;
use super::types::{EngineOptions, PgTarget};

/// What restoring the globals left to say.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GlobalsRestored {
    /// One line per object that already existed (left as it was, its
    /// attributes and memberships applied over it).
    pub warnings: Vec<String>,
}

/// Runs the globals of the point at `prefix` on `target` (connected to
/// `target.database`).
pub async fn restore_globals(
    target: &PgTarget,
    store: &Datastore,
    prefix: &str,
    expected_manifest_sha256: Option<&str>,
    options: &EngineOptions,
) -> Result<GlobalsRestored, EngineError> {
    let clock = Arc::new(StageClock::default());
    let key = options.encryption.as_ref();
    let manifest = read_manifest(store, prefix, expected_manifest_sha256, key, &clock).await?;
    let Some(entry) = manifest.globals.clone() else {
        return Err(EngineError::new(
            ErrorCode::ManifestInvalid,
            format!(
                "the recovery point of \"{}\" holds no globals: it was taken before its server was protected whole (pgvault backup configure --all-databases)",
                manifest.database
            ),
        ));
    };
    let (bytes, sha) = get_small(store, prefix, &entry.path, &clock).await?;
    if !sha.eq_ignore_ascii_case(&entry.sha256) {
        return Err(EngineError::new(
            ErrorCode::ChecksumMismatch,
            format!(
                "checksum mismatch for object {}: expected sha256 {}, read {sha}",
                entry.path, entry.sha256
            ),
        ));
    }
    let bytes = open_small(key, &entry.path, bytes, &clock).await?;
    // Up to 64 MiB of text: checked and scanned on the CPU pool, never on
    // the runtime's threads.
    let script = pool()
        .run(move || String::from_utf8(bytes.to_vec()))
        .await?
        .map_err(|_| {
            EngineError::new(
                ErrorCode::ManifestInvalid,
                format!("the globals script {} is not UTF-8 text", entry.path),
            )
        })?;
    let client = connect(target, &target.database).await?;
    let asked = |e: tokio_postgres::Error| {
        EngineError::new(
            ErrorCode::UserErrorServerConnectionClosed,
            format!(
                "reading the version and roles of {}: {e}",
                target.describe()
            ),
        )
    };
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await
        .map_err(asked)?
        .get(0);
    let existing: Vec<String> = client
        .query("SELECT rolname::text FROM pg_catalog.pg_roles", &[])
        .await
        .map_err(asked)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    drop(client);
    // psql at least as new as the pg_dumpall that wrote the script (its
    // meta-commands) and the target.
    let bin_dir = pgtools::restore_tool_set(options, &manifest, Some(version))?.dir;
    let skip_tablespaces = options.skip_tablespaces;
    let (tablespaces, passwords, script) = pool()
        .run(move || {
            (
                globals_script::tablespaces(&script),
                globals_script::passwords(&script),
                globals_script::prepare(&script, skip_tablespaces, &existing),
            )
        })
        .await?;
    // Through stdin: a script with password hashes never lands on disk.
    let mut command = pgtools::command(&bin_dir, "psql", target, &target.database);
    command
        .args([
            "--no-psqlrc",
            "--quiet",
            "--set",
            "ON_ERROR_STOP=0",
            "--file",
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null());
    let mut child = pgtools::spawn(command, "psql")?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| EngineError::internal("psql has no stdin"))?;
    let fed = async move {
        let written = stdin.write_all(script.as_bytes()).await;
        drop(stdin);
        written
    };
    let (fed, output) = tokio::join!(fed, child.wait_with_output());
    let output = output.map_err(|e| {
        EngineError::new(ErrorCode::PgToolFailed, format!("psql did not finish: {e}"))
    })?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let (warnings, errors) = sort_messages(&stderr);
    let warnings: Vec<String> = warnings
        .iter()
        .map(|w| globals_script::redact(w, &passwords))
        .collect();
    let errors: Vec<String> = errors
        .iter()
        .map(|e| globals_script::redact(e, &passwords))
        .collect();
    if let Err(e) = fed
        && errors.is_empty()
    {
        return Err(EngineError::new(
            ErrorCode::PgToolFailed,
            format!("feeding the globals script to psql failed: {e}"),
        ));
    }
    if !output.status.success() || !errors.is_empty() {
        let describe = target.describe();
        let explained: Vec<String> = errors
            .iter()
            .filter_map(|e| globals_script::explain(e, &tablespaces, &describe))
            .collect();
        let detail = if explained.is_empty() {
            errors.join(" | ")
        } else {
            explained.join(" | ")
        };
        let code = if explained.is_empty() {
            ErrorCode::PgToolFailed
        } else {
            ErrorCode::UserErrorTablespaceLocationMissing
        };
        return Err(EngineError::new(
            code,
            format!(
                "restoring the globals on {describe} failed ({}): {detail}",
                output.status
            ),
        ));
    }
    for warning in &warnings {
        tracing::warn!(target = %target.describe(), warning = %warning, "global object already exists on the target; kept");
    }
    Ok(GlobalsRestored { warnings })
}

/// psql's `ERROR:` lines: objects that already exist (warnings), and the
/// rest (errors).
fn sort_messages(stderr: &str) -> (Vec<String>, Vec<String>) {
    let mut warnings = Vec::new();
    let mut errors = Vec::new();
    for line in stderr.lines() {
        let Some((_, message)) = line.split_once("ERROR:") else {
            continue;
        };
        let message = message.trim().to_string();
        if message.ends_with("already exists") {
            warnings.push(message);
        } else {
            errors.push(message);
        }
    }
    (warnings, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn existing_objects_are_warnings_other_errors_are_errors() {
        let stderr = "psql:/tmp/g.sql:14: ERROR:  role \"postgres\" already exists\n\
                      psql:/tmp/g.sql:20: ERROR:  directory \"/x\" does not exist\n\
                      psql:/tmp/g.sql:21: NOTICE:  something\n";
        let (warnings, errors) = sort_messages(stderr);
        assert_eq!(warnings, ["role \"postgres\" already exists"]);
        assert_eq!(errors, ["directory \"/x\" does not exist"]);
    }
}
