//! The RPC × role table: every RPC of the public API called with a token of
//! each role, asserting `PermissionDenied` exactly where the role lacks the
//! RPC's permission; plus vault-scoped roles (every RPC refused to a token
//! whose roles are all on another vault), token revocation, calls without a
//! token, and paths without a permission refused by the access gate.

use crate::common;

use common::Harness;
use pgvault_coordinator::access::{Role, Rpc};
use pgvault_proto::v1 as pb;
use pgvault_proto::v1::access_service_client::AccessServiceClient;
use pgvault_proto::v1::agent_service_client::AgentServiceClient;
use pgvault_proto::v1::backup_instance_service_client::BackupInstanceServiceClient;
use pgvault_proto::v1::job_service_client::JobServiceClient;
use pgvault_proto::v1::notification_service_client::NotificationServiceClient;
use pgvault_proto::v1::policy_service_client::PolicyServiceClient;
use pgvault_proto::v1::recovery_point_service_client::RecoveryPointServiceClient;
use pgvault_proto::v1::restore_service_client::RestoreServiceClient;
use pgvault_proto::v1::secret_service_client::SecretServiceClient;
use pgvault_proto::v1::server_service_client::ServerServiceClient;
use pgvault_proto::v1::vault_service_client::VaultServiceClient;
use pgvault_proto::v1::worker_service_client::WorkerServiceClient;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// Attaches one bearer token (or none) to every call.
#[derive(Clone)]
struct Bearer(Option<MetadataValue<tonic::metadata::Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            request.metadata_mut().insert("authorization", v.clone());
        }
        Ok(request)
    }
}

fn bearer(token: Option<&str>) -> Bearer {
    Bearer(token.map(|t| format!("Bearer {t}").parse().expect("ascii token")))
}

const GHOST_INSTANCE: &str = "vaults/v/backupInstances/00000000-0000-4000-8000-000000000001";
const GHOST_JOB: &str = "00000000-0000-4000-8000-000000000002";
const GHOST_TOKEN: &str = "tokens/00000000-0000-4000-8000-000000000003";

