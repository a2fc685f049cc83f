//! Every RPC of the public API and the permission it needs: the one table
//! authorisation reads. Health and reflection are separate services that
//! need no token.

use super::roles::Permission;

/// One RPC. Each handler names its own when it authorises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rpc {
    CreateVault,
    GetVault,
    ListVaults,
    DeleteVault,
    CreatePolicy,
    GetPolicy,
    ListPolicies,
    RegisterServer,
    GetServer,
    ListServers,
    ListDatabases,
    PutSecret,
    ListSecrets,
    GrantSecretAccess,
    RevokeSecretAccess,
    ConfigureBackup,
    GetBackupInstance,
    ListBackupInstances,
    BackupNow,
    ChangePolicy,
    StopProtection,
    ResumeProtection,
    RevalidateBackupInstance,
    ListRecoveryPoints,
    GetRecoveryPoint,
    RestoreAsDatabase,
    RestoreAsFiles,
    ListJobs,
    GetJob,
    WatchJob,
    CancelJob,
    RetryJob,
    ListDeadLetters,
    DeleteDeadLetter,
    ClaimTask,
    Heartbeat,
    CompleteTask,
    FailTask,
    CreateToken,
    ListTokens,
    RevokeToken,
    AssignRole,
    ListRoles,
    RemoveRole,
}

impl Rpc {
    pub const ALL: [Rpc; 44] = [
        Rpc::CreateVault,
        Rpc::GetVault,
        Rpc::ListVaults,
        Rpc::DeleteVault,
        Rpc::CreatePolicy,
        Rpc::GetPolicy,
        Rpc::ListPolicies,
        Rpc::RegisterServer,
        Rpc::GetServer,
        Rpc::ListServers,
        Rpc::ListDatabases,
        Rpc::PutSecret,
        Rpc::ListSecrets,
        Rpc::GrantSecretAccess,
        Rpc::RevokeSecretAccess,
        Rpc::ConfigureBackup,
        Rpc::GetBackupInstance,
        Rpc::ListBackupInstances,
        Rpc::BackupNow,
        Rpc::ChangePolicy,
        Rpc::StopProtection,
        Rpc::ResumeProtection,
        Rpc::RevalidateBackupInstance,
        Rpc::ListRecoveryPoints,
        Rpc::GetRecoveryPoint,
        Rpc::RestoreAsDatabase,
        Rpc::RestoreAsFiles,
        Rpc::ListJobs,
        Rpc::GetJob,
        Rpc::WatchJob,
        Rpc::CancelJob,
        Rpc::RetryJob,
        Rpc::ListDeadLetters,
        Rpc::DeleteDeadLetter,
        Rpc::ClaimTask,
        Rpc::Heartbeat,
        Rpc::CompleteTask,
        Rpc::FailTask,
        Rpc::CreateToken,
        Rpc::ListTokens,
        Rpc::RevokeToken,
        Rpc::AssignRole,
        Rpc::ListRoles,
        Rpc::RemoveRole,
    ];

    /// The permission this RPC needs.
    pub fn permission(self) -> Permission {
        use Permission::*;
        match self {
            Rpc::GetVault
            | Rpc::ListVaults
            | Rpc::GetPolicy
            | Rpc::ListPolicies
            | Rpc::GetServer
            | Rpc::ListServers
            | Rpc::ListSecrets
            | Rpc::GetBackupInstance
            | Rpc::ListBackupInstances
            | Rpc::ListRecoveryPoints
            | Rpc::GetRecoveryPoint
            | Rpc::ListJobs
            | Rpc::GetJob
            | Rpc::WatchJob
            | Rpc::ListDeadLetters => Read,
            // Whoever may start jobs may stop and re-run them.
            Rpc::BackupNow | Rpc::CancelJob | Rpc::RetryJob => BackupNow,
            Rpc::RestoreAsDatabase | Rpc::RestoreAsFiles => Restore,
            // ListDatabases connects with a stored secret: a configuration step.
            Rpc::CreateVault
            | Rpc::CreatePolicy
            | Rpc::RegisterServer
            | Rpc::ListDatabases
            | Rpc::PutSecret
            | Rpc::ConfigureBackup
            | Rpc::ChangePolicy
            | Rpc::StopProtection
            | Rpc::ResumeProtection
            | Rpc::RevalidateBackupInstance => Configure,
            Rpc::DeleteVault => DeleteVault,
            // Forgetting a dead letter destroys evidence of a fault.
            Rpc::DeleteDeadLetter => Delete,
            Rpc::ClaimTask | Rpc::Heartbeat | Rpc::CompleteTask | Rpc::FailTask => Work,
            Rpc::CreateToken
            | Rpc::ListTokens
            | Rpc::RevokeToken
            | Rpc::AssignRole
            | Rpc::ListRoles
            | Rpc::RemoveRole
            // Letting a vault read a secret is granting: Owner only.
            | Rpc::GrantSecretAccess
            | Rpc::RevokeSecretAccess => Grant,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_restores_need_the_restore_permission() {
        assert_eq!(Rpc::RestoreAsDatabase.permission(), Permission::Restore);
        assert_eq!(Rpc::RestoreAsFiles.permission(), Permission::Restore);
    }

    #[test]
    fn every_rpc_is_listed_once() {
        let unique: std::collections::HashSet<Rpc> = Rpc::ALL.into_iter().collect();
        assert_eq!(unique.len(), Rpc::ALL.len());
    }
}
