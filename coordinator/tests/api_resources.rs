//! Resource APIs over a real tonic channel: vaults, policies, servers,
//! secrets, backup instances; NotFound messages; authentication; secrets
//! never echoed.

use crate::common;

use common::{DB_PASSWORD, Harness};
use pgvault_proto::v1 as pb;
use pgvault_proto::v1::vault_service_client::VaultServiceClient;
use tonic::Code;

#[tokio::test]
async fn vault_crud_and_not_found_messages() {
    let h = Harness::start().await;
    let url = format!("file://{}/std", h.datastore_dir.path().display());
    let created = h
        .vaults()
        .create_vault(pb::CreateVaultRequest {
            vault_id: "prod".into(),
            vault: Some(pb::Vault {
                standard_datastore: url.clone(),
                region: "eu".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("create")
        .into_inner();
    assert_eq!(created.name, "vaults/prod");
    assert_eq!(created.standard_datastore, url);
    assert!(
        h.datastore_dir.path().join("std").is_dir(),
        "the datastore directory is created"
    );

    let again = h
        .vaults()
        .create_vault(pb::CreateVaultRequest {
            vault_id: "prod".into(),
            vault: Some(pb::Vault {
                standard_datastore: url.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists, "{again:?}");
    assert!(again.message().contains("\"prod\""), "{}", again.message());

    let bad_id = h
        .vaults()
        .create_vault(pb::CreateVaultRequest {
            vault_id: "Prod_1".into(),
            vault: Some(pb::Vault {
                standard_datastore: url.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_id.code(), Code::InvalidArgument);
    assert!(
        bad_id.message().starts_with("vault_id:"),
        "{}",
        bad_id.message()
    );

    let bad_store = h
        .vaults()
        .create_vault(pb::CreateVaultRequest {
            vault_id: "other".into(),
            vault: Some(pb::Vault {
                standard_datastore: "ftp://nope/x".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_store.code(), Code::InvalidArgument);
    assert!(
        bad_store.message().starts_with("vault.standard_datastore:"),
        "{}",
        bad_store.message()
    );

    let got = h
        .vaults()
        .get_vault(pb::GetVaultRequest {
            name: "vaults/prod".into(),
        })
        .await
        .expect("get");
    assert_eq!(got.into_inner().region, "eu");
    let missing = h
        .vaults()
        .get_vault(pb::GetVaultRequest {
            name: "vaults/staging".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(missing.message(), "vault \"staging\" not found");

    for id in ["a1", "a2", "a3"] {
        h.vaults()
            .create_vault(pb::CreateVaultRequest {
                vault_id: id.into(),
                vault: Some(pb::Vault {
                    standard_datastore: url.clone(),
                    ..Default::default()
                }),
            })
            .await
            .expect("create");
    }
    let page1 = h
        .vaults()
        .list_vaults(pb::ListVaultsRequest {
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .unwrap();
    let page1 = page1.into_inner();
    assert_eq!(
        page1
            .vaults
            .iter()
            .map(|v| v.name.as_str())
            .collect::<Vec<_>>(),
        ["vaults/a1", "vaults/a2"]
    );
    let page2 = h
        .vaults()
        .list_vaults(pb::ListVaultsRequest {
            page_size: 2,
            page_token: page1.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        page2
            .vaults
            .iter()
            .map(|v| v.name.as_str())
            .collect::<Vec<_>>(),
        ["vaults/a3", "vaults/prod"]
    );
    assert!(page2.next_page_token.is_empty());

    h.vaults()
        .delete_vault(pb::DeleteVaultRequest {
            name: "vaults/a1".into(),
        })
        .await
        .expect("delete empty vault");
    let gone = h
        .vaults()
        .delete_vault(pb::DeleteVaultRequest {
            name: "vaults/a1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    h.stop().await;
}

#[tokio::test]
async fn policies_are_validated_and_get_a_default_rule() {
    let h = Harness::start().await;
    h.fixture().await;
    let policy = h
        .policies()
        .get_policy(pb::GetPolicyRequest {
            name: "vaults/v/policies/daily".into(),
        })
        .await
        .expect("get policy")
        .into_inner();
    let kinds: Vec<i32> = policy.retention_rules.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [
            pb::RetentionRuleKind::Default as i32,
            pb::RetentionRuleKind::Weekly as i32
        ]
    );
    assert_eq!(policy.retention_rules[0].standard_duration, "P3M");

    let invalid = |rules: Vec<pb::RetentionRule>, schedule: pb::Schedule| pb::CreatePolicyRequest {
        parent: "vaults/v".into(),
        policy_id: "bad".into(),
        policy: Some(pb::Policy {
            schedule: Some(schedule),
            retention_rules: rules,
            ..Default::default()
        }),
    };
    let monday = pb::Schedule {
        weekdays: vec![1],
        time_of_day: "01:00".into(),
        time_zone: String::new(),
    };
    let err = h
        .policies()
        .create_policy(invalid(
            vec![pb::RetentionRule {
                kind: pb::RetentionRuleKind::Monthly as i32,
                standard_duration: "P3D".into(),
                archive_duration: String::new(),
            }],
            monday.clone(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("MONTHLY"), "{}", err.message());
    assert!(
        err.message().contains("7 days (P7D) to 10 years (P10Y)"),
        "{}",
        err.message()
    );

    let err = h
        .policies()
        .create_policy(invalid(
            vec![pb::RetentionRule {
                kind: pb::RetentionRuleKind::Yearly as i32,
                standard_duration: "P1Y".into(),
                archive_duration: "P1M".into(),
            }],
            monday.clone(),
        ))
        .await
        .unwrap_err();
    assert!(
        err.message().contains("YEARLY") && err.message().contains("6 months"),
        "{}",
        err.message()
    );

    let no_days = pb::Schedule {
        weekdays: vec![],
        ..monday.clone()
    };
    let err = h
        .policies()
        .create_policy(invalid(vec![], no_days))
        .await
        .unwrap_err();
    assert!(
        err.message().starts_with("policy.schedule.weekdays"),
        "{}",
        err.message()
    );
    let bad_zone = pb::Schedule {
        time_zone: "Atlantis/Capital".into(),
        ..monday.clone()
    };
    let err = h
        .policies()
        .create_policy(invalid(vec![], bad_zone))
        .await
        .unwrap_err();
    assert!(err.message().contains("time_zone"), "{}", err.message());
    let bad_time = pb::Schedule {
        time_of_day: "25:00".into(),
        ..monday
    };
    let err = h
        .policies()
        .create_policy(invalid(vec![], bad_time))
        .await
        .unwrap_err();
    assert!(err.message().contains("time_of_day"), "{}", err.message());

    let missing = h
        .policies()
        .list_policies(pb::ListPoliciesRequest {
            parent: "vaults/nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.message(), "vault \"nope\" not found");
    let listed = h
        .policies()
        .list_policies(pb::ListPoliciesRequest {
            parent: "vaults/v".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.policies.len(), 1);
    h.stop().await;
}

#[tokio::test]
async fn servers_secrets_and_databases() {
    let h = Harness::start().await;
    h.fixture().await;
    let servers = h
        .servers()
        .list_servers(pb::ListServersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(servers.servers[0].name, "servers/pg1");
    let missing = h
        .servers()
        .get_server(pb::GetServerRequest {
            name: "servers/pg9".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.message(), "server \"pg9\" not found");

    let databases = h
        .servers()
        .list_databases(pb::ListDatabasesRequest {
            name: "servers/pg1".into(),
            secret: "secrets/pg1-admin".into(),
        })
        .await
        .expect("list databases")
        .into_inner()
        .databases;
    assert!(
        databases.contains(&"app".to_string()) && databases.contains(&"postgres".to_string()),
        "{databases:?}"
    );
    assert!(
        !databases.iter().any(|d| d.starts_with("template")),
        "{databases:?}"
    );

    // A new version; a bad password makes the connection fail clearly, without echoing it.
    let put = h
        .secrets()
        .put_secret(pb::PutSecretRequest {
            secret_id: "pg1-admin".into(),
            value: format!(
                "postgresql://postgres:wrong-Pa55@127.0.0.1:{}/postgres",
                h.cluster.port()
            ),
        })
        .await
        .expect("second version")
        .into_inner();
    assert_eq!(put.latest_version, 2);
    let err = h
        .servers()
        .list_databases(pb::ListDatabasesRequest {
            name: "servers/pg1".into(),
            secret: "secrets/pg1-admin".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("password authentication failed"),
        "{}",
        err.message()
    );
    assert!(!err.message().contains("wrong-Pa55"), "{}", err.message());

    let invalid = h
        .secrets()
        .put_secret(pb::PutSecretRequest {
            secret_id: "x".into(),
            value: "host=h password=leak-me bogus".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert!(!invalid.message().contains("leak-me") && !format!("{invalid:?}").contains("leak-me"));

    let listed = h
        .secrets()
        .list_secrets(pb::ListSecretsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let shown = format!("{listed:?} {put:?}");
    assert!(
        !shown.contains(DB_PASSWORD) && !shown.contains("wrong-Pa55"),
        "{shown}"
    );
    assert_eq!(listed.secrets[0].name, "secrets/pg1-admin");

    // Nothing in the state database holds a value in clear.
    let client = h.cluster.connect("postgres").await.expect("connect");
    let rows = client
        .query("SELECT ciphertext FROM secret_versions", &[])
        .await
        .expect("query");
    for row in rows {
        let bytes: Vec<u8> = row.get(0);
        assert!(
            !bytes
                .windows(DB_PASSWORD.len())
                .any(|w| w == DB_PASSWORD.as_bytes())
        );
    }
    h.stop().await;
}

#[tokio::test]
async fn servers_naming_an_unknown_agent_are_refused_and_old_rows_still_read() {
    let h = Harness::start().await;
    let refused = h
        .servers()
        .register_server(pb::RegisterServerRequest {
            server_id: "hidden".into(),
            server: Some(pb::Server {
                host: "10.0.0.9".into(),
                region: "local".into(),
                agent: "agent-1".into(),
                ..Default::default()
            }),
        })
        .await
        .expect_err("no such agent");
    assert_eq!(refused.code(), Code::NotFound);
    assert!(
        refused.message().starts_with("agent \"agent-1\" not found")
            && refused
                .message()
                .contains("pgvault agent create agent-1 --region local"),
        "{}",
        refused.message()
    );
    let listed = h
        .servers()
        .list_servers(pb::ListServersRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert!(listed.servers.is_empty(), "{listed:?}");

    // A row written before agents existed still reads, agent included.
    let client = h.cluster.connect("postgres").await.expect("connect");
    client
        .execute(
            "INSERT INTO servers (id, host, port, region, agent) VALUES ('old', '10.0.0.8', 5432, 'local', 'agent-0')",
            &[],
        )
        .await
        .expect("insert an old row");
    let old = h
        .servers()
        .get_server(pb::GetServerRequest {
            name: "servers/old".into(),
        })
        .await
        .expect("old rows read")
        .into_inner();
    assert_eq!(old.agent, "agent-0");
    h.stop().await;
}

#[tokio::test]
async fn configure_backup_protects_a_database_once() {
    let h = Harness::start().await;
    h.fixture().await;
    let name = h.protect("app").await;
    assert!(name.starts_with("vaults/v/backupInstances/"), "{name}");
    h.servers()
        .register_server(pb::RegisterServerRequest {
            server_id: "far".into(),
            server: Some(pb::Server {
                host: "127.0.0.1".into(),
                port: 5432,
                region: "elsewhere".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("register far server");

    let second = h
        .instances()
        .configure_backup(pb::ConfigureBackupRequest {
            parent: "vaults/v".into(),
            policy: "vaults/v/policies/daily".into(),
            rows: vec![
                pb::ConfigureBackupRow {
                    server: "servers/pg1".into(),
                    database: "app".into(),
                    secret: String::new(),
                },
                pb::ConfigureBackupRow {
                    server: "servers/pg1".into(),
                    database: "template1".into(),
                    secret: String::new(),
                },
                pb::ConfigureBackupRow {
                    server: "servers/missing".into(),
                    database: "x".into(),
                    secret: String::new(),
                },
                pb::ConfigureBackupRow {
                    server: "servers/pg1".into(),
                    // Checked before the connection: the database need not exist.
                    database: "not_yet".into(),
                    secret: "secrets/none".into(),
                },
                pb::ConfigureBackupRow {
                    server: "servers/pg1".into(),
                    database: "postgres".into(),
                    secret: String::new(),
                },
                pb::ConfigureBackupRow {
                    server: "servers/far".into(),
                    database: "app".into(),
                    secret: String::new(),
                },
            ],
            default_secret: "secrets/pg1-admin".into(),
            assign_missing_permissions: true,
            all_databases_of: String::new(),
            role_passwords: false,
        })
        .await
        .expect("configure")
        .into_inner();
    let codes: Vec<String> = second
        .results
        .iter()
        .map(|r| {
            r.error
                .as_ref()
                .map(|e| e.code.clone())
                .unwrap_or_else(|| "OK".into())
        })
        .collect();
    assert_eq!(
        codes,
        [
            "UserErrorDatabaseAlreadyProtected",
            "UserErrorDatabaseNotProtectable",
            "UserErrorServerNotFound",
            "UserErrorSecretNotFound",
            "OK",
            "UserErrorRegionMismatch"
        ]
    );
    let dup = second.results[0].error.as_ref().unwrap();
    assert!(
        dup.message.contains("already protected") && dup.message.contains(&name),
        "{}",
        dup.message
    );
    assert!(!dup.recommended_action.is_empty());
    assert_eq!(
        second.results[0].readiness,
        pb::Readiness::FailedValidation as i32
    );
    assert_eq!(second.results[4].row, 4);

    let got = h
        .instances()
        .get_backup_instance(pb::GetBackupInstanceRequest { name: name.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (got.database.as_str(), got.server.as_str()),
        ("app", "servers/pg1")
    );
    let all = h
        .instances()
        .list_backup_instances(pb::ListBackupInstancesRequest {
            parent: "vaults/-".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.backup_instances.len(), 2);
    let unknown = format!("vaults/v/backupInstances/{}", uuid::Uuid::nil());
    let err = h
        .instances()
        .get_backup_instance(pb::GetBackupInstanceRequest {
            name: unknown.clone(),
        })
        .await;
    assert_eq!(
        err.unwrap_err().message(),
        format!("backup instance \"{unknown}\" not found")
    );

    let refused = h
        .vaults()
        .delete_vault(pb::DeleteVaultRequest {
            name: "vaults/v".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("2 backup instance"),
        "{}",
        refused.message()
    );
    h.stop().await;
}

#[tokio::test]
async fn calls_without_a_valid_token_are_refused() {
    let h = Harness::start().await;
    let mut anonymous = VaultServiceClient::new(h.channel.clone());
    let err = anonymous
        .list_vaults(pb::ListVaultsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(
        err.message().contains("Bearer <token>"),
        "{}",
        err.message()
    );

    let mut request = tonic::Request::new(pb::ListVaultsRequest::default());
    request
        .metadata_mut()
        .insert("authorization", "Bearer wrong".parse().unwrap());
    let err = anonymous.list_vaults(request).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("not valid"), "{}", err.message());

    let mut worker =
        pgvault_proto::v1::worker_service_client::WorkerServiceClient::new(h.channel.clone());
    let err = worker
        .claim_task(pb::ClaimTaskRequest {
            job_id: uuid::Uuid::new_v4().to_string(),
            worker_id: "w".into(),
            pg_tool_majors: Vec::new(),
            connections: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // Health and reflection need no token.
    let mut health = tonic_health::pb::health_client::HealthClient::new(h.channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "pgvault.v1.VaultService".into(),
        })
        .await
        .expect("health check")
        .into_inner();
    assert_eq!(
        status.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(h.channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let response = responses
        .message()
        .await
        .expect("reflection answer")
        .expect("one answer");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("list services expected: {response:?}")
    };
    let services: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for wanted in [
        "pgvault.v1.VaultService",
        "pgvault.v1.WorkerService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            services.iter().any(|s| s == wanted),
            "{wanted} missing from {services:?}"
        );
    }
    h.stop().await;
}