/// Calls `rpc` with requests that, once authorised, fail harmlessly (bad
/// input or not found) or only read, so allowed calls change nothing.
async fn call(rpc: Rpc, ch: &Channel, token: Option<&str>) -> Result<(), Status> {
    let b = bearer(token);
    let c = ch.clone();
    let vaults = || VaultServiceClient::with_interceptor(c.clone(), b.clone());
    let policies = || PolicyServiceClient::with_interceptor(c.clone(), b.clone());
    let servers = || ServerServiceClient::with_interceptor(c.clone(), b.clone());
    let secrets = || SecretServiceClient::with_interceptor(c.clone(), b.clone());
    let instances = || BackupInstanceServiceClient::with_interceptor(c.clone(), b.clone());
    let points = || RecoveryPointServiceClient::with_interceptor(c.clone(), b.clone());
    let restores = || RestoreServiceClient::with_interceptor(c.clone(), b.clone());
    let jobs = || JobServiceClient::with_interceptor(c.clone(), b.clone());
    let workers = || WorkerServiceClient::with_interceptor(c.clone(), b.clone());
    let access = || AccessServiceClient::with_interceptor(c.clone(), b.clone());
    let agents = || AgentServiceClient::with_interceptor(c.clone(), b.clone());
    let notifications = || NotificationServiceClient::with_interceptor(c.clone(), b.clone());
    let ghost_channel = "vaults/v/notificationChannels/ghost";
    let point = format!("{GHOST_INSTANCE}/recoveryPoints/00000000-0000-4000-8000-000000000004");
    match rpc {
        Rpc::CreateVault => vaults()
            .create_vault(pb::CreateVaultRequest::default())
            .await
            .map(drop),
        Rpc::GetVault => vaults()
            .get_vault(pb::GetVaultRequest {
                name: "vaults/v".into(),
            })
            .await
            .map(drop),
        Rpc::ListVaults => vaults()
            .list_vaults(pb::ListVaultsRequest::default())
            .await
            .map(drop),
        Rpc::DeleteVault => vaults()
            .delete_vault(pb::DeleteVaultRequest {
                name: "vaults/ghost".into(),
            })
            .await
            .map(drop),
        Rpc::UpdateVault => vaults()
            .update_vault(pb::UpdateVaultRequest {
                name: "vaults/ghost".into(),
                soft_delete_days: 30,
            })
            .await
            .map(drop),
        Rpc::LockVault => vaults()
            .lock_vault(pb::LockVaultRequest {
                name: "vaults/ghost".into(),
                confirm: true,
            })
            .await
            .map(drop),
        Rpc::UnlockVault => vaults()
            .unlock_vault(pb::UnlockVaultRequest {
                name: "vaults/ghost".into(),
            })
            .await
            .map(drop),
        Rpc::RotateVaultKey => vaults()
            .rotate_vault_key(pb::RotateVaultKeyRequest {
                name: "vaults/ghost".into(),
            })
            .await
            .map(drop),
        Rpc::ExportVaultKey => vaults()
            .export_vault_key(pb::ExportVaultKeyRequest {
                name: "vaults/ghost".into(),
            })
            .await
            .map(drop),
        Rpc::CreatePolicy => policies()
            .create_policy(pb::CreatePolicyRequest {
                parent: "vaults/v".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        Rpc::GetPolicy => policies()
            .get_policy(pb::GetPolicyRequest {
                name: "vaults/v/policies/daily".into(),
            })
            .await
            .map(drop),
        Rpc::ListPolicies => policies()
            .list_policies(pb::ListPoliciesRequest {
                parent: "vaults/v".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        Rpc::RegisterServer => servers()
            .register_server(pb::RegisterServerRequest::default())
            .await
            .map(drop),
        Rpc::GetServer => servers()
            .get_server(pb::GetServerRequest {
                name: "servers/pg1".into(),
            })
            .await
            .map(drop),
        Rpc::ListServers => servers()
            .list_servers(pb::ListServersRequest::default())
            .await
            .map(drop),
        Rpc::UpdateServer => servers()
            .update_server(pb::UpdateServerRequest {
                name: "servers/ghost".into(),
                max_connections: 3,
                ..Default::default()
            })
            .await
            .map(drop),
        Rpc::ListDatabases => servers()
            .list_databases(pb::ListDatabasesRequest {
                name: "servers/ghost".into(),
                secret: "secrets/pg1-admin".into(),
            })
            .await
            .map(drop),
        // Too short: refused as input once authorised.
        Rpc::PutSigningKey => secrets()
            .put_signing_key(pb::PutSigningKeyRequest {
                secret_id: "k".into(),
                value: "short".into(),
            })
            .await
            .map(drop),
        Rpc::PutSecret => secrets()
            .put_secret(pb::PutSecretRequest::default())
            .await
            .map(drop),
        Rpc::ListSecrets => secrets()
            .list_secrets(pb::ListSecretsRequest::default())
            .await
            .map(drop),
        Rpc::GrantSecretAccess => secrets()
            .grant_secret_access(pb::GrantSecretAccessRequest {
                secret: "secrets/ghost".into(),
                vault: "vaults/v".into(),
            })
            .await
            .map(drop),
        Rpc::RevokeSecretAccess => secrets()
            .revoke_secret_access(pb::RevokeSecretAccessRequest {
                secret: "secrets/ghost".into(),
                vault: "vaults/v".into(),
            })
            .await
            .map(drop),
        Rpc::RevalidateBackupInstance => instances()
            .revalidate_backup_instance(pb::RevalidateBackupInstanceRequest {
                name: GHOST_INSTANCE.into(),
                assign_missing_permissions: true,
            })
            .await
            .map(drop),
        Rpc::ConfigureBackup => instances()
            .configure_backup(pb::ConfigureBackupRequest {
                parent: "vaults/v".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        Rpc::GetBackupInstance => instances()
            .get_backup_instance(pb::GetBackupInstanceRequest {
                name: GHOST_INSTANCE.into(),
            })
            .await
            .map(drop),
        Rpc::ListBackupInstances => instances()
            .list_backup_instances(pb::ListBackupInstancesRequest {
                parent: "vaults/v".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        Rpc::BackupNow => instances()
            .backup_now(pb::BackupNowRequest {
                name: GHOST_INSTANCE.into(),
                ..Default::default()
            })
            .await
            .map(drop),
        Rpc::ChangePolicy => instances()
            .change_policy(pb::ChangePolicyRequest {
                name: GHOST_INSTANCE.into(),
                policy: "vaults/v/policies/p".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        Rpc::StopProtection => instances()
            .stop_protection(pb::StopProtectionRequest {
                name: GHOST_INSTANCE.into(),
                mode: pb::StopMode::KeepAllForever as i32,
            })
            .await
            .map(drop),
        Rpc::ResumeProtection => instances()
            .resume_protection(pb::ResumeProtectionRequest {
                name: GHOST_INSTANCE.into(),
            })
            .await
            .map(drop),
        Rpc::ListRecoveryPoints => points()
            .list_recovery_points(pb::ListRecoveryPointsRequest {
                parent: GHOST_INSTANCE.into(),
                ..Default::default()
            })
            .await
            .map(drop),
        Rpc::GetRecoveryPoint => points()
            .get_recovery_point(pb::GetRecoveryPointRequest { name: point })
            .await
            .map(drop),
        Rpc::DeleteRecoveryPoint => points()
            .delete_recovery_point(pb::DeleteRecoveryPointRequest { name: point })
            .await
            .map(drop),
        Rpc::UndeleteRecoveryPoint => points()
            .undelete_recovery_point(pb::UndeleteRecoveryPointRequest { name: point })
            .await
            .map(drop),
        Rpc::VerifyRecoveryPoint => points()
            .verify_recovery_point(pb::VerifyRecoveryPointRequest { name: point })
            .await
            .map(drop),
        Rpc::DrillRecoveryPoint => points()
            .drill_recovery_point(pb::DrillRecoveryPointRequest {
                name: point,
                ..Default::default()
            })
            .await
            .map(drop),
        Rpc::RestoreAsDatabase => restores()
            .restore_as_database(pb::RestoreAsDatabaseRequest {
                recovery_point: point,
                ..Default::default()
            })
            .await
            .map(drop),
        Rpc::RestoreAsFiles => restores()
            .restore_as_files(pb::RestoreAsFilesRequest {
                recovery_point: point,
                ..Default::default()
            })
            .await
            .map(drop),
        Rpc::RestoreServer => restores()
            .restore_server(pb::RestoreServerRequest {
                recovery_point: point,
                target_server: "servers/ghost".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        Rpc::ListJobs => jobs()
            .list_jobs(pb::ListJobsRequest::default())
            .await
            .map(drop),
        Rpc::GetJob => jobs()
            .get_job(pb::GetJobRequest {
                name: format!("jobs/{GHOST_JOB}"),
            })
            .await
            .map(drop),
        Rpc::WatchJob => jobs()
            .watch_job(pb::WatchJobRequest {
                name: format!("jobs/{GHOST_JOB}"),
            })
            .await
            .map(drop),
        Rpc::CancelJob => jobs()
            .cancel_job(pb::CancelJobRequest {
                name: format!("jobs/{GHOST_JOB}"),
            })
            .await
            .map(drop),
        Rpc::RetryJob => jobs()
            .retry_job(pb::RetryJobRequest {
                name: format!("jobs/{GHOST_JOB}"),
            })
            .await
            .map(drop),
        Rpc::ListDeadLetters => jobs()
            .list_dead_letters(pb::ListDeadLettersRequest::default())
            .await
            .map(drop),
        // An empty channel id: refused as input once authorised.
        Rpc::CreateNotificationChannel => notifications()
            .create_notification_channel(pb::CreateNotificationChannelRequest {
                vault: "vaults/v".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        Rpc::ListNotificationChannels => notifications()
            .list_notification_channels(pb::ListNotificationChannelsRequest {
                vault: "vaults/v".into(),
            })
            .await
            .map(drop),
        Rpc::DeleteNotificationChannel => notifications()
            .delete_notification_channel(pb::DeleteNotificationChannelRequest {
                name: ghost_channel.into(),
            })
            .await
            .map(drop),
        Rpc::TestNotificationChannel => notifications()
            .test_notification_channel(pb::TestNotificationChannelRequest {
                name: ghost_channel.into(),
            })
            .await
            .map(drop),
        Rpc::ListNotificationDeliveries => notifications()
            .list_notification_deliveries(pb::ListNotificationDeliveriesRequest {
                vault: "vaults/v".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        Rpc::DeleteDeadLetter => jobs()
            .delete_dead_letter(pb::DeleteDeadLetterRequest {
                name: format!("deadLetters/{GHOST_JOB}"),
            })
            .await
            .map(drop),
        Rpc::ClaimTask => workers()
            .claim_task(pb::ClaimTaskRequest {
                job_id: GHOST_JOB.into(),
                worker_id: "w:1".into(),
                pg_tool_majors: Vec::new(),
                connections: 0,
            })
            .await
            .map(drop),
        Rpc::Heartbeat => workers()
            .heartbeat(pb::HeartbeatRequest::default())
            .await
            .map(drop),
        Rpc::CompleteTask => workers()
            .complete_task(pb::CompleteTaskRequest::default())
            .await
            .map(drop),
        Rpc::FailTask => workers()
            .fail_task(pb::FailTaskRequest::default())
            .await
            .map(drop),
        Rpc::OfferChunks => workers()
            .offer_chunks(pb::OfferChunksRequest::default())
            .await
            .map(drop),
        Rpc::ClaimChunk => workers()
            .claim_chunk(pb::ClaimChunkRequest::default())
            .await
            .map(drop),
        Rpc::HeartbeatChunk => workers()
            .heartbeat_chunk(pb::HeartbeatChunkRequest::default())
            .await
            .map(drop),
        Rpc::CompleteChunk => workers()
            .complete_chunk(pb::CompleteChunkRequest::default())
            .await
            .map(drop),
        Rpc::FailChunk => workers()
            .fail_chunk(pb::FailChunkRequest::default())
            .await
            .map(drop),
        Rpc::ListChunks => workers()
            .list_chunks(pb::ListChunksRequest::default())
            .await
            .map(drop),
        Rpc::CreateToken => access()
            .create_token(pb::CreateTokenRequest::default())
            .await
            .map(drop),
        Rpc::ListTokens => access()
            .list_tokens(pb::ListTokensRequest {})
            .await
            .map(drop),
        Rpc::RevokeToken => access()
            .revoke_token(pb::RevokeTokenRequest {
                name: GHOST_TOKEN.into(),
            })
            .await
            .map(drop),
        Rpc::AssignRole => access()
            .assign_role(pb::AssignRoleRequest::default())
            .await
            .map(drop),
        Rpc::ListRoles => access()
            .list_roles(pb::ListRolesRequest::default())
            .await
            .map(drop),
        Rpc::RemoveRole => access()
            .remove_role(pb::RemoveRoleRequest {
                principal: GHOST_TOKEN.into(),
                scope: String::new(),
            })
            .await
            .map(drop),
        Rpc::CreateAgent => agents()
            .create_agent(pb::CreateAgentRequest::default())
            .await
            .map(drop),
        Rpc::GetAgent => agents()
            .get_agent(pb::GetAgentRequest {
                name: "agents/ghost".into(),
            })
            .await
            .map(drop),
        Rpc::ListAgents => agents()
            .list_agents(pb::ListAgentsRequest::default())
            .await
            .map(drop),
        Rpc::DeleteAgent => agents()
            .delete_agent(pb::DeleteAgentRequest {
                name: "agents/ghost".into(),
            })
            .await
            .map(drop),
        // A stream that ends before hello: refused however far it gets.
        Rpc::Connect => agents()
            .connect(tokio_stream::iter(Vec::<pb::AgentMessage>::new()))
            .await
            .map(drop),
        Rpc::ClaimProbe => agents()
            .claim_probe(pb::ClaimProbeRequest::default())
            .await
            .map(drop),
        Rpc::CompleteProbe => agents()
            .complete_probe(pb::CompleteProbeRequest::default())
            .await
            .map(drop),
        Rpc::TestPermissions => access()
            .test_permissions(pb::TestPermissionsRequest {
                resource: "vaults/v".into(),
                permissions: vec!["BackupNow".into()],
            })
            .await
            .map(drop),
    }
}

async fn create_token(h: &Harness, name: &str, role: Role, scope: &str) -> String {
    AccessServiceClient::with_interceptor(h.channel.clone(), bearer(Some(common::TOKEN)))
        .create_token(pb::CreateTokenRequest {
            display_name: name.into(),
            role: role.as_str().into(),
            scope: scope.into(),
        })
        .await
        .expect("owner creates tokens")
        .into_inner()
        .secret
}

#[tokio::test]
async fn every_rpc_with_every_role() {
    let h = Harness::start().await;
    h.fixture().await;
    let mut checked = 0;
    for role in Role::ALL {
        let token = create_token(&h, &format!("{role} token"), role, "").await;
        for rpc in Rpc::ALL {
            let outcome = call(rpc, &h.channel, Some(&token)).await;
            let denied = matches!(&outcome, Err(s) if s.code() == Code::PermissionDenied);
            let allowed = role.grants(rpc.permission());
            assert_eq!(
                denied,
                !allowed,
                "{role} calling {rpc:?}: expected {}, got {outcome:?}",
                if allowed {
                    "allowed"
                } else {
                    "PermissionDenied"
                }
            );
            if let Err(status) = &outcome {
                assert!(
                    !status.message().contains(&token),
                    "token echoed by {rpc:?}"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 5 * Rpc::ALL.len());
    for rpc in Rpc::ALL {
        let status = call(rpc, &h.channel, None).await.expect_err("no token");
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "{rpc:?} without a token"
        );
    }
    h.stop().await;
}

#[tokio::test]
async fn an_agent_token_reaches_only_the_worker_and_agent_calls_and_its_role_is_not_assignable() {
    let h = Harness::start().await;
    h.fixture().await;
    let created =
        AgentServiceClient::with_interceptor(h.channel.clone(), bearer(Some(common::TOKEN)))
            .create_agent(pb::CreateAgentRequest {
                agent_id: "dc1".into(),
                agent: Some(pb::Agent {
                    region: "local".into(),
                    ..Default::default()
                }),
            })
            .await
            .expect("create agent")
            .into_inner();
    let token = created.token;
    for rpc in Rpc::ALL {
        let outcome = call(rpc, &h.channel, Some(&token)).await;
        let denied = matches!(&outcome, Err(s) if s.code() == Code::PermissionDenied);
        assert_eq!(
            denied,
            !Role::Agent.grants(rpc.permission()),
            "Agent calling {rpc:?}: got {outcome:?}"
        );
    }
    let mut owner =
        AccessServiceClient::with_interceptor(h.channel.clone(), bearer(Some(common::TOKEN)));
    let refused = owner
        .create_token(pb::CreateTokenRequest {
            display_name: "fake agent".into(),
            role: "Agent".into(),
            scope: String::new(),
        })
        .await
        .expect_err("the Agent role is not assignable");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("pgvault agent create"),
        "{}",
        refused.message()
    );
    let tokens = owner
        .list_tokens(pb::ListTokensRequest {})
        .await
        .expect("list")
        .into_inner()
        .tokens;
    let agent_token = tokens
        .iter()
        .find(|t| t.display_name == "agent dc1")
        .expect("the agent's token");
    let refused = owner
        .assign_role(pb::AssignRoleRequest {
            assignment: Some(pb::RoleAssignment {
                principal: agent_token.name.clone(),
                role: "Owner".into(),
                scope: String::new(),
            }),
        })
        .await
        .expect_err("an agent's token keeps its role");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    h.stop().await;
}

#[tokio::test]
async fn every_rpc_refuses_a_token_whose_roles_are_all_on_another_vault() {
    let h = Harness::start().await;
    h.fixture().await;
    h.vaults()
        .create_vault(pb::CreateVaultRequest {
            vault_id: "other".into(),
            vault: Some(pb::Vault {
                standard_datastore: format!("file://{}", h.datastore_dir.path().display()),
                region: "local".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("create the other vault");
    // Owner grants every permission, so the gate admits the token to every
    // vault-scoped call; each handler must then refuse vault "v".
    let elsewhere = create_token(&h, "owner elsewhere", Role::Owner, "vaults/other").await;
    for rpc in Rpc::ALL {
        let outcome = call(rpc, &h.channel, Some(&elsewhere)).await;
        assert!(
            matches!(&outcome, Err(s) if s.code() == Code::PermissionDenied),
            "{rpc:?} ({:?} scope) with an Owner of another vault: expected PermissionDenied, got {outcome:?}",
            rpc.scope()
        );
    }
    h.stop().await;
}

#[tokio::test]
async fn a_path_without_a_permission_is_refused_even_to_an_owner() {
    let h = Harness::start().await;
    let mut grpc = tonic::client::Grpc::new(h.channel.clone());
    grpc.ready().await.expect("channel ready");
    let mut request = Request::new(pb::ListVaultsRequest::default());
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", common::TOKEN).parse().expect("ascii"),
    );
    let path = http::uri::PathAndQuery::from_static("/pgvault.v1.VaultService/ListEverything");
    let status = grpc
        .unary::<_, pb::ListVaultsResponse, _>(request, path, tonic::codec::ProstCodec::default())
        .await
        .expect_err("no such RPC");
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    assert!(
        status.message().contains("no permission"),
        "{}",
        status.message()
    );
    h.stop().await;
}

#[tokio::test]
async fn vault_roles_apply_to_their_vault_and_revoked_tokens_stop_working() {
    let h = Harness::start().await;
    h.fixture().await;
    let operator = create_token(&h, "v operator", Role::BackupOperator, "vaults/v").await;
    // On its vault: backup now is authorised (the instance does not exist).
    let status = call(Rpc::BackupNow, &h.channel, Some(&operator))
        .await
        .expect_err("ghost");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    // Not a configuration change, and nothing outside the vault.
    let status = call(Rpc::CreatePolicy, &h.channel, Some(&operator))
        .await
        .expect_err("denied");
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = call(Rpc::ListVaults, &h.channel, Some(&operator))
        .await
        .expect_err("denied");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("pgvault role assign"),
        "{}",
        status.message()
    );

    let mut owner =
        AccessServiceClient::with_interceptor(h.channel.clone(), bearer(Some(common::TOKEN)));
    let roles = owner
        .list_roles(pb::ListRolesRequest::default())
        .await
        .expect("list roles")
        .into_inner()
        .assignments;
    let scoped = roles
        .iter()
        .find(|a| a.scope == "vaults/v")
        .expect("the vault assignment is listed");
    assert_eq!(scoped.role, "BackupOperator");
    let principal = scoped.principal.clone();
    owner
        .assign_role(pb::AssignRoleRequest {
            assignment: Some(pb::RoleAssignment {
                principal: principal.clone(),
                role: "BackupReader".into(),
                scope: String::new(),
            }),
        })
        .await
        .expect("assign a global role");
    call(Rpc::ListVaults, &h.channel, Some(&operator))
        .await
        .expect("global reader lists vaults");
    owner
        .remove_role(pb::RemoveRoleRequest {
            principal: principal.clone(),
            scope: String::new(),
        })
        .await
        .expect("remove the global role");
    let status = call(Rpc::ListVaults, &h.channel, Some(&operator))
        .await
        .expect_err("removed");
    assert_eq!(status.code(), Code::PermissionDenied);

    let tokens = owner
        .list_tokens(pb::ListTokensRequest {})
        .await
        .expect("list")
        .into_inner()
        .tokens;
    assert!(
        tokens
            .iter()
            .any(|t| t.name == principal && t.display_name == "v operator")
    );
    owner
        .revoke_token(pb::RevokeTokenRequest { name: principal })
        .await
        .expect("revoke");
    let status = call(Rpc::BackupNow, &h.channel, Some(&operator))
        .await
        .expect_err("revoked");
    assert_eq!(status.code(), Code::Unauthenticated);
    h.stop().await;
}

#[tokio::test]
async fn test_permissions_answers_from_the_callers_own_roles_and_the_rpc_table() {
    let h = Harness::start().await;
    h.fixture().await;
    let operator = create_token(&h, "v operator", Role::BackupOperator, "vaults/v").await;
    let asked: Vec<String> = [
        "BackupNow",
        "RestoreAsDatabase",
        "StopProtection",
        "GetJob",
        "ListServers",
    ]
    .map(String::from)
    .to_vec();
    let mut access =
        AccessServiceClient::with_interceptor(h.channel.clone(), bearer(Some(&operator)));
    let on_v = access
        .test_permissions(pb::TestPermissionsRequest {
            resource: "vaults/v/backupInstances/any".into(),
            permissions: asked.clone(),
        })
        .await
        .expect("a role on v may ask about v")
        .into_inner();
    // Vault-scoped RPCs count the vault role; ListServers is global.
    assert_eq!(
        on_v.permissions,
        ["BackupNow", "RestoreAsDatabase", "GetJob"]
    );
    assert_eq!(on_v.display_name, "v operator");
    assert!(on_v.principal.starts_with("tokens/"), "{}", on_v.principal);
    // Asking globally, or about a vault it cannot read, is itself refused.
    for resource in ["", "vaults/other"] {
        let status = access
            .test_permissions(pb::TestPermissionsRequest {
                resource: resource.into(),
                permissions: asked.clone(),
            })
            .await
            .expect_err("no role there");
        assert_eq!(status.code(), Code::PermissionDenied, "{resource:?}");
    }
    let mut owner =
        AccessServiceClient::with_interceptor(h.channel.clone(), bearer(Some(common::TOKEN)));
    let everything = owner
        .test_permissions(pb::TestPermissionsRequest {
            resource: String::new(),
            permissions: asked.clone(),
        })
        .await
        .expect("owner")
        .into_inner();
    assert_eq!(everything.permissions, asked);
    let status = owner
        .test_permissions(pb::TestPermissionsRequest {
            resource: String::new(),
            permissions: vec!["BackupNow".into(), "MakeCoffee".into()],
        })
        .await
        .expect_err("unknown name");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("permissions[1]"),
        "{}",
        status.message()
    );
    let status = owner
        .test_permissions(pb::TestPermissionsRequest {
            resource: "servers/s".into(),
            permissions: asked,
        })
        .await
        .expect_err("not a vault");
    assert_eq!(status.code(), Code::InvalidArgument);
    h.stop().await;
}
