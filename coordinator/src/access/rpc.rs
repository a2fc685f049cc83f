//! Every RPC of the public API, its gRPC path, the permission it needs and
//! where that permission must be held: the one table the access gate
//! reads. A path missing from it is refused, so an RPC added to the
//! `.proto` files cannot be served until it has a row here (a test compares
//! the table with every method of the descriptor set). Health and
//! reflection are separate services that need no token ([`is_open`]).

use std::collections::HashMap;
use std::sync::LazyLock;

use super::roles::Permission;

/// The protobuf package of the public API.
const PACKAGE: &str = "pgvault.v1";

/// Services anyone may call without a token: health checks and reflection.
const OPEN_SERVICES: [&str; 3] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// Where a caller must hold an RPC's permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Globally: the call names no vault, or spans them all. The gate
    /// decides alone.
    Global,
    /// Globally or on the vault the request names. The gate admits callers
    /// holding it globally or on some vault; the handler then checks the
    /// vault it reads from the request ([`crate::access::in_vault`]).
    Vault,
}

/// One RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rpc {
    CreateVault,
    GetVault,
    ListVaults,
    DeleteVault,
    UpdateVault,
    LockVault,
    UnlockVault,
    RotateVaultKey,
    ExportVaultKey,
    CreatePolicy,
    GetPolicy,
    ListPolicies,
    RegisterServer,
    GetServer,
    ListServers,
    UpdateServer,
    ListDatabases,
    PutSecret,
    PutSigningKey,
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
    DeleteRecoveryPoint,
    UndeleteRecoveryPoint,
    VerifyRecoveryPoint,
    DrillRecoveryPoint,
    RestoreAsDatabase,
    RestoreAsFiles,
    RestoreServer,
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
    OfferChunks,
    ClaimChunk,
    HeartbeatChunk,
    CompleteChunk,
    FailChunk,
    ListChunks,
    CreateToken,
    ListTokens,
    RevokeToken,
    AssignRole,
    ListRoles,
    RemoveRole,
    CreateAgent,
    GetAgent,
    ListAgents,
    DeleteAgent,
    Connect,
    ClaimProbe,
    CompleteProbe,
    CreateNotificationChannel,
    ListNotificationChannels,
    DeleteNotificationChannel,
    TestNotificationChannel,
    ListNotificationDeliveries,
    TestPermissions,
}

impl Rpc {
    pub const ALL: [Rpc; 75] = [
        Rpc::CreateVault,
        Rpc::GetVault,
        Rpc::ListVaults,
        Rpc::DeleteVault,
        Rpc::UpdateVault,
        Rpc::LockVault,
        Rpc::UnlockVault,
        Rpc::RotateVaultKey,
        Rpc::ExportVaultKey,
        Rpc::CreatePolicy,
        Rpc::GetPolicy,
        Rpc::ListPolicies,
        Rpc::RegisterServer,
        Rpc::GetServer,
        Rpc::ListServers,
        Rpc::UpdateServer,
        Rpc::ListDatabases,
        Rpc::PutSecret,
        Rpc::PutSigningKey,
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
        Rpc::DeleteRecoveryPoint,
        Rpc::UndeleteRecoveryPoint,
        Rpc::VerifyRecoveryPoint,
        Rpc::DrillRecoveryPoint,
        Rpc::RestoreAsDatabase,
        Rpc::RestoreAsFiles,
        Rpc::RestoreServer,
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
        Rpc::OfferChunks,
        Rpc::ClaimChunk,
        Rpc::HeartbeatChunk,
        Rpc::CompleteChunk,
        Rpc::FailChunk,
        Rpc::ListChunks,
        Rpc::CreateToken,
        Rpc::ListTokens,
        Rpc::RevokeToken,
        Rpc::AssignRole,
        Rpc::ListRoles,
        Rpc::RemoveRole,
        Rpc::CreateAgent,
        Rpc::GetAgent,
        Rpc::ListAgents,
        Rpc::DeleteAgent,
        Rpc::Connect,
        Rpc::ClaimProbe,
        Rpc::CompleteProbe,
        Rpc::CreateNotificationChannel,
        Rpc::ListNotificationChannels,
        Rpc::DeleteNotificationChannel,
        Rpc::TestNotificationChannel,
        Rpc::ListNotificationDeliveries,
        Rpc::TestPermissions,
    ];

    /// The RPC served at a gRPC path (`/pgvault.v1.VaultService/CreateVault`).
    pub fn from_path(path: &str) -> Option<Rpc> {
        static BY_PATH: LazyLock<HashMap<String, Rpc>> =
            LazyLock::new(|| Rpc::ALL.into_iter().map(|rpc| (rpc.path(), rpc)).collect());
        BY_PATH.get(path).copied()
    }

    /// The RPC of a method name (`BackupNow`), as `TestPermissions` takes it.
    pub fn from_name(name: &str) -> Option<Rpc> {
        Rpc::ALL.into_iter().find(|rpc| format!("{rpc:?}") == name)
    }

