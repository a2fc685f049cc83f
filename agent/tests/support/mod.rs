//! What the agent's integration tests share: a fake coordinator
//! ([`fake`]) and an agent run in the test process ([`running`]). Each
//! test file uses part of it.

#![allow(dead_code, unused_imports)]

pub mod fake;
pub mod running;

pub use fake::{Fake, Server, TOKEN};
pub use running::{Agent, JOB, cluster, options, pg_dump_major, spec};
