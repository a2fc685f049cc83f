//! The server's globals for a whole-server restore: `pg_dumpall
//! --globals-only --no-role-passwords` from the tool set that serves the
//! server — roles with their attributes and memberships, role and
//! role-in-database settings, tablespaces; no password (the catalog
//! read is `pg_roles`, so a non-superuser may take it) unless the
//! protection asked for them (encrypted vaults only; then `pg_authid` is
//! read, which takes a superuser) — stored as
//! `globals.sql` next to the point's other objects, with its size and
//! SHA-256 in the manifest. It is written before the manifest, so a point
//! naming it is only reported once it is durable like the rest.

use std::path::Path;
use std::sync::Arc;

use pgvault_datastore::Datastore;

use super::error::{EngineError, ErrorCode};
use super::manifest::{GLOBALS_FILE, ObjectEntry};
use super::objects::{put_small, seal_small};
use super::pgtools;
use super::seal::PointKey;
use super::stages::StageClock;
use super::types::PgTarget;

/// The largest globals script kept (roles and tablespaces of any real
/// server are far below it).
const MAX_GLOBALS_BYTES: usize = 64 * 1024 * 1024;

/// Dumps the globals of `source`'s server with the tools in `bin_dir`
/// into `prefix`/`globals.sql`; the roles' passwords only when
/// `role_passwords` (which takes a superuser: they are in `pg_authid`).
pub(crate) async fn dump(
    bin_dir: &Path,
    source: &PgTarget,
    role_passwords: bool,
    store: &Datastore,
    prefix: &str,
    key: Option<&PointKey>,
    clock: &Arc<StageClock>,
) -> Result<ObjectEntry, EngineError> {
    let mut command = pgtools::command(bin_dir, "pg_dumpall", source, &source.database);
    command
        .args(dump_args(role_passwords))
        .stdout(std::process::Stdio::piped());
    let child = pgtools::spawn(command, "pg_dumpall")?;
    let output = child.wait_with_output().await.map_err(|e| {
        EngineError::new(
            ErrorCode::PgToolFailed,
            format!("pg_dumpall did not finish: {e}"),
        )
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if role_passwords && stderr.contains("pg_authid") {
            return Err(EngineError::new(
                ErrorCode::UserErrorMissingDBPermissions,
                format!(
                    "capturing the roles' passwords of {} reads pg_authid, which only a superuser may: \
                     connect the server's protection with a superuser's secret, or configure it \
                     without --role-passwords",
                    source.describe()
                ),
            ));
        }
        return Err(pgtools::tool_error(
            "pg_dumpall",
            &source.describe(),
            &output.status.to_string(),
            &stderr,
        ));
    }
    check_size(output.stdout.len())?;
    let stored = seal_small(key, GLOBALS_FILE, output.stdout, clock).await?;
    put_small(store, prefix, GLOBALS_FILE, stored, clock).await
}

/// `pg_dumpall`'s arguments: the globals, and the passwords only when asked.
fn dump_args(role_passwords: bool) -> Vec<&'static str> {
    let mut args = vec!["--globals-only"];
    if !role_passwords {
        args.push("--no-role-passwords");
    }
    args
}

fn check_size(bytes: usize) -> Result<(), EngineError> {
    if bytes > MAX_GLOBALS_BYTES {
        return Err(EngineError::new(
            ErrorCode::PgToolFailed,
            format!(
                "pg_dumpall --globals-only wrote {bytes} bytes, more than the {MAX_GLOBALS_BYTES} a globals script may have"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_left_out_unless_asked() {
        assert_eq!(dump_args(false), ["--globals-only", "--no-role-passwords"]);
        assert_eq!(dump_args(true), ["--globals-only"]);
    }

    #[test]
    fn a_globals_script_beyond_the_bound_is_refused() {
        assert!(check_size(1024).is_ok());
        let error = check_size(MAX_GLOBALS_BYTES + 1).unwrap_err();
        assert_eq!(error.code, ErrorCode::PgToolFailed);
        assert!(error.message.contains("globals"), "{}", error.message);
    }
}
