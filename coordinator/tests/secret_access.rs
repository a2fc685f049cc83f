//! Secret references and vault access to secrets, against a real state
//! database: configure refuses secrets the vault was not granted (keeping the
//! row, naming the owner's command), "assign missing permissions" grants for
//! owners only, every claim re-reads the reference (latest, pinned, env://,
//! file://) and the grant, and bad references name the forms expected.

use crate::common;

use common::{DB_PASSWORD, Harness};
use pgvault_proto::v1 as pb;
use pgvault_proto::v1::access_service_client::AccessServiceClient;
use pgvault_proto::v1::backup_instance_service_client::BackupInstanceServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Code, Request, Status};

#[derive(Clone)]
struct Bearer(MetadataValue<Ascii>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

fn bearer(token: &str) -> Bearer {
    Bearer(format!("Bearer {token}").parse().expect("ascii token"))
}

/// A token with `role` on `scope` ("" = global).
async fn token(h: &Harness, role: &str, scope: &str) -> String {
    AccessServiceClient::with_interceptor(h.channel.clone(), bearer(common::TOKEN))
        .create_token(pb::CreateTokenRequest {
            display_name: format!("{role} {scope}"),
            role: role.into(),
            scope: scope.into(),
        })
        .await
        .expect("owner creates tokens")
        .into_inner()
        .secret
}

fn request(database: &str, secret: &str, assign: bool) -> pb::ConfigureBackupRequest {
    pb::ConfigureBackupRequest {
        parent: "vaults/v".into(),
        policy: "vaults/v/policies/daily".into(),
        rows: vec![pb::ConfigureBackupRow {
            server: "servers/pg1".into(),
            database: database.into(),
            secret: secret.into(),
        }],
        default_secret: String::new(),
        assign_missing_permissions: assign,
        all_databases_of: String::new(),
        role_passwords: false,
    }
}

async fn configure(h: &Harness, database: &str, secret: &str) -> pb::ConfigureBackupResult {
    h.instances()
        .configure_backup(request(database, secret, false))
        .await
        .expect("configure answers")
        .into_inner()
        .results
        .remove(0)
}

async fn put(h: &Harness, id: &str, value: String) -> pb::Secret {
    h.secrets()
        .put_secret(pb::PutSecretRequest {
            secret_id: id.into(),
            value,
        })
        .await
        .expect("put secret")
        .into_inner()
}

async fn grant(h: &Harness, secret: &str, vault: &str) -> pb::Secret {
    h.secrets()
        .grant_secret_access(pb::GrantSecretAccessRequest {
            secret: format!("secrets/{secret}"),
            vault: format!("vaults/{vault}"),
        })
        .await
        .expect("grant")
        .into_inner()
}

fn code(result: &pb::ConfigureBackupResult) -> String {
    result
        .error
        .as_ref()
        .map(|e| e.code.clone())
        .unwrap_or_else(|| "OK".into())
}

/// Starts a backup of `instance` and claims it; the task, or why not.
async fn backup_and_claim(h: &Harness, instance: &str) -> (String, pb::ClaimTaskResponse) {
    let job = h
        .instances()
        .backup_now(pb::BackupNowRequest {
            name: instance.into(),
            rule: pb::RetentionRuleKind::Default as i32,
            workers: 0,
        })
        .await
        .expect("backup now")
        .into_inner();
    let claim = h
        .workers()
        .claim_task(pb::ClaimTaskRequest {
            job_id: job.name.trim_start_matches("jobs/").into(),
            worker_id: "test:1".into(),
            pg_tool_majors: Vec::new(),
            connections: 0,
        })
        .await
        .expect("claim answers")
        .into_inner();
    (job.name, claim)
}

fn source_password(claim: &pb::ClaimTaskResponse) -> String {
    match claim.task.as_ref().and_then(|t| t.kind.as_ref()) {
        Some(pb::task::Kind::Backup(b)) => b.source.as_ref().expect("source").password.clone(),
        other => panic!("not a backup task: {}", other.is_some()),
    }
}

async fn job_error(h: &Harness, job: &str) -> pb::JobError {
    let job = h
        .jobs()
        .get_job(pb::GetJobRequest { name: job.into() })
        .await
        .expect("get job")
        .into_inner();
    assert_eq!(job.state, pb::JobState::Failed as i32, "{:?}", job.error);
    job.error.expect("failed job has an error")
}

#[tokio::test]
async fn an_ungranted_secret_keeps_the_row_with_the_owner_command_and_revalidation_protects_it() {
    let h = Harness::start().await;
    h.fixture().await;
    let result = configure(&h, "app", "secrets/pg1-admin").await;
    assert_eq!(code(&result), "UserErrorMissingPermissionsOnSecretStore");
    // The catalogue's action says what to do; the message names the command.
    let error = result.error.as_ref().expect("error");
    assert!(
        error
            .message
            .contains("pgvault secret grant --vault v pg1-admin"),
        "{error:?}"
    );
    assert!(
        error.recommended_action.contains("pgvault secret grant"),
        "{error:?}"
    );
    let kept = result.backup_instance.expect("the row is kept");
    assert_eq!(
        kept.protection_state,
        pb::ProtectionState::ValidationFailed as i32
    );
    // Not protected: backups are refused, and configuring again reuses the row.
    let status = h
        .instances()
        .backup_now(pb::BackupNowRequest {
            name: kept.name.clone(),
            rule: 0,
            workers: 0,
        })
        .await
        .expect_err("not protected");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("revalidate"),
        "{}",
        status.message()
    );
    let again = configure(&h, "app", "secret://pg1-admin").await;
    assert_eq!(
        again.backup_instance.as_ref().map(|i| &i.name),
        Some(&kept.name)
    );

    let granted = grant(&h, "pg1-admin", "v").await;
    assert_eq!(granted.granted_vaults, ["vaults/v"]);
    let listed = h
        .secrets()
        .list_secrets(pb::ListSecretsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.secrets[0].granted_vaults, ["vaults/v"]);
    let result = h
        .instances()
        .revalidate_backup_instance(pb::RevalidateBackupInstanceRequest {
            name: kept.name.clone(),
            assign_missing_permissions: false,
        })
        .await
        .expect("revalidate")
        .into_inner();
    assert_eq!(code(&result), "OK");
    let instance = result.backup_instance.expect("instance");
    assert_eq!(
        instance.protection_state,
        pb::ProtectionState::Configured as i32
    );
    assert_eq!(instance.secret, "secrets/pg1-admin");

    // Revoking the grant fails the next job at claim, with the fix.
    h.secrets()
        .revoke_secret_access(pb::RevokeSecretAccessRequest {
            secret: "secrets/pg1-admin".into(),
            vault: "vaults/v".into(),
        })
        .await
        .expect("revoke");
    let (job, claim) = backup_and_claim(&h, &instance.name).await;
    assert!(!claim.claimed);
    let error = job_error(&h, &job).await;
    assert_eq!(error.code, "UserErrorMissingPermissionsOnSecretStore");
    assert!(
        error.recommended_action.contains("pgvault secret grant"),
        "{error:?}"
    );
    h.stop().await;
}

