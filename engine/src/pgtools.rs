//! Running `pg_dump` and `pg_restore`: choosing the set that serves a
//! server (the lowest major at least the server's) or restores a point
//! (at least the source's, the target's and the archive's), passing the
//! connection through the environment (the password only in `PGPASSWORD`,
//! never in argv), and turning failures into [`EngineError`]s with the
//! tool's own message.

use std::path::Path;
use std::process::Stdio;

use pgvault_localpg::{
    CLIENT_PROGRAMS, NoToolsFor, ToolSet, choose_tool_set, find_tool_sets, major_of_version_num,
};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use super::error::{EngineError, ErrorCode};
use super::manifest::Manifest;
use super::types::{EngineOptions, PgTarget};

/// The `pg_dump`/`pg_restore` set for a server of `server_version_num`:
/// the lowest major at least the server's, among the configured
/// directories and the usual places (see [`pgvault_localpg::find_tool_sets`]).
pub(crate) fn tool_set(
    options: &EngineOptions,
    server_version_num: i64,
) -> Result<ToolSet, EngineError> {
    let major = major_of_version_num(server_version_num);
    choose(options, major).map_err(|e| unserved(e, None))
}

/// The set that restores `manifest`'s point into a server of
/// `target_version_num` (`None`: as a SQL script): the lowest major at
/// least the source's, the target's and that of the `pg_dump` that wrote
/// the schema archive (an older `pg_restore` cannot read its header).
pub(crate) fn restore_tool_set(
    options: &EngineOptions,
    manifest: &Manifest,
    target_version_num: Option<i32>,
) -> Result<ToolSet, EngineError> {
    let target_major = target_version_num.map(|v| major_of_version_num(v.into()));
    let needed = manifest.restore_tools_major(target_major);
    let source_major = major_of_version_num(manifest.server_version_num.into());
    // Named in the error when the archive, not a server, needs the tools.
    let archive =
        (needed > source_major.max(target_major.unwrap_or(0))).then_some((needed, source_major));
    choose(options, needed).map_err(|e| unserved(e, archive))
}

/// The set for servers of `major`: the lowest major at least `major`.
fn choose(options: &EngineOptions, major: u32) -> Result<ToolSet, NoToolsFor> {
    let sets = find_tool_sets(&options.pg_bin_dirs, CLIENT_PROGRAMS);
    let set = choose_tool_set(&sets, major, CLIENT_PROGRAMS, options.pg_bin_dirs_setting)?;
    tracing::debug!(needed_major = major, tools_major = set.major, dir = %set.dir.display(), "client tools chosen");
    Ok(set.clone())
}

/// No set serves the need: `archive` is `(dump tools major, source major)`
/// when it is a schema archive newer than both servers that needs them.
fn unserved(e: NoToolsFor, archive: Option<(u32, u32)>) -> EngineError {
    match (e, archive) {
        (
            NoToolsFor::TooOld {
                newest,
                newest_dir,
                setting,
                ..
            },
            Some((dump_major, source_major)),
        ) => EngineError::new(
            ErrorCode::UserErrorServerVersionUnsupported,
            format!(
                "the recovery point's schema archive was written by pg_dump {dump_major} (its server \
                 runs PostgreSQL {source_major}) and only pg_restore {dump_major} or newer reads it; \
                 the newest pg_restore found is {newest} ({}); install postgresql-client-{dump_major} \
                 or list its bin directory in {setting}",
                newest_dir.display()
            ),
        ),
        (e @ NoToolsFor::TooOld { .. }, None) => {
            EngineError::new(ErrorCode::UserErrorServerVersionUnsupported, e.to_string())
        }
        (e @ NoToolsFor::NoneFound { .. }, _) => {
            EngineError::new(ErrorCode::PgToolNotFound, e.to_string())
        }
    }
}

/// `dbname='…'` conninfo for `-d`, so odd names are never parsed as options.
fn dbname_conninfo(database: &str) -> String {
    format!(
        "dbname='{}'",
        database.replace('\\', "\\\\").replace('\'', "\\'")
    )
}

/// A `pg_dump`/`pg_restore` command connected to `database` on `target`.
pub(crate) fn command(bin_dir: &Path, tool: &str, target: &PgTarget, database: &str) -> Command {
    let mut command = Command::new(bin_dir.join(tool));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            command.env_remove(key);
        }
    }
    command
        .env("PGHOST", &target.host)
        .env("PGPORT", target.port.to_string())
        .env("PGUSER", &target.user)
        .env("PGPASSWORD", &target.password)
        .env("PGAPPNAME", "pgvault")
        .env("PGCONNECT_TIMEOUT", "15")
        .arg(format!("--dbname={}", dbname_conninfo(database)))
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if target.trust_server_certificate {
        // Encrypt without checking the certificate, as the engine's own connections do.
        command.env("PGSSLMODE", "require");
    } else if !target.ssl_mode.is_empty() {
        command.env("PGSSLMODE", &target.ssl_mode);
    }
    if let Some(roots) = root_certificates(target) {
        command.env("PGSSLROOTCERT", roots);
    }
    command
}

