//! Probes: the questions the API asks a server only this agent reaches
//! (its databases; whether a user may take a consistent dump). An offer on
//! the stream names a probe; the agent claims it (`ClaimProbe`, which hands
//! the connection with its password to the claimer only), connects with
//! `pgvault-pgconn`, asks with `pgvault-probe` and answers
//! (`CompleteProbe`). A failure is answered as the coordinator words it for
//! a server it reaches itself: a connection failure with the code its
//! SQLSTATE classifies to and the driver's message, a server that cannot
//! answer as `Internal` with the probe's message. The connection, and so
//! the password, never reaches a log line.

use std::sync::Arc;
use std::time::Duration;

use pgvault_errors::ErrorCode;
use pgvault_pgconn::{ConnParams, ConnectOptions, Password, SslMode};
use pgvault_proto::v1::agent_service_client::AgentServiceClient;
use pgvault_proto::v1::{
    ClaimProbeRequest, CompleteProbeRequest, ConnectionSpec, JobError, ListDatabasesResult,
    MissingPrivileges, Probe, ReadinessResult, complete_probe_request, probe,
};
use pgvault_worker::runner::AuthChannel;
use tokio::sync::Semaphore;
use tonic::Code;

/// Probes answered at once; more wait (they take milliseconds each).
const AT_ONCE: usize = 4;
/// A server that does not answer within this is reported as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts at delivering an answer while the coordinator is unreachable.
const COMPLETE_ATTEMPTS: u32 = 5;

/// Answers probe offers. Cheap to clone.
#[derive(Clone)]
pub struct Probes {
    client: AgentServiceClient<AuthChannel>,
    instance_id: String,
    permits: Arc<Semaphore>,
}

impl Probes {
    pub fn new(channel: AuthChannel, instance_id: String) -> Probes {
        Probes {
            client: AgentServiceClient::new(channel),
            instance_id,
            permits: Arc::new(Semaphore::new(AT_ONCE)),
        }
    }

    /// Answers the offered probe in the background.
    pub fn offer(&self, probe_id: String) {
        let probes = self.clone();
        tokio::spawn(async move {
            let Ok(_permit) = probes.permits.acquire().await else {
                return;
            };
            probes.answer(probe_id).await;
        });
    }

    async fn answer(&self, probe_id: String) {
        let request = ClaimProbeRequest {
            probe_id: probe_id.clone(),
            instance_id: self.instance_id.clone(),
        };
        let claim = match self.client.clone().claim_probe(request).await {
            Ok(response) => response.into_inner(),
            Err(status) => {
                tracing::warn!(probe_id = %probe_id, code = ?status.code(), error = %status.message(), "cannot claim probe; the coordinator offers it again");
                return;
            }
        };
        if !claim.claimed {
            tracing::debug!(probe_id = %probe_id, reason = %claim.reason, "probe not claimed");
            return;
        }
        let Some(probe) = claim.probe else {
            tracing::warn!(probe_id = %probe_id, "claimed probe carried nothing to ask");
            return;
        };
        let result = run(probe).await;
        if let complete_probe_request::Result::Error(error) = &result {
            tracing::info!(probe_id = %probe_id, code = %error.code, message = %error.message, "probe answered with an error");
        } else {
            tracing::info!(probe_id = %probe_id, "probe answered");
        }
        self.complete(probe_id, result).await;
    }

