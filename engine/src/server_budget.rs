//! Living within a grant of connections to the server
//! ([`EngineOptions::server_connections`], the worker's share of the
//! server's connection budget). What a job opens at once:
//! - a backup: the snapshot holder, `pg_dump`'s connection (while the
//!   schema is dumped) and its data connections. Granted 3 or more it dumps
//!   the schema alongside the data over `grant - 2` data connections;
//!   granted 2 it dumps the schema first, then the data over one
//!   connection, so the holder and one other are all it ever holds.
//! - a restore as a database: the maintenance connection it holds
//!   throughout, and its data connections (`grant - 1`); pre-data
//!   (`pg_restore`) and the final steps use one connection besides it.
//!
//! The coordinator's budget (`pgvault_coordinator::budget`) counts the
//! same way; [`BACKUP_OVERHEAD`] and [`RESTORE_OVERHEAD`] are the numbers
//! both sides agree on.

use super::types::EngineOptions;

/// Connections a backup opens besides its data connections.
pub const BACKUP_OVERHEAD: usize = 2;
/// Connections a restore as a database opens besides its data connections.
pub const RESTORE_OVERHEAD: usize = 1;
/// Fewest connections a backup or restore can run with.
pub const MIN_CONNECTIONS: usize = 2;

/// How a backup uses its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupLanes {
    /// Data connections.
    pub data: usize,
    /// Whether `pg_dump` runs while the data is dumped (else before).
    pub schema_alongside_data: bool,
}

impl EngineOptions {
    /// These options limited to `grant` connections to the server (0: not
    /// limited; a grant below [`MIN_CONNECTIONS`] is treated as that).
    pub fn within_server_grant(&self, grant: u32) -> EngineOptions {
        let mut options = self.clone();
        if grant > 0 {
            let grant = usize::try_from(grant).unwrap_or(usize::MAX);
            options.server_connections = Some(grant.max(MIN_CONNECTIONS));
        }
        options
    }

    /// How a backup with these options uses its connections.
    pub fn backup_lanes(&self) -> BackupLanes {
        let wanted = self.connections.max(1);
        match self.server_connections {
            Some(limit) if limit <= BACKUP_OVERHEAD => BackupLanes {
                data: 1,
                schema_alongside_data: false,
            },
            Some(limit) => BackupLanes {
                data: wanted.min(limit - BACKUP_OVERHEAD),
                schema_alongside_data: true,
            },
            None => BackupLanes {
                data: wanted,
                schema_alongside_data: true,
            },
        }
    }

    /// Data connections of a restore as a database with these options.
    pub fn restore_data_connections(&self) -> usize {
        let wanted = self.connections.max(1);
        match self.server_connections {
            Some(limit) => wanted.min(limit.saturating_sub(RESTORE_OVERHEAD).max(1)),
            None => wanted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(connections: usize, grant: u32) -> EngineOptions {
        EngineOptions {
            connections,
            ..EngineOptions::default()
        }
        .within_server_grant(grant)
    }

    #[test]
    fn an_unlimited_job_uses_its_configured_connections() {
        let o = options(4, 0);
        assert_eq!(o.server_connections, None);
        assert_eq!(
            o.backup_lanes(),
            BackupLanes {
                data: 4,
                schema_alongside_data: true
            }
        );
        assert_eq!(o.restore_data_connections(), 4);
    }

    #[test]
    fn a_backup_never_opens_more_than_its_grant() {
        for grant in 2..12u32 {
            for connections in 1..10 {
                let lanes = options(connections, grant).backup_lanes();
                let peak = 1 + lanes.data + usize::from(lanes.schema_alongside_data);
                assert!(peak <= grant as usize, "grant {grant}: {lanes:?}");
                assert!(lanes.data >= 1 && lanes.data <= connections);
            }
        }
        assert_eq!(
            options(4, 2).backup_lanes(),
            BackupLanes {
                data: 1,
                schema_alongside_data: false
            }
        );
        assert_eq!(options(4, 5).backup_lanes().data, 3);
    }

    #[test]
    fn a_restore_keeps_one_connection_for_its_maintenance_work() {
        assert_eq!(options(4, 2).restore_data_connections(), 1);
        assert_eq!(options(4, 3).restore_data_connections(), 2);
        assert_eq!(options(4, 9).restore_data_connections(), 4);
        // A grant below the floor is the floor.
        assert_eq!(options(4, 1).server_connections, Some(2));
    }
}