/// System root certificate bundles, for libpq (which, before PostgreSQL 16,
/// reads only `~/.postgresql/root.crt` unless told a file).
const SYSTEM_ROOTS: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// The root certificates libpq should verify against: the target's file,
/// or for `verify-ca`/`verify-full` without one, the system's bundle (as the
/// engine's own connections use the system's roots).
fn root_certificates(target: &PgTarget) -> Option<std::path::PathBuf> {
    if let Some(file) = &target.ssl_root_cert {
        return Some(file.clone());
    }
    let verifies = super::connect::ssl_mode(target).is_ok_and(|m| m.verifies());
    if !verifies || target.trust_server_certificate {
        return None;
    }
    SYSTEM_ROOTS
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .map(Path::to_path_buf)
}

/// Spawns `command`, mapping a missing binary to `PgToolNotFound`.
pub(crate) fn spawn(mut command: Command, tool: &str) -> Result<Child, EngineError> {
    command.spawn().map_err(|e| {
        EngineError::new(
            ErrorCode::PgToolNotFound,
            format!("cannot start {tool}: {e}"),
        )
    })
}

/// Reads the child's stderr (kept short) while it runs.
pub(crate) fn collect_stderr(child: &mut Child) -> tokio::task::JoinHandle<String> {
    let stderr = child.stderr.take();
    tokio::spawn(async move {
        let mut text = String::new();
        if let Some(mut stderr) = stderr {
            let mut buf = Vec::new();
            let _ = stderr.read_to_end(&mut buf).await;
            text = String::from_utf8_lossy(&buf).into_owned();
        }
        text
    })
}

/// Waits for the child; a non-zero exit becomes an error quoting stderr's tail.
pub(crate) async fn wait(
    mut child: Child,
    stderr: tokio::task::JoinHandle<String>,
    tool: &str,
    describe: &str,
) -> Result<(), EngineError> {
    let status = child.wait().await.map_err(|e| {
        EngineError::new(
            ErrorCode::PgToolFailed,
            format!("{tool} did not finish: {e}"),
        )
    })?;
    let stderr = stderr.await.unwrap_or_default();
    if status.success() {
        if !stderr.trim().is_empty() {
            tracing::debug!(tool, stderr = %tail(&stderr), "pg tool wrote to stderr");
        }
        return Ok(());
    }
    Err(tool_error(tool, describe, &status.to_string(), &stderr))
}

pub(crate) fn tool_error(tool: &str, describe: &str, status: &str, stderr: &str) -> EngineError {
    let code =
        if stderr.contains("server version mismatch") || stderr.contains("unsupported version") {
            ErrorCode::UserErrorServerVersionUnsupported
        } else if stderr.contains("password authentication failed") {
            ErrorCode::UserErrorDBUserAuthFailed
        } else if stderr.contains("permission denied") {
            ErrorCode::UserErrorMissingDBPermissions
        } else if stderr.contains("lock timeout") || stderr.contains("could not obtain lock") {
            ErrorCode::UserErrorLockTimeout
        } else {
            ErrorCode::PgToolFailed
        };
    EngineError::new(
        code,
        format!("{tool} failed for {describe} ({status}): {}", tail(stderr)),
    )
}

/// The last lines of a tool's output, bounded in size.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(12);
    let joined = lines[start..].join(" | ");
    joined.chars().take(2000).collect()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn conninfo_escapes_quotes_and_backslashes() {
        assert_eq!(dbname_conninfo(r"a'b\c d=1"), r"dbname='a\'b\\c d=1'");
    }

    #[test]
    fn an_archive_newer_than_every_pg_restore_is_named_with_the_fix() {
        let too_old = || NoToolsFor::TooOld {
            server_major: 17,
            newest: 15,
            newest_dir: PathBuf::from("/usr/lib/postgresql/15/bin"),
            setting: "worker.pg_bin_dirs".into(),
        };
        let e = unserved(too_old(), Some((17, 15)));
        assert_eq!(e.code, ErrorCode::UserErrorServerVersionUnsupported);
        assert_eq!(
            e.message,
            "the recovery point's schema archive was written by pg_dump 17 (its server runs \
             PostgreSQL 15) and only pg_restore 17 or newer reads it; the newest pg_restore found \
             is 15 (/usr/lib/postgresql/15/bin); install postgresql-client-17 or list its bin \
             directory in worker.pg_bin_dirs"
        );
        let e = unserved(too_old(), None);
        assert!(
            e.message
                .starts_with("server is PostgreSQL 17; the newest pg_dump found is 15"),
            "{}",
            e.message
        );
    }

    #[test]
    fn tool_errors_are_classified() {
        let e = tool_error(
            "pg_dump",
            "server h:1",
            "exit status: 1",
            "pg_dump: error: server version mismatch\n",
        );
        assert_eq!(e.code, ErrorCode::UserErrorServerVersionUnsupported);
        let e = tool_error("pg_restore", "server h:1", "exit status: 1", "x\ny\n");
        assert_eq!(e.code, ErrorCode::PgToolFailed);
        assert!(e.message.contains("x | y"));
    }
}
