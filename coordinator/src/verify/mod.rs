//! Verify jobs: reading every object of a recovery point and checking it
//! against its manifest, with no database (the engine's `verify_point`).
//! - [`queue`]: one verify job of a point — refused for soft-deleted points
//!   and points on the archive tier (rehydrate them with a restore first),
//!   and at most one queued or running per point (asking again returns it);
//! - [`task`]: the worker task a claim of one builds (the point's location
//!   and the manifest's SHA-256 recorded at backup time);
//! - [`outcome`]: the result recorded on the point when the job ends;
//! - [`schedule`]: a policy's verify schedule: each slot is claimed once
//!   (`policy_verify_runs`), then every live standard-tier point of the
//!   policy's instances created before the slot is verified, except points
//!   whose verify is still queued or running.
//!
//! A verify never writes to a datastore: its attempts record no target, so
//! nothing of the point is ever collected as an attempt's garbage.

pub mod outcome;
pub mod queue;
pub mod schedule;
pub mod task;
