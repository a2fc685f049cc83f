//! Restore drills: a recovery point restored into a scratch database
//! (`pgvault_drill_<short job id>`) on a drill server, every table's rows
//! and row checksum compared with the manifest, the scratch database
//! dropped (the engine's `drill_point`); the result recorded on the point.
//! - [`rule`]: a policy's drill (server, secret, every Nth backup and/or a
//!   weekly schedule), validated;
//! - [`queue`]: one drill job of a point — on demand or after every Nth
//!   completed backup of an instance under a drilling policy — refused for
//!   soft-deleted and archive points, at most one queued or running per point;
//! - [`schedule`]: the scheduler's pass that drills every instance's newest
//!   point at each due slot of a policy's drill schedule;
//! - [`task`]: the worker task a claim builds (point, scratch database and
//!   the drill server's connection, resolved again on every claim);
//! - [`outcome`]: the result recorded on the point when the job ends.
//!
//! A DRILL job's target is a `restore_targets` row of kind DATABASE (the
//! drill server, the scratch database and the secret), so it takes a slot
//! of the drill server's connection budget like a restore. A failed drill
//! is a failed job: its code, message and action, and the job-failure
//! notifications, are the ordinary ones.

pub mod outcome;
pub mod queue;
pub mod rule;
pub mod schedule;
pub mod task;
