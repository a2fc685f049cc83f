//! Restoring a point's globals (`globals.sql`, captured for servers
//! protected whole) onto a server, before its databases: the object read
//! and checked against the manifest's SHA-256, then run with the `psql`
//! of the tool set that serves the target, statement by statement without
//! stopping at errors. Objects that already exist on the target (its own
//! superuser, a role restored before) are reported as warnings; any other
//! error fails the restore with `psql`'s messages.

use std::sync::Arc;

use pgvault_datastore::Datastore;

use super::connect::connect;
use super::error::{EngineError, ErrorCode};
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
    let Some(entry) = manifest.globals else {
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
    let client = connect(target, &target.database).await?;
    let version: i64 = client
        .query_one("SELECT current_setting('server_version_num')::bigint", &[])
        .await
        .map_err(|e| {
            EngineError::new(
                ErrorCode::UserErrorServerConnectionClosed,
                format!("reading the version of {}: {e}", target.describe()),
            )
        })?
        .get(0);
    drop(client);
    let bin_dir = pgtools::bin_dir(options, version)?;
    let workdir = tempfile::tempdir()
        .map_err(|e| EngineError::internal(format!("cannot create a temporary directory: {e}")))?;
    let script = workdir.path().join("globals.sql");
    tokio::fs::write(&script, &bytes)
        .await
        .map_err(|e| EngineError::internal(format!("cannot write the globals script: {e}")))?;
    let mut command = pgtools::command(&bin_dir, "psql", target, &target.database);
    command
        .args([
            "--no-psqlrc",
            "--quiet",
            "--set",
            "ON_ERROR_STOP=0",
            "--file",
        ])
        .arg(&script)
        .stdout(std::process::Stdio::null());
    let child = pgtools::spawn(command, "psql")?;
    let output = child.wait_with_output().await.map_err(|e| {
        EngineError::new(ErrorCode::PgToolFailed, format!("psql did not finish: {e}"))
    })?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let (warnings, errors) = sort_messages(&stderr);
    if !output.status.success() || !errors.is_empty() {
        return Err(EngineError::new(
            ErrorCode::PgToolFailed,
            format!(
                "restoring the globals on {} failed ({}): {}",
                target.describe(),
                output.status,
                errors.join(" | ")
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
