//! The agent's one stream to the coordinator (`AgentService.Connect`),
//! dialled out and kept open: `hello` first, then the coordinator's
//! `welcome`, then an `AgentStatus` every status interval and whenever a
//! task starts or ends, while task offers go to [`Offers`] and probe offers
//! to [`Probes`].
//!
//! Any error ends the session and the agent dials again after a
//! [`Backoff`] wait, logging why; a session that got its welcome starts the
//! waits over. A refusal — a token that is not this agent's, a protocol
//! version the coordinator does not speak, a coordinator without the agent
//! service — is logged as an error naming the fix and retried slowly. Tasks
//! do not depend on the stream: they heartbeat and report with unary calls,
//! so they keep running while it is down.

use std::time::Duration;

use pgvault_proto::v1::agent_service_client::AgentServiceClient;
use pgvault_proto::v1::{
    AgentHello, AgentMessage, AgentStatus, CoordinatorMessage, agent_message, coordinator_message,
};
use pgvault_worker::runner::AuthChannel;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status, Streaming};

use crate::backoff::Backoff;
use crate::offers::Offers;
use crate::probes::Probes;

/// How long the coordinator has to answer `hello`.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(30);
/// Status interval when the welcome names none.
const DEFAULT_STATUS_INTERVAL: Duration = Duration::from_secs(5);

/// Why a session ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// The agent is done: the stream was closed on purpose.
    Closed,
    /// The stream ended or failed for a passing reason.
    Dropped { welcomed: bool, reason: String },
    /// The coordinator refused this agent; retrying cannot help soon.
    Refused(String),
}

/// The stream's owner.
pub struct Connection {
    client: AgentServiceClient<AuthChannel>,
    hello: AgentHello,
    offers: Offers,
    probes: Probes,
}

impl Connection {
    pub fn new(channel: AuthChannel, hello: AgentHello, offers: Offers, probes: Probes) -> Self {
        Connection {
            client: AgentServiceClient::new(channel),
            hello,
            offers,
            probes,
        }
    }

