//! The state database: one repository module per aggregate, the only code in
//! the coordinator that writes SQL. Repository functions take any executor
//! (the pool or an open transaction), so callers compose them into one
//! transaction where the design needs it (job + outbox row, recovery point +
//! completed job); [`in_savepoint`] lets a batch in one transaction go on
//! past an item that failed.
//!
//! # Layout
//! - `migrate`: connecting, numbered migrations under an advisory lock.
//! - `vaults`, `policies`, `servers`, `secrets`, `instances`, `jobs`,
//!   `recovery_points`, `restore_targets`, `outbox`, `tokens`, `schedule_runs`,
//!   `lifecycle`, `secret_grants`, `dead_letters`, `server_protections`,
//!   `server_restores`: the
//!   repositories.
//! - `attempts`, `job_tables`: a job's attempt history and per-table
//!   progress (read by `GetJob`/`WatchJob`, never by the job list).
//! - `chunk_tasks`: chunk sub-tasks of fanned-out backups, with their leases.
//! - `paging`: opaque page tokens for keyset pagination.
//! - `agents`, `agent_instances`, `probes`: agents, their processes (and
//!   whether any is live), and the questions the API asks through them.
//! - `notifications`: notification channels and the outbox of deliveries.
//! - `keys`: vaults' keys and recovery points' data keys, as stored (wrapped).

pub mod agent_instances;
pub mod agents;
pub mod attempts;
pub mod chunk_tasks;
pub mod connection_slots;
pub mod copies;
pub mod dead_letters;
pub mod drills;
pub mod garbage;
pub mod instances;
pub mod job_tables;
pub mod jobs;
pub mod keys;
pub mod lifecycle;
pub mod metrics;
pub mod migrate;
pub mod notifications;
pub mod outbox;
pub mod paging;
pub mod policies;
pub mod probes;
pub mod recovery_points;
pub mod restore_targets;
pub mod roles;
pub mod schedule_runs;
pub mod secret_grants;
pub mod secrets;
pub mod server_protections;
pub mod server_restores;
pub mod servers;
pub mod soft_delete;
pub mod tokens;
pub mod vaults;
pub mod verify_runs;

use futures::future::BoxFuture;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use crate::error::{CoordinatorError, Result};

/// Shared handle on the state database.
#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    pub fn new(pool: PgPool) -> Self {
        Store { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }

    /// Runs `f` in a transaction: commits on `Ok`, rolls back on `Err`.
    pub async fn in_tx<T, F>(&self, f: F) -> Result<T>
    where
        T: Send,
        F: for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, Result<T>> + Send,
    {
        let mut tx = self.pool.begin().await?;
        match f(&mut tx).await {
            Ok(value) => {
                tx.commit().await?;
                Ok(value)
            }
            Err(error) => {
                if let Err(rollback) = tx.rollback().await {
                    tracing::warn!(error = %rollback, "rollback failed");
                }
                Err(error)
            }
        }
    }
}

/// Runs `f` under a savepoint of the transaction `conn` is in: what it
/// wrote stays on `Ok` and is undone on `Err`, and the transaction stays
/// usable either way, so one item's failure need not abort a batch. The
/// outer error is the savepoint's own (the transaction is lost); the inner
/// one is `f`'s.
pub async fn in_savepoint<T, F>(conn: &mut PgConnection, f: F) -> Result<Result<T>>
where
    T: Send,
    F: for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, Result<T>> + Send,
{
    let mut savepoint = sqlx::Connection::begin(conn).await?;
    match f(&mut savepoint).await {
        Ok(value) => {
            savepoint.commit().await?;
            Ok(Ok(value))
        }
        Err(error) => {
            savepoint.rollback().await?;
            Ok(Err(error))
        }
    }
}

/// Converts a stored non-negative integer, refusing corrupt negatives.
pub(crate) fn to_u64(value: i64, column: &str) -> Result<u64> {
    u64::try_from(value)
        .map_err(|_| CoordinatorError::internal(format!("negative value in column {column}")))
}

pub(crate) fn to_u32(value: i32, column: &str) -> Result<u32> {
    u32::try_from(value)
        .map_err(|_| CoordinatorError::internal(format!("negative value in column {column}")))
}

/// Saturating conversion for values going into bigint columns.
pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(crate) fn to_i32(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// Reads a stored enumeration, failing loudly on unknown text.
pub(crate) fn parse_enum<T>(text: &str, column: &str, parse: fn(&str) -> Option<T>) -> Result<T> {
    parse(text).ok_or_else(|| {
        CoordinatorError::internal(format!("unknown value \"{text}\" in column {column}"))
    })
}