#[tokio::test]
async fn assign_missing_permissions_grants_for_vault_owners_and_names_the_command_for_others() {
    let h = Harness::start().await;
    h.fixture().await;
    let contributor = token(&h, "BackupContributor", "vaults/v").await;
    let owner = token(&h, "Owner", "vaults/v").await;
    let as_token =
        |t: &str| BackupInstanceServiceClient::with_interceptor(h.channel.clone(), bearer(t));

    let result = as_token(&contributor)
        .configure_backup(request("app", "secrets/pg1-admin", true))
        .await
        .expect("contributors configure")
        .into_inner()
        .results
        .remove(0);
    assert_eq!(code(&result), "UserCannotAssignRoles");
    let error = result.error.expect("error");
    assert!(
        error
            .message
            .contains("pgvault secret grant --vault v pg1-admin"),
        "{error:?}"
    );
    assert!(
        error.recommended_action.contains("pgvault secret grant"),
        "{error:?}"
    );
    assert!(!format!("{error:?}").contains(&contributor));

    let result = as_token(&owner)
        .configure_backup(request("app", "secrets/pg1-admin", true))
        .await
        .expect("owners configure")
        .into_inner()
        .results
        .remove(0);
    assert_eq!(code(&result), "OK", "{:?}", result.error);
    // The grant was made inline and is listed.
    let listed = h
        .secrets()
        .list_secrets(pb::ListSecretsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.secrets[0].granted_vaults, ["vaults/v"]);

    // Granting directly: Owner only, on the vault it names.
    let grant_as = |t: &str| {
        pgvault_proto::v1::secret_service_client::SecretServiceClient::with_interceptor(
            h.channel.clone(),
            bearer(t),
        )
    };
    let request = || pb::RevokeSecretAccessRequest {
        secret: "secrets/pg1-admin".into(),
        vault: "vaults/v".into(),
    };
    let denied = grant_as(&contributor)
        .revoke_secret_access(request())
        .await
        .expect_err("contributors may not revoke");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let revoked = grant_as(&owner)
        .revoke_secret_access(request())
        .await
        .expect("vault owners may")
        .into_inner();
    assert!(revoked.granted_vaults.is_empty());
    h.stop().await;
}

