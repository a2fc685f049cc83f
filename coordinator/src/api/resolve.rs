//! Resolving secrets into credentials and connections: decrypting a secret's
//! latest version, building the `ConnectionSpec` handed to a lease holder,
//! and connecting to a registered server (for `ListDatabases`).

use std::time::Duration;

use pgvault_proto::v1 as pb;
use sqlx::PgExecutor;

use crate::error::{CoordinatorError, Result};
use crate::model::Server;
use crate::secrets::{Cipher, Credentials, parse_connection_string, secret_aad};
use crate::store::secrets;

/// Decrypts and parses the latest version of secret `secret_id`.
pub async fn credentials(
    db: impl PgExecutor<'_>,
    cipher: &Cipher,
    secret_id: &str,
) -> Result<Credentials> {
    let (version, sealed) = secrets::latest_sealed(db, secret_id).await?;
    let value = cipher.open(&sealed, &secret_aad(secret_id, version))?;
    parse_connection_string("secret", value.expose()).map_err(|_| {
        CoordinatorError::precondition(format!(
            "secret \"{secret_id}\" no longer holds a valid connection string"
        ))
    })
}

/// Where and as whom a worker connects. Carries the password: only for the
/// lease holder, never logged.
pub fn connection_spec(
    server: &Server,
    database: &str,
    credentials: &Credentials,
) -> pb::ConnectionSpec {
    pb::ConnectionSpec {
        host: server.host.clone(),
        port: u32::from(server.port),
        database: database.to_string(),
        user: credentials.user.clone(),
        password: credentials.password.expose().clone(),
        ssl_mode: credentials.ssl_mode.clone(),
    }
}

/// Connects to `server` as the secret's user, to `database`.
pub async fn connect(
    server: &Server,
    credentials: &Credentials,
    database: &str,
) -> Result<tokio_postgres::Client> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&server.host)
        .port(server.port)
        .user(&credentials.user)
        .dbname(database)
        .application_name("pgvault-coordinator")
        .connect_timeout(Duration::from_secs(10));
    if !credentials.password.expose().is_empty() {
        config.password(credentials.password.expose().as_bytes());
    }
    config.ssl_mode(match credentials.ssl_mode.as_str() {
        "disable" => tokio_postgres::config::SslMode::Disable,
        "require" => tokio_postgres::config::SslMode::Require,
        _ => tokio_postgres::config::SslMode::Prefer,
    });
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(|e| {
        let reason = match e.as_db_error() {
            Some(db) => db.message().to_string(),
            None => e.to_string(),
        };
        CoordinatorError::precondition(format!(
            "cannot connect to server \"{}\" at {}:{} as user \"{}\": {reason}",
            server.id, server.host, server.port, credentials.user
        ))
    })?;
    let server_id = server.id.clone();
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(server = %server_id, error = %error, "server connection ended");
        }
    });
    Ok(client)
}
