//! The public gRPC API: one tonic service per resource, all sharing one
//! [`ApiContext`]. The access gate ([`crate::access`]) has authenticated
//! and authorised every call before a handler runs; handlers of calls
//! scoped to a vault check that vault ([`crate::access::in_vault`]), then
//! convert and validate the request, call the store, and convert the
//! answer back.
//!
//! # Layout
//! - `convert`: domain ⇄ proto conversions.
//! - `access`: tokens and roles (`AccessService`).
//! - `vaults`, `policies`, `servers`, `secrets`, `instances`, `backup_now`,
//!   `recovery_points`, `restores`, `jobs`: the services (`dead_letters`:
//!   the dead-letter calls of `JobService`); `notifications`: a vault's
//!   notification channels and their deliveries.
//! - `restore_selection`, `output_file`: checking a restore's selection
//!   against the recovery point, and the name of a restore's SQL file.
//! - `restore_version`: a restore goes to the same or a newer PostgreSQL major;
//!   `restore_server`: every database of a whole server's point set, globals first.
//! - `instance_lookup`: an instance named by id or short name → its id (the
//!   one place); `restore_point`: the point a restore restores (named, or
//!   the newest of an instance).
//! - `job_details`: a job's attempts and per-table progress (`GetJob`,
//!   `WatchJob`, and the tables workers report); `stage_split`: where a
//!   finished job's time went, as workers report it.
//! - `configure`: configure rows and re-validation (kept rows);
//!   `configure_readiness`: a row's readiness checks;
//!   `databases`: a server's protectable databases (one rule for listing,
//!   whole-server protection and its auto-include).
//! - `resolve`: loading what a job needs across aggregates (shared with the
//!   worker API).

pub mod access;
pub mod backup_now;
pub mod configure;
pub mod configure_readiness;
pub mod convert;
pub mod databases;
pub mod dead_letters;
pub mod fanout_details;
pub mod fanout_rate;
pub mod instance_lookup;
pub mod instances;
pub mod job_details;
pub mod jobs;
pub mod notifications;
pub mod output_file;
pub mod policies;
pub mod protection;
pub mod recovery_points;
pub mod resolve;
pub mod restore_point;
pub mod restore_selection;
pub mod restore_server;
pub mod restore_version;
pub mod restores;
pub mod secrets;
pub mod servers;
pub mod stage_split;
pub mod vaults;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::secrets::Cipher;
use crate::store::Store;

/// State shared by every service of one coordinator.
#[derive(Debug)]
pub struct ApiContext {
    pub store: Store,
    pub cipher: Cipher,
    /// Where `env://` and `file://` secret references may point.
    pub external_secrets: crate::secret_ref::ExternalSecrets,
    /// Databases never offered nor protected, besides template0/template1.
    pub maintenance_databases: Vec<String>,
    /// Wakes the outbox dispatcher after a job (and its outbox row) commit.
    pub dispatch_wake: Arc<Notify>,
    pub lease_ttl: Duration,
    /// Attempt limit, backoff and the grace before failed attempts' objects are collected.
    pub retry: crate::reaper::RetryPolicy,
    /// The coordinator's notion of now (schedules, retention).
    pub clock: Arc<dyn crate::clock::Clock>,
    /// How servers are asked questions: directly, or through their agent.
    pub probes: crate::server_probe::Probes,
    /// The newest client tools major workers reported with their claims.
    pub worker_tools: crate::readiness::tool_versions::WorkerTools,
    /// This coordinator's metrics (fenced heartbeats are counted here).
    pub metrics: crate::metrics::Metrics,
}

/// `next_page_token` for a page: empty when no more rows exist.
pub fn next_token<T>(page: &[T], more: bool, token: impl Fn(&T) -> String) -> String {
    match (more, page.last()) {
        (true, Some(last)) => token(last),
        _ => String::new(),
    }
}