#[tokio::test]
async fn restores_take_any_reference_the_vault_may_read() {
    let h = Harness::start().await;
    h.fixture().await;
    let instance = h.protect("app").await;
    let (job, claim) = backup_and_claim(&h, &instance).await;
    assert!(claim.claimed, "{}", claim.reason);
    h.workers()
        .complete_task(pb::CompleteTaskRequest {
            tables: Vec::new(),
            job_id: job.trim_start_matches("jobs/").into(),
            lease_token: claim.lease_token,
            result: Some(pb::complete_task_request::Result::Backup(
                pb::BackupResult {
                    snapshot_time: Some(prost_types::Timestamp {
                        seconds: 1_700_000_000,
                        nanos: 0,
                    }),
                    manifest_sha256: "ab".repeat(32),
                    server_version: "15".into(),
                    stage_split: None,
                    ..Default::default()
                },
            )),
            progress: None,
        })
        .await
        .expect("complete");
    let point = h
        .points()
        .list_recovery_points(pb::ListRecoveryPointsRequest {
            parent: instance.clone(),
            ..Default::default()
        })
        .await
        .expect("points")
        .into_inner()
        .recovery_points
        .remove(0)
        .name;
    let restore = |secret: &str| pb::RestoreAsDatabaseRequest {
        recovery_point: point.clone(),
        target_database: "copy".into(),
        secret: secret.into(),
        ..Default::default()
    };

    // A secret the vault was not granted is refused before any job exists.
    put(&h, "other", h.connection_string()).await;
    let status = h
        .restores()
        .restore_as_database(restore("secrets/other"))
        .await
        .expect_err("not granted");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status
            .message()
            .contains("UserErrorMissingPermissionsOnSecretStore"),
        "{}",
        status.message()
    );
    assert!(
        status
            .message()
            .contains("pgvault secret grant --vault v other"),
        "{}",
        status.message()
    );
    let status = h
        .restores()
        .restore_as_database(restore("other"))
        .await
        .expect_err("bad reference");
    assert_eq!(status.code(), Code::InvalidArgument);

    // A pinned version is what the worker gets, whatever came after it.
    put(&h, "pg1-admin", "user=postgres password=Later-pw".into()).await;
    let job = h
        .restores()
        .restore_as_database(restore("secret://pg1-admin/1"))
        .await
        .expect("restore")
        .into_inner();
    let claim = h
        .workers()
        .claim_task(pb::ClaimTaskRequest {
            job_id: job.name.trim_start_matches("jobs/").into(),
            worker_id: "test:2".into(),
            pg_tool_majors: Vec::new(),
            connections: 0,
        })
        .await
        .expect("claim")
        .into_inner();
    assert!(claim.claimed, "{}", claim.reason);
    match claim.task.and_then(|t| t.kind) {
        Some(pb::task::Kind::Restore(r)) => {
            assert_eq!(r.target.expect("target").password, DB_PASSWORD)
        }
        _ => panic!("a restore task"),
    }
    h.stop().await;
}

