//! Connecting with a [`ConnParams`]: TLS per its mode (see `tls`), the
//! connection driven on a spawned task, and failures classified by SQLSTATE
//! into [`ConnectFailure`]s by `pgvault_errors::classify_sqlstate`.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres::{Client, Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{ConnectError, ConnectFailure};
use crate::params::{ConnParams, SslMode};

/// Settings of a connection that are not in the connection string.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `application_name` when the string names none (shows in `pg_stat_activity`).
    pub application_name: String,
    /// Used when the string sets no `connect_timeout`.
    pub connect_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            application_name: "pgvault".into(),
            connect_timeout: Duration::from_secs(15),
        }
    }
}

/// An open session: the client, and the task driving its socket (ends when
/// the client is dropped).
pub struct Connection {
    pub client: Client,
    pub task: JoinHandle<()>,
}

/// Connects as `params` says. `host` and `user` must be set; the database
/// defaults to the user's name, the port to 5432.
pub async fn connect(
    params: &ConnParams,
    options: &ConnectOptions,
) -> Result<Connection, ConnectError> {
    let invalid = |message: &str| ConnectError {
        failure: ConnectFailure::InvalidParams,
        message: message.to_string(),
        sqlstate: None,
    };
    let host = params
        .host
        .as_deref()
        .ok_or_else(|| invalid("the connection string names no host"))?;
    let user = params
        .user
        .as_deref()
        .ok_or_else(|| invalid("the connection string names no user"))?;
    let mut config = Config::new();
    config
        .host(host)
        .port(params.port.unwrap_or(5432))
        .user(user)
        .dbname(params.database.as_deref().unwrap_or(user))
        .application_name(
            params
                .application_name
                .as_deref()
                .unwrap_or(&options.application_name),
        )
        .connect_timeout(params.connect_timeout.unwrap_or(options.connect_timeout));
    if let Some(password) = &params.password {
        config.password(password.expose().as_bytes());
    }
    let describe = format!("{}@{}:{}", user, host, params.port.unwrap_or(5432));
    match params.ssl_mode {
        SslMode::Disable => plain(&config, &describe).await,
        SslMode::Allow => match plain(&config, &describe).await {
            // libpq `allow`: plain first, TLS when the server insists.
            Err(e)
                if e.failure == ConnectFailure::AuthFailed
                    || e.failure == ConnectFailure::ConnectionClosed =>
            {
                tls(&mut config, PgSslMode::Require, params, &describe).await
            }
            other => other,
        },
        SslMode::Prefer => tls(&mut config, PgSslMode::Prefer, params, &describe).await,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
            tls(&mut config, PgSslMode::Require, params, &describe).await
        }
    }
}

async fn plain(config: &Config, describe: &str) -> Result<Connection, ConnectError> {
    let mut config = config.clone();
    config.ssl_mode(PgSslMode::Disable);
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| classify(&e, describe))?;
    Ok(Connection {
        client,
        task: drive(connection),
    })
}

async fn tls(
    config: &mut Config,
    mode: PgSslMode,
    params: &ConnParams,
    describe: &str,
) -> Result<Connection, ConnectError> {
    let effective = if params.trust_server_certificate {
        SslMode::Require
    } else {
        params.ssl_mode
    };
    let tls_config = crate::tls::client_config(effective, params.ssl_root_cert.as_deref())
        .map_err(|message| ConnectError {
            failure: ConnectFailure::InvalidParams,
            message,
            sqlstate: None,
        })?;
    config.ssl_mode(mode);
    let (client, connection) = config
        .connect(MakeRustlsConnect::new(tls_config))
        .await
        .map_err(|e| classify(&e, describe))?;
    Ok(Connection {
        client,
        task: drive(connection),
    })
}

fn drive<F>(connection: F) -> JoinHandle<()>
where
    F: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(error = %error, "postgres connection ended with an error");
        }
    })
}

/// Maps a connection error to what the user fixes. Public for callers that
/// classify errors of later statements the same way.
pub fn classify(error: &tokio_postgres::Error, describe: &str) -> ConnectError {
    if let Some(db) = error.as_db_error() {
        let sqlstate = db.code().code();
        let code = pgvault_errors::classify_sqlstate(sqlstate, db.message());
        return ConnectError {
            failure: ConnectFailure::of(code),
            message: format!(
                "connecting to {describe}: {} (SQLSTATE {sqlstate})",
                db.message()
            ),
            sqlstate: Some(sqlstate.to_string()),
        };
    }
    // The cause chain says why (e.g. "invalid peer certificate: UnknownIssuer"
    // under "error performing TLS handshake"); none of it holds the password.
    let mut message = format!("connecting to {describe}: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    ConnectError {
        failure: ConnectFailure::ConnectionClosed,
        message,
        sqlstate: None,
    }
}
