//! One agent stream (`AgentService.Connect`) from hello to its end.
//!
//! The token must be an agent's (else the call fails with
//! `FAILED_PRECONDITION`). The response then starts at once, and the hello
//! is checked on the stream — a refusal is the stream's status: the first
//! message is a well-formed hello, within [`HELLO_WAIT`]
//! (`INVALID_ARGUMENT`); it names the token's agent (`PERMISSION_DENIED`);
//! its protocol version is spoken here (`FAILED_PRECONDITION` naming both,
//! and the refusal is recorded on the instance's row so `agent list` flags
//! it). Then the coordinator answers `welcome`, registers the stream for
//! offers, and records every status (last seen, running jobs). The stream
//! ends when the agent closes it, sends something it should not (a second
//! hello, an empty message, undecodable bytes: `INVALID_ARGUMENT`), stays
//! silent for three status intervals, or the coordinator shuts down (a
//! clean end). Its end is recorded on the instance's row and the tasks
//! offered to it are made due for others at once — unless the instance
//! already reconnected on a newer stream (each stream has its own id),
//! which then stays as it is.

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use pgvault_proto::AGENT_PROTOCOL_VERSION;
use pgvault_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};
use uuid::Uuid;

use super::AgentHub;
use crate::access::Caller;
use crate::error::{CoordinatorError, Result};
use crate::model::Hello;
use crate::names;
use crate::store::{agent_instances, outbox};

/// Protocol versions of the agent stream this coordinator speaks.
pub const SPOKEN: RangeInclusive<u32> = AGENT_PROTOCOL_VERSION..=AGENT_PROTOCOL_VERSION;
/// How long a new stream may take to say hello.
pub const HELLO_WAIT: Duration = Duration::from_secs(10);
/// Messages waiting to be sent down one stream.
const OUTBOUND: usize = 64;

/// What the coordinator sends down an accepted stream.
pub type Outgoing = ReceiverStream<Result<pb::CoordinatorMessage, Status>>;

/// Why an instance of protocol `version` is refused, if it is.
pub fn refusal(version: u32) -> Option<String> {
    if SPOKEN.contains(&version) {
        return None;
    }
    let spoken = if SPOKEN.start() == SPOKEN.end() {
        SPOKEN.start().to_string()
    } else {
        format!("{}-{}", SPOKEN.start(), SPOKEN.end())
    };
    let upgrade = if version < *SPOKEN.start() {
        "upgrade pgvault-agent to this coordinator's release"
    } else {
        "upgrade the coordinator, or run the pgvault-agent release matching it"
    };
    Some(format!(
        "unsupported: protocol {version}, coordinator speaks {spoken}; {upgrade}"
    ))
}

/// A hello off the wire, validated.
impl TryFrom<pb::AgentHello> for Hello {
    type Error = CoordinatorError;
    fn try_from(h: pb::AgentHello) -> Result<Self> {
        names::validate_short_id("hello.agent_id", &h.agent_id)?;
        let instance_id = Uuid::parse_str(h.instance_id.trim()).map_err(|_| {
            CoordinatorError::invalid("hello.instance_id", "must be a UUID (random per start)")
        })?;
        let text = |field: &str, value: String, max: usize| {
            if value.len() > max || value.chars().any(char::is_control) {
                Err(CoordinatorError::invalid(
                    field,
                    format!("at most {max} printable characters"),
                ))
            } else {
                Ok(value)
            }
        };
        if h.pg_tool_majors.len() > 32 {
            return Err(CoordinatorError::invalid(
                "hello.pg_tool_majors",
                "at most 32 majors",
            ));
        }
        Ok(Hello {
            agent_id: h.agent_id,
            instance_id,
            version: text("hello.version", h.version, 100)?,
            protocol_version: h.protocol_version,
            hostname: text("hello.hostname", h.hostname, 255)?,
            pg_tool_majors: h.pg_tool_majors,
            concurrency: h.concurrency.clamp(1, 1024),
        })
    }
}

/// Accepts the stream of the agent whose token `caller` holds. The
/// response starts at once (so an agent may send its hello before or after
/// it sees the response begin); the hello is checked on the stream, and a
/// refusal is the stream's status.
pub(super) async fn open(
    hub: &Arc<AgentHub>,
    caller: &Caller,
    inbound: Streaming<pb::AgentMessage>,
) -> Result<Outgoing> {
    let agent = super::own_agent(&hub.store, caller).await?;
    let (tx, rx) = mpsc::channel(OUTBOUND);
    tokio::spawn(run(hub.clone(), agent.id, inbound, tx));
    Ok(ReceiverStream::new(rx))
}