    /// The gRPC path this RPC is served at.
    pub fn path(self) -> String {
        format!("/{PACKAGE}.{}/{self:?}", self.service())
    }

    /// The service this RPC belongs to.
    pub fn service(self) -> &'static str {
        match self {
            Rpc::CreateVault
            | Rpc::GetVault
            | Rpc::ListVaults
            | Rpc::DeleteVault
            | Rpc::UpdateVault
            | Rpc::LockVault
            | Rpc::UnlockVault
            | Rpc::RotateVaultKey
            | Rpc::ExportVaultKey => "VaultService",
            Rpc::CreatePolicy | Rpc::GetPolicy | Rpc::ListPolicies => "PolicyService",
            Rpc::RegisterServer
            | Rpc::GetServer
            | Rpc::ListServers
            | Rpc::UpdateServer
            | Rpc::ListDatabases => "ServerService",
            Rpc::PutSecret
            | Rpc::PutSigningKey
            | Rpc::ListSecrets
            | Rpc::GrantSecretAccess
            | Rpc::RevokeSecretAccess => "SecretService",
            Rpc::ConfigureBackup
            | Rpc::GetBackupInstance
            | Rpc::ListBackupInstances
            | Rpc::BackupNow
            | Rpc::ChangePolicy
            | Rpc::StopProtection
            | Rpc::ResumeProtection
            | Rpc::RevalidateBackupInstance => "BackupInstanceService",
            Rpc::ListRecoveryPoints
            | Rpc::GetRecoveryPoint
            | Rpc::DeleteRecoveryPoint
            | Rpc::UndeleteRecoveryPoint
            | Rpc::VerifyRecoveryPoint
            | Rpc::DrillRecoveryPoint => "RecoveryPointService",
            Rpc::RestoreAsDatabase | Rpc::RestoreAsFiles | Rpc::RestoreServer => "RestoreService",
            Rpc::ListJobs
            | Rpc::GetJob
            | Rpc::WatchJob
            | Rpc::CancelJob
            | Rpc::RetryJob
            | Rpc::ListDeadLetters
            | Rpc::DeleteDeadLetter => "JobService",
            Rpc::ClaimTask | Rpc::Heartbeat | Rpc::CompleteTask | Rpc::FailTask => "WorkerService",
            Rpc::OfferChunks
            | Rpc::ClaimChunk
            | Rpc::HeartbeatChunk
            | Rpc::CompleteChunk
            | Rpc::FailChunk
            | Rpc::ListChunks => "WorkerService",
            Rpc::CreateToken
            | Rpc::ListTokens
            | Rpc::RevokeToken
            | Rpc::AssignRole
            | Rpc::ListRoles
            | Rpc::RemoveRole
            | Rpc::TestPermissions => "AccessService",
            Rpc::CreateAgent
            | Rpc::GetAgent
            | Rpc::ListAgents
            | Rpc::DeleteAgent
            | Rpc::Connect
            | Rpc::ClaimProbe
            | Rpc::CompleteProbe => "AgentService",
            Rpc::CreateNotificationChannel
            | Rpc::ListNotificationChannels
            | Rpc::DeleteNotificationChannel
            | Rpc::TestNotificationChannel
            | Rpc::ListNotificationDeliveries => "NotificationService",
        }
    }

    /// Where the caller must hold [`Rpc::permission`].
    pub fn scope(self) -> Scope {
        match self {
            // Calls that name a vault (or a resource in one, or a job of one).
            Rpc::GetVault
            | Rpc::DeleteVault
            | Rpc::UpdateVault
            | Rpc::LockVault
            | Rpc::UnlockVault
            | Rpc::RotateVaultKey
            | Rpc::ExportVaultKey
            | Rpc::CreatePolicy
            | Rpc::GetPolicy
            | Rpc::ListPolicies
            | Rpc::GrantSecretAccess
            | Rpc::RevokeSecretAccess
            | Rpc::ConfigureBackup
            | Rpc::GetBackupInstance
            | Rpc::ListBackupInstances
            | Rpc::BackupNow
            | Rpc::ChangePolicy
            | Rpc::StopProtection
            | Rpc::ResumeProtection
            | Rpc::RevalidateBackupInstance
            | Rpc::ListRecoveryPoints
            | Rpc::GetRecoveryPoint
            | Rpc::DeleteRecoveryPoint
            | Rpc::UndeleteRecoveryPoint
            | Rpc::VerifyRecoveryPoint
            | Rpc::DrillRecoveryPoint
            | Rpc::RestoreAsDatabase
            | Rpc::RestoreAsFiles
            | Rpc::RestoreServer
            | Rpc::ListJobs
            | Rpc::GetJob
            | Rpc::WatchJob
            | Rpc::CancelJob
            | Rpc::RetryJob
            // A vault's notification channels and deliveries (listing
            // deliveries without a vault needs a global role).
            | Rpc::CreateNotificationChannel
            | Rpc::ListNotificationChannels
            | Rpc::DeleteNotificationChannel
            | Rpc::TestNotificationChannel
            | Rpc::ListNotificationDeliveries
            // Asking what one may do on a vault is reading it.
            | Rpc::TestPermissions => Scope::Vault,
            // Servers, secrets, dead letters, tokens, workers and agents
            // belong to no vault; creating and listing vaults spans them all.
            Rpc::CreateVault
            | Rpc::ListVaults
            | Rpc::RegisterServer
            | Rpc::GetServer
            | Rpc::ListServers
            | Rpc::UpdateServer
            | Rpc::ListDatabases
            | Rpc::PutSecret
            | Rpc::PutSigningKey
            | Rpc::ListSecrets
            | Rpc::ListDeadLetters
            | Rpc::DeleteDeadLetter
            | Rpc::ClaimTask
            | Rpc::Heartbeat
            | Rpc::CompleteTask
            | Rpc::FailTask
            | Rpc::OfferChunks
            | Rpc::ClaimChunk
            | Rpc::HeartbeatChunk
            | Rpc::CompleteChunk
            | Rpc::FailChunk
            | Rpc::ListChunks
            | Rpc::CreateToken
            | Rpc::ListTokens
            | Rpc::RevokeToken
            | Rpc::AssignRole
            | Rpc::ListRoles
            | Rpc::RemoveRole
            | Rpc::CreateAgent
            | Rpc::GetAgent
            | Rpc::ListAgents
            | Rpc::DeleteAgent
            | Rpc::Connect
            | Rpc::ClaimProbe
            | Rpc::CompleteProbe => Scope::Global,
        }
    }

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
            | Rpc::ListDeadLetters
            | Rpc::GetAgent
            | Rpc::ListAgents
            | Rpc::ListNotificationChannels
            | Rpc::ListNotificationDeliveries
            | Rpc::TestPermissions => Read,
            // Whoever may start jobs may stop and re-run them.
            // Verifying only reads a point, but it is work an operator starts.
            Rpc::BackupNow | Rpc::CancelJob | Rpc::RetryJob | Rpc::VerifyRecoveryPoint => BackupNow,
            // A drill creates (and drops) a database on a server with a secret.
            Rpc::RestoreAsDatabase
            | Rpc::RestoreAsFiles
            | Rpc::RestoreServer
            | Rpc::DrillRecoveryPoint => Restore,
            // ListDatabases connects with a stored secret: a configuration step.
            Rpc::CreateVault
            | Rpc::UpdateVault
            | Rpc::CreatePolicy
            | Rpc::RegisterServer
            | Rpc::UpdateServer
            | Rpc::ListDatabases
            | Rpc::PutSecret
            | Rpc::PutSigningKey
            | Rpc::ConfigureBackup
            | Rpc::ChangePolicy
            | Rpc::StopProtection
            | Rpc::ResumeProtection
            | Rpc::RevalidateBackupInstance
            // Notification channels are vault settings.
            | Rpc::CreateNotificationChannel
            | Rpc::DeleteNotificationChannel
            | Rpc::TestNotificationChannel => Configure,
            Rpc::DeleteVault => DeleteVault,
            // Forgetting a dead letter destroys evidence of a fault.
            // Undeleting a point needs what deleting it needs.
            Rpc::DeleteDeadLetter | Rpc::DeleteRecoveryPoint | Rpc::UndeleteRecoveryPoint => {
                Delete
            }
            Rpc::ClaimTask | Rpc::Heartbeat | Rpc::CompleteTask | Rpc::FailTask => Work,
            Rpc::OfferChunks | Rpc::ClaimChunk | Rpc::HeartbeatChunk | Rpc::CompleteChunk | Rpc::FailChunk | Rpc::ListChunks => Work,
            Rpc::Connect | Rpc::ClaimProbe | Rpc::CompleteProbe => AgentConnect,
            Rpc::CreateToken
            | Rpc::ListTokens
            | Rpc::RevokeToken
            | Rpc::AssignRole
            | Rpc::ListRoles
            | Rpc::RemoveRole
            // An agent comes with a token: minting and revoking one is granting.
            | Rpc::CreateAgent
            | Rpc::DeleteAgent
            // Letting a vault read a secret is granting: Owner only.
            | Rpc::GrantSecretAccess
            | Rpc::RevokeSecretAccess
            // Locking a vault binds every later Owner: Owner only. Unlock
            // is always refused; asking needs the same permission.
            | Rpc::LockVault
            | Rpc::UnlockVault
            // Rotating or exporting a vault's key is key custody: Owner only.
            | Rpc::RotateVaultKey
            | Rpc::ExportVaultKey => Grant,
        }
    }
}

/// Whether `path` belongs to a service anyone may call (health, reflection).
pub fn is_open(path: &str) -> bool {
    let service = path
        .strip_prefix('/')
        .and_then(|rest| rest.split_once('/'))
        .map(|(service, _)| service);
    service.is_some_and(|service| OPEN_SERVICES.contains(&service))
}

#[cfg(test)]
#[path = "rpc_tests.rs"]
mod tests;
