//! Connecting to the state database and applying the numbered migrations in
//! `migrations/` under a session advisory lock, so several coordinators can
//! start at once. Start-up work that must happen once (creating the first API
//! token) runs under the same lock.

use std::str::FromStr;
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

use crate::config::redacted_database_url;
use crate::error::{CoordinatorError, Result};

static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Advisory lock key held while migrating ("pgvmigr" in ASCII).
const MIGRATION_LOCK: i64 = 0x0070_6776_6d69_6772;

/// Parses the URL and checks the database answers, failing with one line that
/// names the URL without its password.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool> {
    let shown = redacted_database_url(url);
    let options = PgConnectOptions::from_str(url).map_err(|_| {
        CoordinatorError::invalid(
            "database_url",
            format!("{shown} is not a valid postgresql:// URL"),
        )
    })?;
    let options = options.application_name("pgvault-coordinator");
    let unreachable = |e: sqlx::Error| {
        CoordinatorError::Unavailable(format!(
            "cannot connect to state database {shown}: {}",
            one_line(&e)
        ))
    };
    // One direct attempt first: a pool would retry until its timeout.
    let probe = tokio::time::timeout(Duration::from_secs(15), options.connect())
        .await
        .map_err(|_| {
            CoordinatorError::Timeout(format!(
                "cannot connect to state database {shown}: timed out"
            ))
        })?
        .map_err(unreachable)?;
    probe.close().await.map_err(unreachable)?;
    Ok(PgPoolOptions::new()
        .max_connections(max_connections.max(2))
        .acquire_timeout(Duration::from_secs(10))
        .connect_lazy_with(options))
}

fn one_line(error: &sqlx::Error) -> String {
    error.to_string().replace('\n', " ")
}

/// Applies pending migrations, then runs `after` (still under the lock).
pub async fn migrate_locked<F>(pool: &PgPool, after: F) -> Result<()>
where
    F: for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, Result<()>>,
{
    let mut conn = pool.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await?;
    let outcome = async {
        MIGRATOR.run(&mut *conn).await.map_err(|e| {
            CoordinatorError::internal(format!("cannot apply state database migrations: {e}"))
        })?;
        after(&mut conn).await
    }
    .await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await;
    outcome?;
    unlocked?;
    Ok(())
}
