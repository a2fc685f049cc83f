//! pgvault's worker: the **runner** that feeds the engine
//! ([`pgvault_engine`]) with tasks.
//!
//! # Layout
//! - [`runner`]: consumes task messages, claims jobs from the coordinator,
//!   heartbeats while the engine runs, and reports the outcome; turns the
//!   task messages (proto) into engine calls and the engine's results back.

pub mod logging;
pub mod runner;
