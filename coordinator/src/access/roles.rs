//! Roles users assign and the permissions they grant.

use std::fmt;
use std::str::FromStr;

use crate::error::CoordinatorError;

/// What an RPC needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Get and list anything (never secret values).
    Read,
    /// Start an on-demand backup.
    BackupNow,
    /// Restore a recovery point.
    Restore,
    /// Create or change vaults, policies, servers, secrets, protection.
    Configure,
    /// Delete resources other than vaults.
    Delete,
    /// Delete a vault.
    DeleteVault,
    /// Manage tokens and roles, and grant vaults access to secrets.
    Grant,
    /// Claim, heartbeat, complete and fail tasks (workers and agents).
    Work,
    /// Hold an agent's stream and answer its probes (agents only: the
    /// handlers also check the token is the agent's own).
    AgentConnect,
}

/// A role assignable to a token, globally or on one vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything, including granting.
    Owner,
    /// Everything except granting and deleting vaults.
    BackupContributor,
    /// Backup now, restore and read; no configuration changes, no deletes.
    BackupOperator,
    /// Read only.
    BackupReader,
    /// The `WorkerService` only.
    Worker,
    /// An agent's token: the `WorkerService` (for its agent's tasks only)
    /// and the agent's stream and probes. Never assigned: only
    /// `CreateAgent` makes a token with it.
    Agent,
}

impl Role {
    /// Every role a token can be given (`CreateToken`, `AssignRole`);
    /// [`Role::Agent`] is not one of them.
    pub const ALL: [Role; 5] = [
        Role::Owner,
        Role::BackupContributor,
        Role::BackupOperator,
        Role::BackupReader,
        Role::Worker,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "Owner",
            Role::BackupContributor => "BackupContributor",
            Role::BackupOperator => "BackupOperator",
            Role::BackupReader => "BackupReader",
            Role::Worker => "Worker",
            Role::Agent => "Agent",
        }
    }

    /// A token's stored global role, which may also be [`Role::Agent`].
    pub fn from_stored(text: &str) -> Option<Role> {
        if text == Role::Agent.as_str() {
            return Some(Role::Agent);
        }
        text.parse().ok()
    }

    /// Whether this role grants `permission`.
    pub fn grants(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Owner => true,
            Role::BackupContributor => {
                matches!(permission, Read | BackupNow | Restore | Configure | Delete)
            }
            Role::BackupOperator => matches!(permission, Read | BackupNow | Restore),
            Role::BackupReader => permission == Read,
            Role::Worker => permission == Work,
            Role::Agent => matches!(permission, Work | AgentConnect),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = CoordinatorError;
    /// Parses an assignable role ([`Role::ALL`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case(Role::Agent.as_str()) {
            return Err(CoordinatorError::invalid(
                "role",
                "the Agent role belongs to agents' own tokens and is never assigned; create an agent (and its token) with pgvault agent create NAME --region REGION",
            ));
        }
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                CoordinatorError::invalid(
                    "role",
                    "must be one of Owner, BackupContributor, BackupOperator, BackupReader, Worker",
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_owners_grant_and_only_owners_and_workers_work() {
        for role in Role::ALL {
            assert_eq!(role.grants(Permission::Grant), role == Role::Owner);
            assert_eq!(
                role.grants(Permission::Work),
                matches!(role, Role::Owner | Role::Worker)
            );
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!(!Role::BackupContributor.grants(Permission::DeleteVault));
        assert!(!Role::BackupOperator.grants(Permission::Configure));
        assert!(Role::BackupOperator.grants(Permission::Restore));
        assert!("Admin".parse::<Role>().is_err());
    }

    #[test]
    fn the_agent_role_works_and_connects_only_and_is_never_assigned() {
        for permission in [
            Permission::Read,
            Permission::BackupNow,
            Permission::Restore,
            Permission::Configure,
            Permission::Delete,
            Permission::DeleteVault,
            Permission::Grant,
        ] {
            assert!(!Role::Agent.grants(permission), "{permission:?}");
        }
        assert!(Role::Agent.grants(Permission::Work));
        assert!(Role::Agent.grants(Permission::AgentConnect));
        assert!(!Role::Worker.grants(Permission::AgentConnect));
        let refused = "agent".parse::<Role>().unwrap_err().to_string();
        assert!(refused.contains("pgvault agent create"), "{refused}");
        assert!(!Role::ALL.contains(&Role::Agent));
        assert_eq!(Role::from_stored("Agent"), Some(Role::Agent));
        assert_eq!(Role::from_stored("Worker"), Some(Role::Worker));
        assert_eq!(Role::from_stored(""), None);
    }
}
