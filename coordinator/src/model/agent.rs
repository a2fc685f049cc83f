//! Agents as the coordinator reasons about them: an agent (a name, a region,
//! its token), the processes serving it (instances), what an instance says
//! when it connects, and whether anyone of the agent is there — with the
//! words users read when no one is ("waiting for agent dc1, last seen …").

use chrono::{DateTime, SecondsFormat, Utc};
use pgvault_errors::ErrorCode;
use uuid::Uuid;

use super::JobError;
use crate::secret_ref::SecretRef;

/// A registered agent; its processes share its name and token.
#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    pub id: String,
    /// Servers bound to the agent must be in this region.
    pub region: String,
    /// Its API token (role `Agent`).
    pub token_id: Uuid,
    pub create_time: DateTime<Utc>,
}

/// What an instance announces in its `hello`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Hello {
    pub agent_id: String,
    pub instance_id: Uuid,
    pub version: String,
    pub protocol_version: u32,
    pub hostname: String,
    pub pg_tool_majors: Vec<u32>,
    pub concurrency: u32,
}

/// One process of an agent, as last recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentInstance {
    pub instance_id: Uuid,
    pub agent_id: String,
    /// The coordinator that holds (or refused) its stream.
    pub coordinator: String,
    pub hostname: String,
    pub version: String,
    pub protocol_version: u32,
    /// False when it was refused (its protocol is not spoken here).
    pub supported: bool,
    pub refused_reason: String,
    pub pg_tool_majors: Vec<u32>,
    pub concurrency: u32,
    pub running_job_ids: Vec<Uuid>,
    pub connect_time: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub disconnect_time: Option<DateTime<Utc>>,
    /// Supported, stream open and heard from recently (database clock).
    pub live: bool,
}

/// Whether an agent can take work now, and when it was last heard from.
#[derive(Debug, Clone, PartialEq)]
pub struct Presence {
    pub agent_id: String,
    /// Some supported instance is live.
    pub live: bool,
    /// Newest status of any instance; `None`: never connected.
    pub last_seen: Option<DateTime<Utc>>,
}

impl Presence {
    /// "waiting for agent dc1, last seen 2026-12-04T12:03:11Z" (or "…,
    /// never connected"): why a job of an absent agent is still queued.
    pub fn waiting_reason(&self) -> String {
        format!("waiting for agent {}, {}", self.agent_id, self.seen())
    }

    /// The `AgentUnavailable` error of a probe (configure row, database
    /// listing) asked of an agent that has no live instance.
    pub fn unavailable(&self) -> JobError {
        JobError::new(
            ErrorCode::AgentUnavailable,
            format!(
                "no instance of agent \"{}\" is connected ({}), and only it reaches the server",
                self.agent_id,
                self.seen()
            ),
        )
    }

    /// The `AgentUnavailable` error of a job that waited `waited` for an
    /// instance of its agent.
    pub fn job_unavailable(&self, waited: std::time::Duration) -> JobError {
        JobError::new(
            ErrorCode::AgentUnavailable,
            format!(
                "no instance of agent \"{}\" was connected for {} s while the job was queued ({}); only that agent reaches the job's server",
                self.agent_id,
                waited.as_secs(),
                self.seen()
            ),
        )
    }

    fn seen(&self) -> String {
        match self.last_seen {
            Some(at) => format!(
                "last seen {}",
                at.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
            None => "never connected".to_string(),
        }
    }
}

text_enum!(
    /// What a probe asks a server only an agent reaches.
    ProbeKind { ListDatabases => "LIST_DATABASES", Readiness => "READINESS" }
);

/// A question for an agent to ask one of its servers, as the API handler
/// writes it: the secret *reference* (the claimer gets the connection it
/// resolves to, never the row).
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeRequest {
    pub agent_id: String,
    pub kind: ProbeKind,
    pub server_id: String,
    /// Where to connect (ListDatabases: the secret's database or `postgres`).
    pub database: String,
    pub secret: SecretRef,
    /// The vault whose grant a stored secret needs (readiness checks).
    pub vault_id: Option<String>,
}

/// What the agent answered.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeAnswer {
    /// Every database that allows connections.
    Databases(Vec<String>),
    Readiness {
        missing: pgvault_probe::Missing,
        server_version_num: u32,
    },
    /// The server could not be asked (could not connect, …), with the
    /// catalogue code the agent classified it as.
    Error(JobError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_says_when_the_agent_was_last_seen_or_that_it_never_was() {
        let seen = Presence {
            agent_id: "dc1".into(),
            live: false,
            last_seen: DateTime::from_timestamp(1_796_385_791, 0),
        };
        assert_eq!(
            seen.waiting_reason(),
            "waiting for agent dc1, last seen 2026-12-04T12:03:11Z"
        );
        let never = Presence {
            last_seen: None,
            ..seen
        };
        assert_eq!(
            never.waiting_reason(),
            "waiting for agent dc1, never connected"
        );
        let error = never.unavailable();
        assert_eq!(error.code, "AgentUnavailable");
        assert!(
            error.message.contains("\"dc1\"") && error.message.contains("never connected"),
            "{}",
            error.message
        );
        assert!(error.recommended_action.contains("pgvault-agent"));
    }
}