    async fn complete(&self, probe_id: String, result: complete_probe_request::Result) {
        let request = CompleteProbeRequest {
            probe_id: probe_id.clone(),
            result: Some(result),
        };
        let mut delay = Duration::from_millis(200);
        for attempt in 1..=COMPLETE_ATTEMPTS {
            match self.client.clone().complete_probe(request.clone()).await {
                Ok(_) => return,
                Err(status)
                    if matches!(status.code(), Code::Unavailable | Code::Unknown)
                        && attempt < COMPLETE_ATTEMPTS =>
                {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(status) => {
                    tracing::warn!(probe_id = %probe_id, code = ?status.code(), error = %status.message(), "the coordinator did not take the probe's answer");
                    return;
                }
            }
        }
    }
}

/// Asks the server what `probe` asks.
pub async fn run(probe: Probe) -> complete_probe_request::Result {
    use complete_probe_request::Result as Answer;
    let Some(spec) = probe.connection else {
        return Answer::Error(error(
            ErrorCode::Internal,
            "the probe carried no connection; the coordinator and agent versions may differ",
        ));
    };
    let Some(kind) = probe.kind else {
        return Answer::Error(error(
            ErrorCode::Internal,
            "the probe asks something this agent does not know; upgrade pgvault-agent",
        ));
    };
    let params = match conn_params(spec) {
        Ok(params) => params,
        Err(e) => return Answer::Error(e),
    };
    let options = ConnectOptions {
        application_name: "pgvault-agent".into(),
        connect_timeout: CONNECT_TIMEOUT,
    };
    let connection = match pgvault_pgconn::connect(&params, &options).await {
        Ok(connection) => connection,
        Err(e) => return Answer::Error(error(e.code(), e.to_string())),
    };
    let client = &connection.client;
    let answer = match kind {
        probe::Kind::ListDatabases(_) => pgvault_probe::list_databases(client)
            .await
            .map(|databases| Answer::Databases(ListDatabasesResult { databases })),
        probe::Kind::Readiness(_) => readiness(client).await,
    };
    answer.unwrap_or_else(|e| Answer::Error(error(ErrorCode::Internal, e.to_string())))
}

async fn readiness(
    client: &tokio_postgres::Client,
) -> Result<complete_probe_request::Result, pgvault_probe::ProbeError> {
    let missing = pgvault_probe::privileges::check(client).await?;
    let server_version_num = pgvault_probe::server_version_num(client).await?;
    Ok(complete_probe_request::Result::Readiness(ReadinessResult {
        missing: Some(MissingPrivileges::from(&missing)),
        server_version_num,
    }))
}

/// What the coordinator handed over, as a connection to make. The same
/// keys a worker's engine honours.
fn conn_params(spec: ConnectionSpec) -> Result<ConnParams, JobError> {
    let ssl_mode = if spec.ssl_mode.is_empty() {
        SslMode::default()
    } else {
        SslMode::parse(&spec.ssl_mode).ok_or_else(|| {
            error(
                ErrorCode::UserErrorInvalidConnectionSettings,
                format!(
                    "ssl mode {:?} is not one of disable, allow, prefer, require, verify-ca, verify-full",
                    spec.ssl_mode
                ),
            )
        })?
    };
    let port = u16::try_from(spec.port).map_err(|_| {
        error(
            ErrorCode::Internal,
            format!("server port {} is out of range", spec.port),
        )
    })?;
    let some = |s: String| (!s.is_empty()).then_some(s);
    Ok(ConnParams {
        host: some(spec.host),
        port: Some(port),
        database: some(spec.database),
        user: some(spec.user),
        password: some(spec.password).map(Password::new),
        ssl_mode,
        trust_server_certificate: spec.trust_server_certificate,
        ssl_root_cert: some(spec.ssl_root_cert).map(Into::into),
        application_name: None,
        connect_timeout: None,
    })
}

/// A catalogue error, with the code's action, as the coordinator builds one.
fn error(code: ErrorCode, message: impl Into<String>) -> JobError {
    JobError {
        code: code.as_str().to_string(),
        message: message.into(),
        recommended_action: code.recommended_action().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ConnectionSpec {
        ConnectionSpec {
            host: "10.1.2.3".into(),
            port: 5432,
            database: "billing".into(),
            user: "backup".into(),
            password: "pw".into(),
            ssl_mode: "verify-full".into(),
            trust_server_certificate: false,
            ssl_root_cert: "/etc/ca.pem".into(),
        }
    }

    #[test]
    fn a_connection_spec_becomes_the_parameters_a_worker_would_use() {
        let params = conn_params(spec()).unwrap();
        assert_eq!(params.host.as_deref(), Some("10.1.2.3"));
        assert_eq!(params.port, Some(5432));
        assert_eq!(params.database.as_deref(), Some("billing"));
        assert_eq!(params.user.as_deref(), Some("backup"));
        assert_eq!(params.password.as_ref().map(|p| p.expose()), Some("pw"));
        assert_eq!(params.ssl_mode, SslMode::VerifyFull);
        assert_eq!(params.ssl_root_cert, Some("/etc/ca.pem".into()));
        let plain = conn_params(ConnectionSpec {
            ssl_mode: String::new(),
            ssl_root_cert: String::new(),
            password: String::new(),
            ..spec()
        })
        .unwrap();
        assert_eq!(plain.ssl_mode, SslMode::Prefer);
        assert!(plain.password.is_none() && plain.ssl_root_cert.is_none());
    }

    #[test]
    fn an_unusable_spec_is_an_error_with_its_catalogue_action() {
        let e = conn_params(ConnectionSpec {
            ssl_mode: "sometimes".into(),
            ..spec()
        })
        .unwrap_err();
        assert_eq!(e.code, "UserErrorInvalidConnectionSettings");
        assert_eq!(
            e.recommended_action,
            ErrorCode::UserErrorInvalidConnectionSettings.recommended_action()
        );
        assert!(!e.message.contains("pw"));
    }

    #[tokio::test]
    async fn a_probe_without_a_connection_or_a_question_is_answered_with_an_error() {
        let answer = run(Probe {
            probe_id: "p".into(),
            connection: None,
            kind: Some(probe::Kind::ListDatabases(Default::default())),
        })
        .await;
        assert!(matches!(answer, complete_probe_request::Result::Error(e) if e.code == "Internal"));
        let answer = run(Probe {
            probe_id: "p".into(),
            connection: Some(spec()),
            kind: None,
        })
        .await;
        match answer {
            complete_probe_request::Result::Error(e) => {
                assert!(e.message.contains("upgrade pgvault-agent"), "{e:?}")
            }
            other => panic!("{other:?}"),
        }
    }
}
