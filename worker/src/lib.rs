//! pgvault's worker: the dump/restore **engine** and the **runner** that feeds it.
//!
//! # Layout
//! - [`engine`]: snapshot-consistent, parallel, streaming backup and verified
//!   restore. Knows nothing of AMQP or gRPC: it takes a connection, a
//!   datastore and a progress sink, so the all-in-one mode and the agent reuse
//!   it unchanged.
//! - [`lifecycle`]: tier moves, rehydrates and deletes of recovery points
//!   (verified, streaming copies between datastores).
//! - [`runner`]: consumes task messages, claims jobs from the coordinator,
//!   heartbeats while the engine runs, and reports the outcome.

pub mod engine;
pub mod lifecycle;
pub mod runner;
