//! Shared helpers of the engine tests, one module per job:
//! - `fixtures`: the mixed fixture (every type, awkward names, partitions…).
//! - `cluster`: private clusters, the engine's target and options, databases
//!   with SQL loaded, psql.
//! - `point`: a backup in a `file://` datastore of its own (`Point`), its
//!   manifest and objects, restores of it, progress recording.
//! - `fingerprint`: schema text and data checksums that prove two databases
//!   identical.

// Every test binary compiles this module and uses only a part of it.
#![allow(dead_code, unused_imports)]

mod cluster;
mod fingerprint;
mod fixtures;
mod point;

pub use cluster::*;
pub use fingerprint::*;
pub use fixtures::*;
pub use point::*;
