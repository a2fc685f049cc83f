//! The access table against the descriptor set, and its rules.

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
    // Every Grant RPC but the secret grants, the vault lock and key
    // rotation (which name a vault) is global.
    for rpc in Rpc::ALL {
        if rpc.permission() == Permission::Grant
            && !matches!(
                rpc,
                Rpc::GrantSecretAccess
                    | Rpc::RevokeSecretAccess
                    | Rpc::LockVault
                    | Rpc::UnlockVault
                    | Rpc::RotateVaultKey
                    | Rpc::ExportVaultKey
            )
        {
            assert_eq!(rpc.scope(), Scope::Global, "{rpc:?}");
        }
    }
}

#[test]
fn agent_calls_need_agent_connect_and_agent_admin_needs_grant_or_read() {
    for rpc in [Rpc::Connect, Rpc::ClaimProbe, Rpc::CompleteProbe] {
        assert_eq!(rpc.permission(), Permission::AgentConnect, "{rpc:?}");
        assert_eq!(rpc.scope(), Scope::Global, "{rpc:?}");
    }
    assert_eq!(Rpc::CreateAgent.permission(), Permission::Grant);
    assert_eq!(Rpc::DeleteAgent.permission(), Permission::Grant);
    assert_eq!(Rpc::GetAgent.permission(), Permission::Read);
    assert_eq!(Rpc::ListAgents.permission(), Permission::Read);
    assert_eq!(Rpc::Connect.path(), "/pgvault.v1.AgentService/Connect");
}

#[test]
fn exporting_a_vault_key_is_owner_only_and_scoped_to_the_vault() {
    assert_eq!(Rpc::ExportVaultKey.permission(), Permission::Grant);
    assert_eq!(Rpc::ExportVaultKey.scope(), Scope::Vault);
    assert_eq!(
        Rpc::ExportVaultKey.path(),
        "/pgvault.v1.VaultService/ExportVaultKey"
    );
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

#[test]
fn method_names_map_back_to_their_rpc() {
    for rpc in Rpc::ALL {
        assert_eq!(Rpc::from_name(&format!("{rpc:?}")), Some(rpc));
    }
    assert_eq!(Rpc::from_name("backupNow"), None);
    assert_eq!(Rpc::from_name(""), None);
}

#[test]
fn locking_a_vault_is_for_owners_and_undelete_needs_what_delete_needs() {
    use super::super::roles::Role;
    assert_eq!(Rpc::LockVault.scope(), Scope::Vault);
    assert!(Role::Owner.grants(Rpc::LockVault.permission()));
    assert!(!Role::BackupContributor.grants(Rpc::LockVault.permission()));
    assert_eq!(
        Rpc::UndeleteRecoveryPoint.permission(),
        Rpc::DeleteRecoveryPoint.permission()
    );
    assert!(!Role::BackupOperator.grants(Rpc::DeleteRecoveryPoint.permission()));
}
