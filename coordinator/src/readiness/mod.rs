//! Readiness of a database for backup, checked when protection is
//! configured: after the row's own checks (region, protectable, not yet
//! protected, secret readable) the coordinator connects as the secret's user
//! ([`connection_error`]) and looks for every privilege a consistent dump
//! needs ([`privileges`], the check itself shared with agents in
//! `pgvault-probe`); what is missing comes back with a grant script
//! ([`grant_script`]) an administrator can run as is.
//!
//! Policy validation (schedules, durations) is elsewhere: `crate::validation`.

pub mod grant_script;

pub use pgvault_probe::privileges;

use crate::model::JobError;

/// The row error for a failed connection, with the classified code.
pub fn connection_error(error: &pgvault_pgconn::ConnectError) -> JobError {
    JobError::new(error.code(), error.to_string())
}
