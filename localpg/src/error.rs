//! The one error type of this crate.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LocalPgError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found; install PostgreSQL 15 or newer \
         (Debian: apt-get install postgresql-15) or set PGVAULT_PG_BIN_DIR to their directory"
    )]
    BinariesNotFound,
    #[error(
        "running as root, but the OS user `{0}` that PostgreSQL must run as does not exist; create it or set PGVAULT_PG_OS_USER"
    )]
    NoOsUser(String),
    #[error("`{command}` failed ({status}): {output}")]
    CommandFailed {
        command: String,
        status: String,
        output: String,
    },
    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no free loopback port: {0}")]
    NoFreePort(std::io::Error),
}