    /// Keeps a stream open until `close`. After `stop_offers` (shutdown
    /// began) offers are declined, but statuses go on so the coordinator
    /// sees the running tasks until they are reported.
    pub async fn run(mut self, stop_offers: CancellationToken, close: CancellationToken) {
        let mut backoff = Backoff::default();
        loop {
            let ended = tokio::select! {
                _ = close.cancelled() => Ended::Closed,
                ended = self.session(&stop_offers) => ended,
            };
            let delay = match ended {
                Ended::Closed => {
                    tracing::info!("stream to the coordinator closed");
                    return;
                }
                Ended::Dropped { welcomed, reason } => {
                    if welcomed {
                        backoff.reset();
                    }
                    let delay = backoff.next_delay();
                    tracing::warn!(%reason, retry_in_ms = delay.as_millis() as u64, "lost the stream to the coordinator; reconnecting");
                    delay
                }
                Ended::Refused(reason) => {
                    let delay = backoff.refused_delay();
                    tracing::error!(%reason, retry_in_s = delay.as_secs(), "the coordinator refused this agent; fix the cause, the agent retries on its own");
                    delay
                }
            };
            tokio::select! {
                _ = close.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// One stream, from hello to its end.
    async fn session(&mut self, stop_offers: &CancellationToken) -> Ended {
        let (outbound, receiver) = mpsc::channel::<AgentMessage>(16);
        let hello = message(agent_message::Kind::Hello(self.hello.clone()));
        if outbound.send(hello).await.is_err() {
            return dropped(false, "the outbound stream closed".into());
        }
        let mut client = self.client.clone();
        let welcome = tokio::time::timeout(WELCOME_TIMEOUT, async {
            let mut inbound = client
                .connect(ReceiverStream::new(receiver))
                .await?
                .into_inner();
            let first = inbound.message().await?;
            Ok::<_, Status>((inbound, first))
        })
        .await;
        let (mut inbound, first) = match welcome {
            Err(_) => return dropped(false, "no welcome from the coordinator within 30 s".into()),
            Ok(Err(status)) => return from_status(false, &status),
            Ok(Ok(answer)) => answer,
        };
        let interval = match first {
            None => {
                return dropped(
                    false,
                    "the coordinator ended the stream before its welcome".into(),
                );
            }
            Some(CoordinatorMessage {
                kind: Some(coordinator_message::Kind::Welcome(welcome)),
            }) => {
                tracing::info!(
                    agent = %self.hello.agent_id,
                    instance_id = %self.hello.instance_id,
                    coordinator_version = %welcome.coordinator_version,
                    status_interval_s = welcome.status_interval_seconds,
                    "connected to the coordinator"
                );
                match welcome.status_interval_seconds {
                    0 => DEFAULT_STATUS_INTERVAL,
                    seconds => Duration::from_secs(u64::from(seconds)),
                }
            }
            Some(_) => {
                return dropped(
                    false,
                    "the coordinator's first message was not a welcome".into(),
                );
            }
        };
        self.serve(&outbound, &mut inbound, interval, stop_offers)
            .await
    }

    /// Statuses up, offers down, until the stream ends.
    async fn serve(
        &mut self,
        outbound: &mpsc::Sender<AgentMessage>,
        inbound: &mut Streaming<CoordinatorMessage>,
        interval: Duration,
        stop_offers: &CancellationToken,
    ) -> Ended {
        let mut changes = self.offers.changes();
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                changed = changes.changed() => {
                    if changed.is_err() {
                        return Ended::Closed;
                    }
                }
                received = inbound.message() => {
                    match received {
                        Ok(Some(message)) => self.receive(message, stop_offers),
                        Ok(None) => return dropped(true, "the coordinator ended the stream".into()),
                        Err(status) => return from_status(true, &status),
                    }
                    continue;
                }
            }
            changes.borrow_and_update();
            let status = AgentStatus {
                running_job_ids: self.offers.running(),
            };
            if outbound
                .send(message(agent_message::Kind::Status(status)))
                .await
                .is_err()
            {
                return dropped(true, "the outbound stream closed".into());
            }
        }
    }

    fn receive(&self, message: CoordinatorMessage, stop_offers: &CancellationToken) {
        match message.kind {
            Some(coordinator_message::Kind::Task(envelope)) => {
                let job_id = envelope.job_id.clone();
                let intake = self.offers.offer(envelope);
                tracing::debug!(job_id = %job_id, ?intake, "task offered");
            }
            Some(coordinator_message::Kind::Probe(offer)) => {
                if stop_offers.is_cancelled() {
                    tracing::debug!(probe_id = %offer.probe_id, "probe offered while shutting down; declined");
                } else {
                    self.probes.offer(offer.probe_id);
                }
            }
            Some(coordinator_message::Kind::Welcome(_)) => {
                tracing::debug!("a second welcome; ignored");
            }
            None => {
                tracing::warn!(
                    "the coordinator sent a message this agent does not know; ignored (is pgvault-agent older than the coordinator?)"
                );
            }
        }
    }
}

fn message(kind: agent_message::Kind) -> AgentMessage {
    AgentMessage { kind: Some(kind) }
}

fn dropped(welcomed: bool, reason: String) -> Ended {
    Ended::Dropped { welcomed, reason }
}

/// A refusal needs someone to act (token, version, coordinator); anything
/// else may pass.
fn from_status(welcomed: bool, status: &Status) -> Ended {
    let message = status.message();
    match status.code() {
        Code::Unauthenticated => Ended::Refused(format!(
            "the token was not accepted ({message}); start the agent with the token pgvault agent create printed"
        )),
        Code::PermissionDenied => Ended::Refused(format!(
            "the token may not connect as this agent ({message}); use the token of the agent named by --name"
        )),
        Code::FailedPrecondition | Code::InvalidArgument => Ended::Refused(message.to_string()),
        Code::Unimplemented => Ended::Refused(format!(
            "the coordinator has no agent service ({message}); upgrade the coordinator"
        )),
        code => dropped(welcomed, format!("{code:?}: {}", with_causes(status))),
    }
}

/// The status's message and the chain of errors under it (a transport
/// error's cause, e.g. a TLS handshake refused for an unknown issuer), with
/// the fix for the usual certificate problem.
fn with_causes(status: &Status) -> String {
    let mut text = status.message().to_string();
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if text.contains("certificate") || text.contains("UnknownIssuer") {
        text.push_str(
            "; if a private CA signed the coordinator's certificate, pass its PEM certificate with --ca-cert",
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_told_apart_from_passing_failures() {
        let refused = |status: Status| matches!(from_status(true, &status), Ended::Refused(_));
        assert!(refused(Status::unauthenticated("invalid token")));
        assert!(refused(Status::permission_denied("token of agent dc2")));
        assert!(refused(Status::failed_precondition(
            "protocol 0 is not spoken; coordinator speaks 1"
        )));
        assert!(refused(Status::unimplemented("")));
        assert_eq!(
            from_status(true, &Status::unavailable("connection reset")),
            Ended::Dropped {
                welcomed: true,
                reason: "Unavailable: connection reset".into()
            }
        );
        match from_status(
            false,
            &Status::failed_precondition("protocol 9 unsupported"),
        ) {
            Ended::Refused(reason) => assert_eq!(reason, "protocol 9 unsupported"),
            other => panic!("{other:?}"),
        }
    }
}