#[tokio::test]
async fn failed_rows_block_neither_protecting_the_database_elsewhere_nor_deleting_their_vault() {
    let h = Harness::start().await;
    h.fixture().await;
    let failed = configure(&h, "app", "secrets/pg1-admin").await;
    let kept = failed.backup_instance.expect("kept");
    h.vaults()
        .create_vault(pb::CreateVaultRequest {
            vault_id: "w".into(),
            vault: Some(pb::Vault {
                standard_datastore: format!("file://{}", h.datastore_dir.path().display()),
                region: "local".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("vault w");
    h.policies()
        .create_policy(pb::CreatePolicyRequest {
            parent: "vaults/w".into(),
            policy_id: "daily".into(),
            policy: Some(pb::Policy {
                schedule: Some(pb::Schedule {
                    weekdays: vec![pb::Weekday::Monday as i32],
                    time_of_day: "02:00".into(),
                    time_zone: "UTC".into(),
                }),
                ..Default::default()
            }),
        })
        .await
        .expect("policy");
    grant(&h, "pg1-admin", "w").await;
    let mut other = request("app", "secrets/pg1-admin", false);
    other.parent = "vaults/w".into();
    other.policy = "vaults/w/policies/daily".into();
    let result = h
        .instances()
        .configure_backup(other)
        .await
        .expect("configure in w")
        .into_inner()
        .results
        .remove(0);
    assert_eq!(code(&result), "OK", "{:?}", result.error);

    // The kept row in v now fails re-validation: w protects the database.
    grant(&h, "pg1-admin", "v").await;
    let result = h
        .instances()
        .revalidate_backup_instance(pb::RevalidateBackupInstanceRequest {
            name: kept.name,
            assign_missing_permissions: false,
        })
        .await
        .expect("revalidate")
        .into_inner();
    assert_eq!(code(&result), "UserErrorDatabaseAlreadyProtected");
    assert_eq!(
        result.backup_instance.expect("kept").protection_state,
        pb::ProtectionState::ValidationFailed as i32
    );

    // Kept rows protect nothing, so they do not keep their vault alive.
    h.vaults()
        .delete_vault(pb::DeleteVaultRequest {
            name: "vaults/v".into(),
        })
        .await
        .expect("a vault holding only failed rows can be deleted");
    h.stop().await;
}

#[tokio::test]
async fn every_claim_rereads_the_secret_and_pinned_versions_stay_pinned() {
    let h = Harness::start().await;
    h.fixture().await;
    grant(&h, "pg1-admin", "v").await;
    let latest = configure(&h, "app", "secret://pg1-admin").await;
    let latest = latest.backup_instance.expect("protected").name;
    let pinned = configure(&h, "postgres", "secret://pg1-admin/1").await;
    assert_eq!(code(&pinned), "OK", "{:?}", pinned.error);
    let pinned = pinned.backup_instance.expect("protected");
    assert_eq!(pinned.secret, "secret://pg1-admin/1");

    // Rotate: version 2 holds another password; nothing is reconfigured.
    let rotated = format!(
        "host=127.0.0.1 port={} user=postgres password=Rotated-pw-2 sslmode=disable",
        h.cluster.port()
    );
    assert_eq!(put(&h, "pg1-admin", rotated).await.latest_version, 2);
    let (_, claim) = backup_and_claim(&h, &latest).await;
    assert!(claim.claimed, "{}", claim.reason);
    assert_eq!(source_password(&claim), "Rotated-pw-2");
    let (_, claim) = backup_and_claim(&h, &pinned.name).await;
    assert!(claim.claimed, "{}", claim.reason);
    assert_eq!(source_password(&claim), DB_PASSWORD);

    // A pinned version that does not exist fails the row, naming it.
    let nine = h
        .instances()
        .configure_backup(pb::ConfigureBackupRequest {
            rows: vec![pb::ConfigureBackupRow {
                server: "servers/pg1".into(),
                database: "template_free".into(),
                secret: "secret://pg1-admin/9".into(),
            }],
            ..request("x", "", false)
        })
        .await
        .expect("configure")
        .into_inner()
        .results
        .remove(0);
    assert_eq!(code(&nine), "UserErrorSecretNotFound");
    assert!(
        nine.error.expect("error").message.contains("no version 9"),
        "version named"
    );
    h.stop().await;
}

#[tokio::test]
async fn env_and_file_references_are_read_by_the_coordinator_where_allowed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let allowed_dir = dir.path().to_path_buf();
    let h = Harness::start_with(|c| {
        c.external_secrets.env_prefix = Some("PGV_TEST_SA_".into());
        c.external_secrets.file_dir = Some(allowed_dir);
    })
    .await;
    h.fixture().await;
    let value = h.connection_string();
    // SAFETY: variables unique to this test; no other test reads them.
    unsafe { std::env::set_var("PGV_TEST_SA_APP", &value) };
    let file = dir.path().join("postgres.conn");
    std::fs::write(&file, format!("{value}\n")).expect("write secret file");

    let from_env = configure(&h, "app", "env://PGV_TEST_SA_APP").await;
    assert_eq!(code(&from_env), "OK", "{:?}", from_env.error);
    let from_env = from_env.backup_instance.expect("protected");
    assert_eq!(from_env.secret, "env://PGV_TEST_SA_APP");
    let from_file = configure(&h, "postgres", &format!("file://{}", file.display())).await;
    assert_eq!(code(&from_file), "OK", "{:?}", from_file.error);

    // Outside the allowed prefix or directory: refused on the row.
    let other = configure(&h, "app2", "env://HOME").await;
    assert_eq!(code(&other), "UserErrorInvalidSecret");
    let outside = configure(&h, "app2", "file:///etc/hostname").await;
    assert_eq!(code(&outside), "UserErrorInvalidSecret");

    // Gone at job time: the job fails with the fix, never the value.
    unsafe { std::env::remove_var("PGV_TEST_SA_APP") };
    let (job, claim) = backup_and_claim(&h, &from_env.name).await;
    assert!(!claim.claimed);
    let error = job_error(&h, &job).await;
    assert_eq!(error.code, "UserErrorInvalidSecret");
    assert!(error.message.contains("PGV_TEST_SA_APP"), "{error:?}");
    assert!(!error.recommended_action.is_empty());
    assert!(!format!("{error:?}").contains(DB_PASSWORD));
    h.stop().await;
}

#[tokio::test]
async fn external_references_are_refused_unless_configured_and_bad_ones_name_the_forms() {
    let h = Harness::start().await;
    h.fixture().await;
    let refused = configure(&h, "app", "env://PGV_ANYTHING").await;
    assert_eq!(code(&refused), "UserErrorInvalidSecret");
    assert!(
        refused
            .error
            .expect("error")
            .recommended_action
            .contains("secret_env_prefix")
    );
    assert!(refused.backup_instance.is_none(), "not kept");

    let bad = configure(&h, "app", "postgresql://u:Leak-pw@h/db").await;
    assert_eq!(code(&bad), "UserErrorInvalidInput");
    let message = bad.error.expect("error").message;
    assert!(message.contains("secret://NAME/VERSION"), "{message}");
    assert!(!message.contains("Leak-pw"), "{message}");

    let status = h
        .servers()
        .list_databases(pb::ListDatabasesRequest {
            name: "servers/pg1".into(),
            secret: "vault://x".into(),
        })
        .await
        .expect_err("bad reference");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("env://VAR"),
        "{}",
        status.message()
    );
    h.stop().await;
}