/// The stream's life: hello checks, then statuses until it ends.
async fn run(
    hub: Arc<AgentHub>,
    agent: String,
    mut inbound: Streaming<pb::AgentMessage>,
    tx: mpsc::Sender<Result<pb::CoordinatorMessage, Status>>,
) {
    let accepted = tokio::select! {
        _ = hub.cancel.cancelled() => return,
        accepted = accept(&hub, &agent, &mut inbound, &tx) => accepted,
    };
    match accepted {
        Ok((hello, stream)) => serve(hub, hello, stream, inbound, tx).await,
        Err(error) => drop(tx.send(Err(error.into())).await),
    }
}

/// Checks the hello; when it passes, records the instance, answers
/// `welcome` and registers the stream. Returns the hello and the stream's id.
async fn accept(
    hub: &AgentHub,
    agent: &str,
    inbound: &mut Streaming<pb::AgentMessage>,
    tx: &mpsc::Sender<Result<pb::CoordinatorMessage, Status>>,
) -> Result<(Hello, Uuid)> {
    let pool = hub.store.pool();
    let hello = read_hello(inbound).await?;
    if hello.agent_id != agent {
        tracing::warn!(agent, named = %hello.agent_id, "agent stream refused: hello names another agent");
        return Err(CoordinatorError::PermissionDenied(format!(
            "this token belongs to agent \"{agent}\", not \"{}\"; start pgvault-agent with --name {agent} or with agent {}'s token",
            hello.agent_id, hello.agent_id
        )));
    }
    let coordinator = hub.settings.coordinator.as_str();
    let stream = Uuid::new_v4();
    if let Some(reason) = refusal(hello.protocol_version) {
        agent_instances::record_hello(
            pool,
            &hello,
            stream,
            coordinator,
            Some(&reason),
            Duration::ZERO,
        )
        .await?;
        tracing::warn!(agent, instance = %hello.instance_id, protocol = hello.protocol_version, "agent refused: protocol not spoken");
        return Err(CoordinatorError::precondition(format!(
            "agent protocol version {} is not spoken by this coordinator (it speaks {}); {}",
            hello.protocol_version,
            SPOKEN.end(),
            reason
                .split_once("; ")
                .map(|(_, fix)| fix)
                .unwrap_or_default()
        )));
    }
    let live_for = hub.settings.status_interval * 3;
    if !agent_instances::record_hello(pool, &hello, stream, coordinator, None, live_for).await? {
        return Err(CoordinatorError::precondition(format!(
            "instance id {} is already used by an instance of another agent; restart pgvault-agent (each start picks a new one)",
            hello.instance_id
        )));
    }
    let welcome = pb::CoordinatorMessage {
        kind: Some(pb::coordinator_message::Kind::Welcome(pb::AgentWelcome {
            coordinator_version: env!("CARGO_PKG_VERSION").to_string(),
            status_interval_seconds: u32::try_from(hub.settings.status_interval.as_secs())
                .unwrap_or(u32::MAX),
        })),
    };
    if tx.send(Ok(welcome)).await.is_err() {
        agent_instances::record_disconnect(pool, hello.instance_id, stream).await?;
        return Err(CoordinatorError::Unavailable("the agent went away".into()));
    }
    hub.registry.add(
        hello.instance_id,
        stream,
        agent,
        hello.concurrency,
        tx.clone(),
    );
    tracing::info!(agent, instance = %hello.instance_id, hostname = %hello.hostname, version = %hello.version, "agent connected");
    Ok((hello, stream))
}

async fn read_hello(inbound: &mut Streaming<pb::AgentMessage>) -> Result<Hello> {
    let bad = |why: String| CoordinatorError::invalid("hello", why);
    let first = match tokio::time::timeout(HELLO_WAIT, inbound.message()).await {
        Err(_) => {
            return Err(bad(format!(
                "no hello within {} s: the first message on the stream must be hello",
                HELLO_WAIT.as_secs()
            )));
        }
        Ok(Err(status)) => {
            return Err(bad(format!(
                "unreadable first message: {}",
                status.message()
            )));
        }
        Ok(Ok(None)) => return Err(bad("the stream ended before hello".into())),
        Ok(Ok(Some(message))) => message,
    };
    match first.kind {
        Some(pb::agent_message::Kind::Hello(hello)) => Hello::try_from(hello),
        _ => Err(bad("the first message on the stream must be hello".into())),
    }
}

