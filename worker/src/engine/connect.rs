//! Opening tokio-postgres connections to a [`PgTarget`], with errors mapped to
//! job error codes. TLS is not compiled in: `prefer` falls back to plain
//! connections and `require`/`verify-*` fail with a clear code.

use std::time::Duration;

use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config, NoTls};

use super::error::{EngineError, ErrorCode};
use super::types::PgTarget;

/// Connects to `database` on the target's server and drives the connection
/// on a background task.
pub(crate) async fn connect(target: &PgTarget, database: &str) -> Result<Client, EngineError> {
    let mut config = Config::new();
    config
        .host(&target.host)
        .port(target.port)
        .user(&target.user)
        .password(target.password.as_bytes())
        .dbname(database)
        .application_name("pgvault")
        .connect_timeout(Duration::from_secs(15))
        .ssl_mode(ssl_mode(target)?);
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| EngineError::from_pg(&e, &target.describe_db(database)))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "postgres connection ended with an error");
        }
    });
    Ok(client)
}

fn ssl_mode(target: &PgTarget) -> Result<SslMode, EngineError> {
    match target.ssl_mode.as_str() {
        "" | "prefer" | "allow" => Ok(SslMode::Prefer),
        "disable" => Ok(SslMode::Disable),
        other => Err(EngineError::new(
            ErrorCode::UserErrorTlsUnsupported,
            format!(
                "sslmode={other} for {} needs TLS, which this worker build does not support",
                target.describe()
            ),
        )),
    }
}

/// Runs a statement, mapping its error against `describe`.
pub(crate) async fn exec(client: &Client, sql: &str, describe: &str) -> Result<(), EngineError> {
    client
        .batch_execute(sql)
        .await
        .map_err(|e| EngineError::from_pg(&e, describe))
}
