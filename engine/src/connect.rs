//! Opening tokio-postgres connections to a [`PgTarget`] through
//! `pgvault_pgconn` (TLS per the target's sslmode: `prefer` and `require`
//! encrypt, `verify-ca`/`verify-full` check the certificate against the
//! target's root certificates or the system's), with failures mapped to job
//! error codes.

use std::time::Duration;

use pgvault_pgconn::{ConnParams, ConnectError, ConnectOptions, Password, SslMode};
use tokio_postgres::Client;

use super::error::{EngineError, ErrorCode};
use super::types::PgTarget;

/// Connects to `database` on the target's server; the connection is driven
/// on a background task that ends when the client is dropped.
pub(crate) async fn connect(target: &PgTarget, database: &str) -> Result<Client, EngineError> {
    let params = conn_params(target, database)?;
    let options = ConnectOptions {
        application_name: "pgvault".into(),
        connect_timeout: Duration::from_secs(15),
    };
    pgvault_pgconn::connect(&params, &options)
        .await
        .map(|connection| connection.client)
        .map_err(|e| connect_error(e, &target.describe_db(database)))
}

/// The sslmode a target asks for (`""` is `prefer`).
pub(crate) fn ssl_mode(target: &PgTarget) -> Result<SslMode, EngineError> {
    if target.ssl_mode.is_empty() {
        return Ok(SslMode::Prefer);
    }
    SslMode::parse(&target.ssl_mode).ok_or_else(|| {
        EngineError::new(
            ErrorCode::UserErrorInvalidConnectionSettings,
            format!(
                "sslmode \"{}\" for {} is not one of disable, allow, prefer, require, verify-ca, verify-full",
                target.ssl_mode,
                target.describe()
            ),
        )
    })
}

fn conn_params(target: &PgTarget, database: &str) -> Result<ConnParams, EngineError> {
    Ok(ConnParams {
        host: Some(target.host.clone()),
        port: Some(target.port),
        database: Some(database.to_string()),
        user: Some(target.user.clone()),
        password: (!target.password.is_empty()).then(|| Password::new(target.password.clone())),
        ssl_mode: ssl_mode(target)?,
        trust_server_certificate: target.trust_server_certificate,
        ssl_root_cert: target.ssl_root_cert.clone(),
        application_name: None,
        connect_timeout: None,
    })
}

/// A classified connection failure as an engine error; messages from
/// `pgvault_pgconn` never contain the password.
fn connect_error(error: ConnectError, describe: &str) -> EngineError {
    let code = error.code();
    let message = if error.message.contains(describe) {
        error.message
    } else {
        format!("{describe}: {}", error.message)
    };
    EngineError::new(code, message)
}

/// Runs a statement, mapping its error against `describe`.
pub(crate) async fn exec(client: &Client, sql: &str, describe: &str) -> Result<(), EngineError> {
    client
        .batch_execute(sql)
        .await
        .map_err(|e| EngineError::from_pg(&e, describe))
}

#[cfg(test)]
mod tests {
    use pgvault_pgconn::ConnectFailure;

    use super::*;

    fn target(mode: &str) -> PgTarget {
        PgTarget {
            host: "db.internal".into(),
            port: 5433,
            database: "shop".into(),
            user: "backup".into(),
            password: "pw".into(),
            ssl_mode: mode.into(),
            trust_server_certificate: false,
            ssl_root_cert: None,
        }
    }

    #[test]
    fn sslmodes_read_like_libpq_and_bad_ones_are_refused() {
        assert_eq!(ssl_mode(&target("")).unwrap(), SslMode::Prefer);
        assert_eq!(
            ssl_mode(&target("verify-full")).unwrap(),
            SslMode::VerifyFull
        );
        let e = ssl_mode(&target("sometimes")).unwrap_err();
        assert_eq!(e.code, ErrorCode::UserErrorInvalidConnectionSettings);
        assert!(e.message.contains("sometimes") && e.message.contains("verify-full"));
    }

    #[test]
    fn failures_keep_their_meaning() {
        let e = connect_error(
            ConnectError {
                failure: ConnectFailure::Other,
                message: "the database system is starting up".into(),
                sqlstate: Some("57P03".into()),
            },
            "server h:1, database \"d\"",
        );
        assert_eq!(e.code, ErrorCode::UserErrorServerConnectionClosed);
        assert!(e.message.starts_with("server h:1"), "{}", e.message);
        let e = connect_error(
            ConnectError {
                failure: ConnectFailure::InvalidParams,
                message: "cannot read root certificate file /x.pem".into(),
                sqlstate: None,
            },
            "server h:1, database \"d\"",
        );
        assert_eq!(e.code, ErrorCode::UserErrorInvalidConnectionSettings);
    }
}
