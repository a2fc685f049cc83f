//! Resolving secrets into credentials and connections: decrypting a secret's
//! latest version, building the `ConnectionSpec` handed to a lease holder,
//! and connecting to a registered server (for `ListDatabases`).

use std::time::Duration;

use pgvault_pgconn::ConnectOptions;
use pgvault_proto::v1 as pb;
use sqlx::PgExecutor;

use crate::error::{CoordinatorError, Result};
use crate::model::Server;
use crate::secrets::{Cipher, ConnParams, parse_connection_string, secret_aad};
use crate::store::secrets;

/// Decrypts and parses the latest version of secret `secret_id`.
pub async fn credentials(
    db: impl PgExecutor<'_>,
    cipher: &Cipher,
    secret_id: &str,
) -> Result<ConnParams> {
    let (version, sealed) = secrets::latest_sealed(db, secret_id).await?;
    let value = cipher.open(&sealed, &secret_aad(secret_id, version))?;
    parse_connection_string("secret", value.expose()).map_err(|_| {
        CoordinatorError::precondition(format!(
            "{}: secret \"{secret_id}\" no longer holds a valid connection string",
            pgvault_pgconn::UNSUPPORTED_FORMAT
        ))
    })
}

/// Where and as whom a worker connects. Carries the password: only for the
/// lease holder, never logged.
pub fn connection_spec(
    server: &Server,
    database: &str,
    credentials: &ConnParams,
) -> pb::ConnectionSpec {
    pb::ConnectionSpec {
        host: server.host.clone(),
        port: u32::from(server.port),
        database: database.to_string(),
        user: credentials.user.clone().unwrap_or_default(),
        password: credentials
            .password
            .as_ref()
            .map(|p| p.expose().to_string())
            .unwrap_or_default(),
        ssl_mode: credentials.ssl_mode.as_libpq().to_string(),
        trust_server_certificate: credentials.trust_server_certificate,
        ssl_root_cert: credentials
            .ssl_root_cert
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
    }
}

/// Connects to `server` as the secret's user, to `database`, honouring the
/// secret's TLS mode. The error keeps the classification (auth, database
/// not found, connection closed) for readiness checks.
pub async fn connect(
    server: &Server,
    credentials: &ConnParams,
    database: &str,
) -> std::result::Result<pgvault_pgconn::Connection, pgvault_pgconn::ConnectError> {
    let options = ConnectOptions {
        application_name: "pgvault-coordinator".into(),
        connect_timeout: Duration::from_secs(10),
    };
    pgvault_pgconn::connect(
        &credentials.with_target(&server.host, server.port, database),
        &options,
    )
    .await
}

/// [`connect`], with a failure as a `FailedPrecondition` naming the server.
pub async fn connect_or_fail(
    server: &Server,
    credentials: &ConnParams,
    database: &str,
) -> Result<pgvault_pgconn::Connection> {
    connect(server, credentials, database).await.map_err(|e| {
        CoordinatorError::precondition(format!(
            "{}: cannot connect to server \"{}\": {e}",
            e.code(),
            server.id
        ))
    })
}
