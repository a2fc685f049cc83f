//! pgvault's coordinator: owns vaults, policies, servers, secrets, backup
//! instances, recovery points and jobs in PostgreSQL; serves the gRPC API;
//! publishes tasks through the outbox; hands out and fences worker leases.
//!
//! ```no_run
//! # async fn demo(publisher: std::sync::Arc<dyn pgvault_queue::TaskPublisher>) -> Result<(), pgvault_coordinator::CoordinatorError> {
//! use pgvault_coordinator::{Coordinator, CoordinatorConfig};
//! let config = CoordinatorConfig::new("postgresql://pgvault:pw@127.0.0.1:5432/pgvault", [0u8; 32]);
//! let handle = Coordinator::start(config, publisher).await?;
//! println!("listening on {}", handle.local_addr());
//! handle.shutdown().await
//! # }
//! ```
//!
//! # Layout
//! - [`config`]: settings and defaults; [`server`]: start-up and the handle;
//!   [`console`]: the web console served beside the API (`pgvault-console`).
//! - [`error`]: the one error type, mapped to `tonic::Status` in one place.
//! - [`model`]: domain types; [`names`]: resource names and short ids;
//!   [`short_names`]: the readable name each backup instance gets.
//! - [`validation`], [`retention`]: input rules (schedules, durations, databases).
//! - [`clock`]: the one source of "now"; [`slots`]: when a schedule fires;
//!   [`tagging`]: a point's tag and expiry, and what retention does with it.
//! - [`readiness`]: per-database backup readiness (connection, privileges) and grant scripts;
//!   [`server_probe`]: asking a server directly or through its agent, one seam.
//! - [`secrets`]: AES-256-GCM sealing, connection-string parsing, redaction;
//!   [`secret_ref`]: secret references (`secret://`, `env://`, `file://`).
//! - [`auth`]: API token values (generated, stored hashed) and the first token;
//!   [`access`]: the gate every call passes (bearer token compared in constant
//!   time, the RPC → permission table, roles), and the caller handlers get from it.
//! - [`store`]: the sqlx repositories, the only code that writes SQL.
//! - [`api`]: one tonic service per resource; [`worker_api`]: claim/heartbeat/complete/fail.
//! - [`budget`]: per-server connection budgets (slots taken at claim, freed
//!   with the lease).
//! - [`agents`]: agents' streams, the offers made down them, their probes,
//!   and the sweeper failing jobs whose agent stays away.
//! - [`dispatch`]: outbox → queue; [`reaper`]: expired leases → re-queue or fail;
//!   [`job_span`]: the span (in the job's trace, with its log fields) of what
//!   the coordinator does to a job on its own or at an API call;
//!   [`dead_letters`]: the dead-letter queue → recorded dead letters.
//! - [`leader`]: advisory-lock leadership; [`scheduler`]: policies → scheduled jobs,
//!   exactly once per instance and slot; [`whole_server`]: servers protected
//!   whole (`--all-databases`) and the auto-include of later databases at
//!   each slot; [`lifecycle`]: the sweeper (expired
//!   points → tier move or delete jobs, exactly once per point and stage),
//!   rehydrates, and what completed lifecycle jobs change.
//! - [`metrics`]: Prometheus metrics on `GET /metrics` (state gauges read at
//!   scrape time, the leader's feed of ended jobs and attempts).
//! - [`notifications`]: per-vault webhook channels, the outbox of deliveries
//!   written with the events, and the leader's signed, retried sending.

pub mod access;
pub mod agents;
pub mod api;
pub mod auth;
pub mod backoff;
pub mod budget;
pub mod clock;
pub mod collector;
pub mod config;
pub mod console;
pub mod copies;
pub mod data_protection;
pub mod dead_letters;
pub mod dispatch;
pub mod drill;
pub mod encryption;
pub mod error;
pub mod job_span;
pub mod leader;
pub mod lifecycle;
pub mod metrics;
pub mod model;
pub mod names;
pub mod notifications;
pub mod readiness;
pub mod reaper;
pub mod retention;
pub mod scheduler;
pub mod secret_ref;
pub mod secrets;
pub mod server;
pub mod server_probe;
pub mod short_names;
pub mod slots;
pub mod store;
pub mod tagging;
pub mod validation;
pub mod verify;
pub mod whole_server;
pub mod worker_api;

pub use config::{CoordinatorConfig, DEFAULT_MAINTENANCE_DATABASES, TlsFiles};
pub use error::CoordinatorError;
pub use server::{Coordinator, CoordinatorHandle};
