//! Questions pgvault asks a PostgreSQL server before protecting one of its
//! databases, over an open connection: which databases it has
//! ([`databases`]) and whether the connected user may take a consistent
//! dump ([`privileges`]). The coordinator asks them of servers it reaches;
//! an agent asks them of the servers only it reaches and sends the answers
//! back in the shape of [`wire`].
//!
//! # Layout
//! - [`databases`]: databases that allow connections, server version.
//! - [`privileges`]: what a consistent dump needs and the user lacks.
//! - [`wire`]: the answers as `pgvault.v1` messages and back.

pub mod databases;
pub mod privileges;
pub mod wire;

pub use databases::{list_databases, server_version_num};
pub use privileges::{Missing, Relation};

/// The server could not answer (the catalog could not be read, the
/// connection broke). The message is safe to show: PostgreSQL never
/// repeats passwords.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {what}: {detail}")]
pub struct ProbeError {
    /// What was being asked, e.g. "check privileges".
    pub what: &'static str,
    pub detail: String,
}

impl ProbeError {
    pub(crate) fn new(what: &'static str, error: &tokio_postgres::Error) -> Self {
        let detail = match error.as_db_error() {
            Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
            None => error.to_string(),
        };
        ProbeError { what, detail }
    }
}
