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
    CreateAgent,
    GetAgent,
    ListAgents,
    DeleteAgent,
    Connect,
    ClaimProbe,
    CompleteProbe,
}

impl Rpc {
    pub const ALL: [Rpc; 51] = [
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
        Rpc::CreateAgent,
        Rpc::GetAgent,
        Rpc::ListAgents,
        Rpc::DeleteAgent,
        Rpc::Connect,
        Rpc::ClaimProbe,
        Rpc::CompleteProbe,
    ];

    /// The RPC served at a gRPC path (`/pgvault.v1.VaultService/CreateVault`).
    pub fn from_path(path: &str) -> Option<Rpc> {
        static BY_PATH: LazyLock<HashMap<String, Rpc>> =
            LazyLock::new(|| Rpc::ALL.into_iter().map(|rpc| (rpc.path(), rpc)).collect());
        BY_PATH.get(path).copied()
    }

    /// The gRPC path this RPC is served at.
    pub fn path(self) -> String {
        format!("/{PACKAGE}.{}/{self:?}", self.service())
    }

    /// The service this RPC belongs to.
    pub fn service(self) -> &'static str {
        match self {
            Rpc::CreateVault | Rpc::GetVault | Rpc::ListVaults | Rpc::DeleteVault => "VaultService",
            Rpc::CreatePolicy | Rpc::GetPolicy | Rpc::ListPolicies => "PolicyService",
            Rpc::RegisterServer | Rpc::GetServer | Rpc::ListServers | Rpc::ListDatabases => {
                "ServerService"
            }
            Rpc::PutSecret
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
            Rpc::ListRecoveryPoints | Rpc::GetRecoveryPoint => "RecoveryPointService",
            Rpc::RestoreAsDatabase | Rpc::RestoreAsFiles => "RestoreService",
            Rpc::ListJobs
            | Rpc::GetJob
            | Rpc::WatchJob
            | Rpc::CancelJob
            | Rpc::RetryJob
            | Rpc::ListDeadLetters
            | Rpc::DeleteDeadLetter => "JobService",
            Rpc::ClaimTask | Rpc::Heartbeat | Rpc::CompleteTask | Rpc::FailTask => "WorkerService",
            Rpc::CreateToken
            | Rpc::ListTokens
            | Rpc::RevokeToken
            | Rpc::AssignRole
            | Rpc::ListRoles
            | Rpc::RemoveRole => "AccessService",
            Rpc::CreateAgent
            | Rpc::GetAgent
            | Rpc::ListAgents
            | Rpc::DeleteAgent
            | Rpc::Connect
            | Rpc::ClaimProbe
            | Rpc::CompleteProbe => "AgentService",
        }
    }

    /// Where the caller must hold [`Rpc::permission`].
    pub fn scope(self) -> Scope {
        match self {
            // Calls that name a vault (or a resource in one, or a job of one).
            Rpc::GetVault
            | Rpc::DeleteVault
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
            | Rpc::RestoreAsDatabase
            | Rpc::RestoreAsFiles
            | Rpc::ListJobs
            | Rpc::GetJob
            | Rpc::WatchJob
            | Rpc::CancelJob
            | Rpc::RetryJob => Scope::Vault,
            // Servers, secrets, dead letters, tokens and workers belong to
            // no vault; creating and listing vaults spans them all.
            Rpc::CreateVault
            | Rpc::ListVaults
            | Rpc::RegisterServer
            | Rpc::GetServer
            | Rpc::ListServers
            | Rpc::ListDatabases
            | Rpc::PutSecret
            | Rpc::ListSecrets
            | Rpc::ListDeadLetters
            | Rpc::DeleteDeadLetter
            | Rpc::ClaimTask
            | Rpc::Heartbeat
            | Rpc::CompleteTask
            | Rpc::FailTask
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
            | Rpc::ListAgents => Read,
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
            Rpc::ClaimTask
            | Rpc::Heartbeat
            | Rpc::CompleteTask
            | Rpc::FailTask
            | Rpc::Connect
            | Rpc::ClaimProbe
            | Rpc::CompleteProbe => Work,
            Rpc::CreateToken
            | Rpc::ListTokens
            | Rpc::RevokeToken
            | Rpc::AssignRole
            | Rpc::ListRoles
            | Rpc::RemoveRole
            // Letting a vault read a secret is granting: Owner only.
            | Rpc::GrantSecretAccess
            | Rpc::RevokeSecretAccess
            // An agent comes with a token of its own.
            | Rpc::CreateAgent
            | Rpc::DeleteAgent => Grant,
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
mod tests {
    use std::collections::BTreeSet;

    use prost::Message;

    use super::*;

    /// Every method of every service in the public API's descriptor set.
    fn described_paths() -> BTreeSet<String> {
        let set = prost_types::FileDescriptorSet::decode(pgvault_proto::FILE_DESCRIPTOR_SET)
            .expect("the proto crate embeds a valid descriptor set");
        let mut paths = BTreeSet::new();
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    paths.insert(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
        paths
    }

    #[test]
    fn every_method_in_the_descriptor_set_has_a_permission_and_nothing_else_does() {
        let described = described_paths();
        let table: BTreeSet<String> = Rpc::ALL.into_iter().map(Rpc::path).collect();
        let missing: Vec<_> = described.difference(&table).collect();
        assert!(
            missing.is_empty(),
            "RPCs without a row in coordinator/src/access/rpc.rs (add each to Rpc with its permission and scope): {missing:?}"
        );
        let stale: Vec<_> = table.difference(&described).collect();
        assert!(
            stale.is_empty(),
            "rows in coordinator/src/access/rpc.rs for RPCs the .proto files do not define: {stale:?}"
        );
    }

    #[test]
    fn paths_map_back_to_their_rpc() {
        for rpc in Rpc::ALL {
            assert_eq!(Rpc::from_path(&rpc.path()), Some(rpc));
        }
        assert_eq!(
            Rpc::CreateVault.path(),
            "/pgvault.v1.VaultService/CreateVault"
        );
        assert_eq!(Rpc::from_path("/pgvault.v1.VaultService/MakeVault"), None);
        assert_eq!(
            Rpc::from_path("/pgvault.v1.PolicyService/CreateVault"),
            None
        );
    }

    #[test]
    fn only_health_and_reflection_are_open() {
        assert!(is_open("/grpc.health.v1.Health/Check"));
        assert!(is_open("/grpc.health.v1.Health/Watch"));
        assert!(is_open(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
        ));
        assert!(is_open(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
        ));
        assert!(!is_open("/pgvault.v1.VaultService/ListVaults"));
        assert!(!is_open("/grpc.health.v1.Healthy/Check"));
        assert!(!is_open("grpc.health.v1.Health/Check"));
    }

    #[test]
    fn calls_naming_no_vault_need_global_permission() {
        assert_eq!(Rpc::ListVaults.scope(), Scope::Global);
        assert_eq!(Rpc::ClaimTask.scope(), Scope::Global);
        assert_eq!(Rpc::BackupNow.scope(), Scope::Vault);
        // Every Grant RPC but the secret grants (which name a vault) is global.
        for rpc in Rpc::ALL {
            if rpc.permission() == Permission::Grant
                && !matches!(rpc, Rpc::GrantSecretAccess | Rpc::RevokeSecretAccess)
            {
                assert_eq!(rpc.scope(), Scope::Global, "{rpc:?}");
            }
        }
    }

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