/// Reads the stream's statuses until it ends; then records the end.
async fn serve(
    hub: Arc<AgentHub>,
    hello: Hello,
    stream: Uuid,
    mut inbound: Streaming<pb::AgentMessage>,
    tx: mpsc::Sender<Result<pb::CoordinatorMessage, Status>>,
) {
    let instance = hello.instance_id;
    let silence = hub.settings.status_interval * 3;
    let ending = loop {
        let next = tokio::select! {
            _ = hub.cancel.cancelled() => break Ok("coordinator shutting down"),
            next = tokio::time::timeout(silence, inbound.message()) => next,
        };
        let message = match next {
            Err(_) => {
                break Err(Status::deadline_exceeded(format!(
                    "no status for {} s; reconnect",
                    silence.as_secs()
                )));
            }
            Ok(Ok(None)) => break Ok("agent closed the stream"),
            Ok(Err(status)) => {
                break Err(Status::invalid_argument(format!(
                    "unreadable message on the agent stream: {}",
                    status.message()
                )));
            }
            Ok(Ok(Some(message))) => message,
        };
        match message.kind {
            Some(pb::agent_message::Kind::Status(status)) => {
                if let Err(error) = record_status(&hub, instance, stream, status).await {
                    break Err(error.into());
                }
            }
            Some(pb::agent_message::Kind::Hello(_)) => {
                break Err(Status::invalid_argument(
                    "hello: already received on this stream; send status messages",
                ));
            }
            None => {
                break Err(Status::invalid_argument(
                    "the message carries neither hello nor status (is the agent newer than this coordinator?)",
                ));
            }
        }
    };
    match &ending {
        Ok(why) => {
            tracing::info!(agent = %hello.agent_id, instance = %instance, why, "agent stream ended")
        }
        Err(status) => {
            tracing::warn!(agent = %hello.agent_id, instance = %instance, error = %status.message(), "agent stream ended");
            drop(tx.try_send(Err(status.clone())));
        }
    }
    let offered = hub.registry.remove(instance, stream);
    let pool = hub.store.pool();
    if let Err(error) = outbox::make_due(pool, &offered).await {
        tracing::warn!(instance = %instance, error = %error, "cannot hand the ended stream's offers to others");
    }
    if let Err(error) = agent_instances::record_disconnect(pool, instance, stream).await {
        tracing::warn!(instance = %instance, error = %error, "cannot record the agent's disconnect");
    }
    // The response ends last, so a shutdown (which waits for it) finds the
    // end recorded.
    drop(tx);
}

async fn record_status(
    hub: &AgentHub,
    instance: Uuid,
    stream: Uuid,
    status: pb::AgentStatus,
) -> Result<()> {
    let running = status
        .running_job_ids
        .iter()
        .map(|id| Uuid::parse_str(id.trim()))
        .collect::<std::result::Result<Vec<Uuid>, _>>()
        .map_err(|_| CoordinatorError::invalid("status.running_job_ids", "must be job UUIDs"))?;
    hub.registry.set_running(instance, stream, &running);
    agent_instances::record_status(
        hub.store.pool(),
        instance,
        stream,
        &running,
        hub.settings.status_interval * 3,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_spoken_protocol_is_accepted_and_a_refusal_says_what_to_upgrade() {
        assert_eq!(refusal(AGENT_PROTOCOL_VERSION), None);
        let older = refusal(0).expect("refused");
        assert_eq!(
            older,
            format!(
                "unsupported: protocol 0, coordinator speaks {AGENT_PROTOCOL_VERSION}; upgrade pgvault-agent to this coordinator's release"
            )
        );
        let newer = refusal(AGENT_PROTOCOL_VERSION + 1).expect("refused");
        assert!(newer.contains("upgrade the coordinator"), "{newer}");
    }

    #[test]
    fn a_hello_is_checked_field_by_field() {
        let good = pb::AgentHello {
            agent_id: "dc1".into(),
            instance_id: Uuid::new_v4().to_string(),
            version: "0.1.0".into(),
            protocol_version: 1,
            hostname: "db-host".into(),
            pg_tool_majors: vec![15, 17],
            concurrency: 0,
        };
        let hello = Hello::try_from(good.clone()).expect("valid");
        assert_eq!(hello.concurrency, 1, "no concurrency reads as one");
        let bad_instance = pb::AgentHello {
            instance_id: "pid-1".into(),
            ..good.clone()
        };
        let error = Hello::try_from(bad_instance).unwrap_err().to_string();
        assert!(error.starts_with("hello.instance_id"), "{error}");
        let bad_name = pb::AgentHello {
            agent_id: "DC 1".into(),
            ..good.clone()
        };
        assert!(Hello::try_from(bad_name).is_err());
        let bad_host = pb::AgentHello {
            hostname: "a\nb".into(),
            ..good
        };
        let error = Hello::try_from(bad_host).unwrap_err().to_string();
        assert!(error.starts_with("hello.hostname"), "{error}");
    }
}
