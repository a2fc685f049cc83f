//! The seam through which the API asks a registered server questions
//! synchronously — which databases it has (`ListDatabases`) and whether a
//! database is ready for backup (the readiness checks of `ConfigureBackup`
//! and `RevalidateBackupInstance`): [`ServerProbe`]. The coordinator asks
//! a server it reaches itself ([`DirectProbe`]); a server bound to an agent
//! is asked through that agent (`crate::agents::AgentProbe`). Which one
//! asks is decided here, once, from the server ([`Probes::for_server`]);
//! handlers never look at `server.agent`. Both answer in the same shape, so
//! codes, messages and grant scripts are the same either way.
//!
//! Credentials are resolved by the caller before asking (so an unusable
//! secret gives the same row error either way); the direct probe connects
//! with them, the agent's claimer gets them resolved anew from the
//! reference.

mod direct;

use std::sync::Arc;

use async_trait::async_trait;
pub use direct::DirectProbe;
use pgvault_probe::Missing;

use crate::error::Result;
use crate::model::{JobError, Server};
use crate::secret_ref::SecretRef;
use crate::secrets::ConnParams;

/// What to ask, of which server, as whom.
pub struct ProbeTarget<'a> {
    pub server: &'a Server,
    /// The database to connect to.
    pub database: &'a str,
    /// The reference `credentials` were resolved from.
    pub secret: &'a SecretRef,
    pub credentials: &'a ConnParams,
    /// The vault whose grant a stored secret needs (readiness checks).
    pub vault: Option<&'a str>,
}

/// Why a probe got no answer from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Unanswered {
    /// Could not connect: the error classified by SQLSTATE (the agent's
    /// own classification for a server behind an agent).
    Connect(JobError),
    /// Connected, but the question could not be answered (catalog
    /// unreadable, connection lost): worth asking again.
    Query(String),
    /// No instance of the server's agent could ask it
    /// (`AgentUnavailable`, saying when the agent was last seen).
    Agent(JobError),
}

/// A probe's outcome: the answer, or why there is none. `Err` of the outer
/// result is the coordinator's own failure (state database, …).
pub type Probed<T> = std::result::Result<T, Unanswered>;

/// Asks one server questions, from wherever it can be reached.
#[async_trait]
pub trait ServerProbe: Send + Sync {
    /// Every database of the server that allows connections.
    async fn list_databases(&self, target: &ProbeTarget<'_>) -> Result<Probed<Vec<String>>>;

    /// What the connecting user lacks for a consistent dump of
    /// `target.database` (empty: ready).
    async fn readiness(&self, target: &ProbeTarget<'_>) -> Result<Probed<Missing>>;
}

/// The probes of one coordinator, and which asks a given server.
pub struct Probes {
    direct: Arc<dyn ServerProbe>,
    agent: Arc<dyn ServerProbe>,
}

impl Probes {
    pub fn new(direct: Arc<dyn ServerProbe>, agent: Arc<dyn ServerProbe>) -> Self {
        Probes { direct, agent }
    }

    /// The probe that reaches `server`: its agent's when it has one.
    pub fn for_server(&self, server: &Server) -> &dyn ServerProbe {
        if server.agent.is_empty() {
            self.direct.as_ref()
        } else {
            self.agent.as_ref()
        }
    }
}

impl std::fmt::Debug for Probes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Probes")
    }
}
