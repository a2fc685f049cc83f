//! Per-server connection budgets: connections to one server are a shared
//! budget across all workers and agents. A claim of a backup or a restore
//! as a database takes slots of its server's budget in the claim's
//! transaction ([`take`]); the runner's engine opens no more connections
//! than it was granted. With too few slots free the claim does not start
//! the job: it stays queued, is offered again shortly, and `job show` says
//! why it waits ([`queued_reason`]). Slots are held per lease and freed
//! with it (completion, failure, take-over, the reaper — or simply the
//! lease expiring, see [`crate::store::connection_slots`]).
//!
//! What counts is what the engine really opens at once:
//! - a backup: its data connections, plus the snapshot holder and
//!   `pg_dump`'s connection (with 2 slots the engine dumps the schema
//!   before the data, so holder + one connection at any time);
//! - a restore as a database: its data connections plus the maintenance
//!   connection it holds throughout (pre-data via `pg_restore` and the
//!   final steps fit within the same count).
//!
//! Restores as files read only the datastore and lifecycle jobs touch no
//! server: they take no slots.

mod take;

pub use take::{Taken, queued_reason, take, take_chunk};

use crate::error::{CoordinatorError, Result};

/// Budget of a server registered without `--max-connections`.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 8;
/// Smallest budget: the fewest connections a backup can run with.
pub const MIN_MAX_CONNECTIONS: u32 = 2;
/// Largest budget accepted (PostgreSQL's own limit is far lower in practice).
pub const MAX_MAX_CONNECTIONS: u32 = 1000;
/// Data connections assumed for a claimer that reports none.
pub const DEFAULT_DATA_CONNECTIONS: u32 = 2;

/// What a job does on its server, as far as connections go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerUse {
    Backup,
    RestoreDatabase,
}

impl ServerUse {
    /// Connections opened besides the data connections.
    fn overhead(self) -> u32 {
        match self {
            ServerUse::Backup => 2,
            ServerUse::RestoreDatabase => 1,
        }
    }

    /// Fewest connections the engine can run the job with.
    pub fn floor(self) -> u32 {
        2
    }

    /// Connections wanted by a claimer with `data` data connections
    /// (0: not reported).
    pub fn wanted(self, data: u32) -> u32 {
        let data = if data == 0 {
            DEFAULT_DATA_CONNECTIONS
        } else {
            data
        };
        data.saturating_add(self.overhead()).max(self.floor())
    }

    fn noun(self) -> &'static str {
        match self {
            ServerUse::Backup => "a backup",
            ServerUse::RestoreDatabase => "a restore",
        }
    }
}

/// The outcome of asking a budget for slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Take this many slots.
    Slots(u32),
    /// Too few free: wait.
    Wait { in_use: u32, max: u32 },
}

/// Slots for `use_` by a claimer with `data` data connections when `in_use`
/// of `max` are taken: as many as wanted up to what is free, and at least
/// the job's floor — else wait.
pub fn grant(use_: ServerUse, data: u32, in_use: u32, max: u32) -> Grant {
    let free = max.saturating_sub(in_use);
    if free < use_.floor() {
        return Grant::Wait { in_use, max };
    }
    Grant::Slots(use_.wanted(data).min(free))
}

/// Why a job waits for server `server` (shown by `job show`).
pub fn waiting_reason(use_: ServerUse, server: &str, in_use: u32, max: u32) -> String {
    let mut reason =
        format!("waiting for a connection slot on server {server} ({in_use} of {max} in use");
    if in_use < max {
        reason.push_str(&format!(
            "; {} needs at least {}",
            use_.noun(),
            use_.floor()
        ));
    }
    reason.push(')');
    reason
}

/// Checks a requested budget (`field` names it in the error).
pub fn validate_max(field: &str, max: u32) -> Result<u32> {
    if (MIN_MAX_CONNECTIONS..=MAX_MAX_CONNECTIONS).contains(&max) {
        return Ok(max);
    }
    Err(CoordinatorError::invalid(
        field,
        format!(
            "must be {MIN_MAX_CONNECTIONS}-{MAX_MAX_CONNECTIONS} (got {max}): a backup needs at least {MIN_MAX_CONNECTIONS} connections, its snapshot holder and one more"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_takes_what_it_wants_up_to_what_is_free() {
        // A backup with 4 data connections wants 6 (holder and pg_dump too).
        assert_eq!(grant(ServerUse::Backup, 4, 0, 8), Grant::Slots(6));
        assert_eq!(grant(ServerUse::Backup, 4, 3, 8), Grant::Slots(5));
        // A restore wants its data connections plus the maintenance one.
        assert_eq!(grant(ServerUse::RestoreDatabase, 4, 0, 8), Grant::Slots(5));
        // An unreported count is the default.
        assert_eq!(grant(ServerUse::Backup, 0, 0, 8), Grant::Slots(4));
    }

    #[test]
    fn two_claims_share_a_budget_and_a_third_waits() {
        let first = grant(ServerUse::Backup, 1, 0, 5);
        assert_eq!(first, Grant::Slots(3));
        let second = grant(ServerUse::Backup, 1, 3, 5);
        assert_eq!(second, Grant::Slots(2), "the floor fits in what is left");
        assert_eq!(
            grant(ServerUse::Backup, 1, 5, 5),
            Grant::Wait { in_use: 5, max: 5 }
        );
    }

    #[test]
    fn fewer_free_slots_than_the_floor_is_a_wait() {
        assert_eq!(
            grant(ServerUse::RestoreDatabase, 8, 7, 8),
            Grant::Wait { in_use: 7, max: 8 }
        );
        assert_eq!(grant(ServerUse::RestoreDatabase, 8, 6, 8), Grant::Slots(2));
        // More in use than the budget (it was lowered meanwhile): wait.
        assert_eq!(
            grant(ServerUse::Backup, 1, 9, 4),
            Grant::Wait { in_use: 9, max: 4 }
        );
    }

    #[test]
    fn the_waiting_reason_names_the_server_and_the_count() {
        assert_eq!(
            waiting_reason(ServerUse::Backup, "db1", 3, 3),
            "waiting for a connection slot on server db1 (3 of 3 in use)"
        );
        assert_eq!(
            waiting_reason(ServerUse::Backup, "db1", 7, 8),
            "waiting for a connection slot on server db1 (7 of 8 in use; a backup needs at least 2)"
        );
    }

    #[test]
    fn budgets_outside_the_range_are_refused_with_the_range() {
        assert_eq!(validate_max("max_connections", 2).unwrap(), 2);
        assert_eq!(validate_max("max_connections", 1000).unwrap(), 1000);
        for bad in [0, 1, 1001] {
            let message = validate_max("max_connections", bad)
                .unwrap_err()
                .to_string();
            assert!(message.contains("2-1000"), "{message}");
        }
    }
}
