//! Resolving secrets into credentials and connections: reading what a secret
//! reference names (a stored version the vault was granted, or an external
//! value), building the `ConnectionSpec` handed to a lease holder, and
//! connecting to a registered server (`server_probe::DirectProbe`).

use std::time::Duration;

use pgvault_errors::ErrorCode;
use pgvault_pgconn::ConnectOptions;
use pgvault_proto::v1 as pb;
use sqlx::PgConnection;

use crate::error::{CoordinatorError, Result};
use crate::model::{JobError, Server};
use crate::secret_ref::{ExternalSecrets, SecretRef, unusable};
use crate::secrets::{Cipher, ConnParams, Redacted, parse_connection_string, secret_aad};
use crate::store::{secret_grants, secrets};

/// The command an Owner runs to let `vault` read stored secret `secret`.
pub fn grant_command(vault: &str, secret: &str) -> String {
    format!("pgvault secret grant --vault {vault} {secret}")
}

/// The error of a vault not granted stored secret `secret`, naming the
/// command an Owner of the vault runs.
pub fn not_granted(vault: &str, secret: &str) -> JobError {
    JobError::new(
        ErrorCode::UserErrorMissingPermissionsOnSecretStore,
        format!(
            "vault \"{vault}\" has no access to secret \"{secret}\"; an Owner of the vault grants it with: {}",
            grant_command(vault, secret)
        ),
    )
}

/// Reads and parses what `reference` names, as of now (every job calls this
/// again, so a new version or a changed file is picked up without
/// reconfiguring). With `vault`, a stored secret must be granted to it.
/// Unusable references are `SecretUnusable` errors with the row/job code:
/// `UserErrorSecretNotFound`, `UserErrorMissingPermissionsOnSecretStore`,
/// `UserErrorInvalidSecret`; none ever holds the value.
pub async fn reference_credentials(
    conn: &mut PgConnection,
    cipher: &Cipher,
    external: &ExternalSecrets,
    vault: Option<&str>,
    reference: &SecretRef,
) -> Result<ConnParams> {
    let value: Redacted<String> = match reference {
        SecretRef::Stored { id, version } => {
            let Some(meta) = secrets::find(&mut *conn, id).await? else {
                return Err(unusable(
                    ErrorCode::UserErrorSecretNotFound,
                    format!("secret \"{id}\" not found"),
                ));
            };
            if let Some(vault) = vault
                && !secret_grants::is_granted(&mut *conn, vault, id).await?
            {
                return Err(CoordinatorError::SecretUnusable(Box::new(not_granted(
                    vault, id,
                ))));
            }
            let (version, sealed) = match version {
                None => secrets::latest_sealed(&mut *conn, id).await?,
                Some(v) => match secrets::sealed_version(&mut *conn, id, *v).await? {
                    Some(sealed) => (*v, sealed),
                    None => {
                        return Err(unusable(
                            ErrorCode::UserErrorSecretNotFound,
                            format!(
                                "secret \"{id}\" has no version {v} (its latest is {}); reference an existing version (secret://{id}/VERSION) or the latest (secret://{id})",
                                meta.latest_version
                            ),
                        ));
                    }
                },
            };
            cipher
                .open(&sealed, &secret_aad(id, version))
                .map_err(|e| match e {
                    CoordinatorError::FailedPrecondition(m) => unusable(
                        ErrorCode::UserErrorInvalidSecret,
                        format!("{reference}: {m}; start the coordinator with the master key the secret was stored with, or put the secret again"),
                    ),
                    other => other,
                })?
        }
        external_ref => external.read(external_ref)?,
    };
    parse_connection_string("secret", value.expose()).map_err(|e| {
        unusable(
            ErrorCode::UserErrorInvalidSecret,
            format!("{reference} does not hold a usable connection string: {e}"),
        )
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
