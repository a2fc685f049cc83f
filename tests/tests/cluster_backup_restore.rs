//! A real cluster — coordinator, two worker processes, RabbitMQ, Azurite —
//! driven through the gRPC API: protect a pgbench database and one full of
//! awkward types and identifiers, back both up, restore both as new
//! databases, and prove them identical to their sources. Then the failures
//! users meet first: unknown ids, wrong password, missing database, and a
//! database protected twice. No password or token may reach any log.

use std::time::Duration;

use pgvault_e2e::azurite::Azurite;
use pgvault_e2e::compare::assert_identical;
use pgvault_e2e::fixtures;
use pgvault_e2e::pgvault::{Api, PgvaultCluster, TEST_TOKEN};
use pgvault_e2e::rabbitmq::RabbitMq;
use pgvault_localpg::TempCluster;
use pgvault_proto::v1::*;

const SOURCE_PASSWORD: &str = "src-Pa55word!";
const JOB_TIMEOUT: Duration = Duration::from_secs(300);

async fn setup_vault(api: &mut Api, azurite: &Azurite, source: &TempCluster) -> anyhow::Result<()> {
    api.vaults
        .create_vault(CreateVaultRequest {
            vault_id: "e2e".into(),
            vault: Some(Vault {
                region: "local".into(),
                standard_datastore: azurite.datastore_url("pgvault-e2e"),
                ..Default::default()
            }),
        })
        .await?;
    api.policies
        .create_policy(CreatePolicyRequest {
            parent: "vaults/e2e".into(),
            policy_id: "nightly".into(),
            policy: Some(Policy {
                schedule: Some(Schedule {
                    weekdays: vec![Weekday::Monday as i32, Weekday::Thursday as i32],
                    time_of_day: "02:30".into(),
                    time_zone: "Europe/Berlin".into(),
                }),
                retention_rules: vec![RetentionRule {
                    kind: RetentionRuleKind::Default as i32,
                    standard_duration: "P30D".into(),
                    archive_duration: String::new(),
                }],
                ..Default::default()
            }),
        })
        .await?;
    api.servers
        .register_server(RegisterServerRequest {
            server_id: "source".into(),
            server: Some(Server {
                host: source.host().into(),
                port: source.port().into(),
                region: "local".into(),
                ..Default::default()
            }),
        })
        .await?;
    for (id, password) in [
        ("source-admin", SOURCE_PASSWORD),
        ("wrong-password", "not-the-password"),
    ] {
        api.secrets
            .put_secret(PutSecretRequest {
                secret_id: id.into(),
                value: format!("user=postgres password={password}"),
            })
            .await?;
    }
    Ok(())
}

async fn configure(
    api: &mut Api,
    database: &str,
    secret: &str,
) -> anyhow::Result<ConfigureBackupResult> {
    let response = api
        .instances
        .configure_backup(ConfigureBackupRequest {
            parent: "vaults/e2e".into(),
            policy: "vaults/e2e/policies/nightly".into(),
            rows: vec![ConfigureBackupRow {
                server: "servers/source".into(),
                database: database.into(),
                secret: format!("secrets/{secret}"),
            }],
            default_secret: String::new(),
            assign_missing_permissions: true,
            all_databases_of: String::new(),
            role_passwords: false,
        })
        .await?
        .into_inner();
    Ok(response
        .results
        .into_iter()
        .next()
        .expect("one result per row"))
}

async fn backup(api: &mut Api, instance: &str) -> anyhow::Result<Job> {
    let job = api
        .instances
        .backup_now(BackupNowRequest {
            name: instance.into(),
            rule: RetentionRuleKind::Default as i32,
            workers: 0,
        })
        .await?
        .into_inner();
    api.wait_for_job(&job.name, JOB_TIMEOUT).await
}

async fn restore(api: &mut Api, instance: &str, target: &str) -> anyhow::Result<Job> {
    let points = api
        .recovery_points
        .list_recovery_points(ListRecoveryPointsRequest {
            parent: instance.into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .recovery_points;
    assert_eq!(
        points.len(),
        1,
        "one backup, one recovery point: {points:?}"
    );
    let job = api
        .restores
        .restore_as_database(RestoreAsDatabaseRequest {
            recovery_point: points[0].name.clone(),
            target_database: target.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    api.wait_for_job(&job.name, JOB_TIMEOUT).await
}

fn assert_state(job: &Job, state: JobState, logs: &str) {
    assert_eq!(
        JobState::try_from(job.state).unwrap_or_default(),
        state,
        "job {} ended as {:?} with {:?}\n{logs}",
        job.name,
        JobState::try_from(job.state),
        job.error
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_backs_up_and_restores_identical_databases_through_the_api() {
    let (broker, azurite) = tokio::task::spawn_blocking(|| (RabbitMq::start(), Azurite::start()))
        .await
        .unwrap();
    let (broker, azurite) = (
        broker.expect("start RabbitMQ"),
        azurite.expect("start Azurite"),
    );
    let source = TempCluster::start(SOURCE_PASSWORD).expect("start source PostgreSQL");
    fixtures::pgbench(&source, "bench", 1)
        .await
        .expect("pgbench fixture");
    fixtures::mixed(&source, "mixed")
        .await
        .expect("mixed fixture");
    let url = broker.url();
    let cluster = tokio::task::spawn_blocking(move || PgvaultCluster::start(&url, 2))
        .await
        .unwrap()
        .expect("start coordinator and two workers");
    let mut api = cluster.api().await.expect("connect to coordinator");
    setup_vault(&mut api, &azurite, &source)
        .await
        .expect("set up vault, policy, server, secrets");

    // Protect both databases, back them up, restore them, compare.
    let mut instances = Vec::new();
    for db in ["bench", "mixed"] {
        let result = configure(&mut api, db, "source-admin").await.unwrap();
        assert_eq!(result.readiness, Readiness::Success as i32, "{result:?}");
        instances.push(result.backup_instance.unwrap().name);
    }
    for (db, instance) in ["bench", "mixed"].iter().zip(&instances) {
        let job = backup(&mut api, instance).await.unwrap();
        assert_state(&job, JobState::Completed, &cluster.logs());
        assert!(
            !job.recovery_point.is_empty(),
            "a completed backup names its recovery point: {job:?}"
        );
        let target = format!("{db}_restored");
        let job = restore(&mut api, instance, &target).await.unwrap();
        assert_state(&job, JobState::Completed, &cluster.logs());
        assert_identical(&source, db, &source, &target)
            .await
            .unwrap();
    }

    // A database is protected by at most one vault.
    let again = configure(&mut api, "bench", "source-admin").await.unwrap();
    assert_eq!(
        again.readiness,
        Readiness::FailedValidation as i32,
        "{again:?}"
    );
    let error = again.error.expect("a failed row carries an error");
    assert!(
        error.message.contains("bench"),
        "the error names the database: {error:?}"
    );
    assert!(!error.recommended_action.is_empty());

    // Unknown ids are NotFound, naming the kind and the id.
    let status = api
        .vaults
        .get_vault(GetVaultRequest {
            name: "vaults/nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert!(
        status.message().contains("nope") && status.message().contains("vault"),
        "{status:?}"
    );
    let status = api
        .jobs
        .get_job(GetJobRequest {
            name: "jobs/00000000-0000-0000-0000-000000000000".into(),
        })
        .await;
    assert_eq!(status.unwrap_err().code(), tonic::Code::NotFound);

    // Configuring refuses what would fail on the first night, with stable codes.
    let refused = configure(&mut api, "postgres", "wrong-password")
        .await
        .unwrap();
    let error = refused.error.expect("a wrong password is refused");
    assert_eq!(error.code, "UserErrorDBUserAuthFailed", "{error:?}");
    assert!(!error.message.contains("not-the-password"));
    let refused = configure(&mut api, "no_such_db", "source-admin")
        .await
        .unwrap();
    assert_eq!(
        refused.error.expect("a missing database is refused").code,
        "UserErrorDBNotFound"
    );

    // The secret is read again for every job: once rotated to a wrong
    // password, the next backup fails with the same stable code.
    for password in [SOURCE_PASSWORD, "not-the-password"] {
        if password == "not-the-password" {
            // Configure with the good version first, then rotate.
            let rotated = configure(&mut api, "postgres", "rotating").await.unwrap();
            let name = rotated.backup_instance.expect("configured").name;
            api.secrets
                .put_secret(PutSecretRequest {
                    secret_id: "rotating".into(),
                    value: format!("user=postgres password={password}"),
                })
                .await
                .unwrap();
            let job = backup(&mut api, &name).await.unwrap();
            assert_state(&job, JobState::Failed, "");
            let error = job.error.expect("failed job has an error");
            assert_eq!(error.code, "UserErrorDBUserAuthFailed", "{error:?}");
            assert!(!error.message.is_empty() && !error.recommended_action.is_empty());
        } else {
            api.secrets
                .put_secret(PutSecretRequest {
                    secret_id: "rotating".into(),
                    value: format!("User Id=postgres;Password={password}"),
                })
                .await
                .unwrap();
        }
    }

    // Nothing secret reached any log line.
    let logs = cluster.logs();
    for secret in [
        SOURCE_PASSWORD,
        "not-the-password",
        TEST_TOKEN,
        "state-db-pw",
    ] {
        assert!(
            !logs.contains(secret),
            "a secret leaked into the logs:\n{logs}"
        );
    }
    drop(cluster);
    drop(broker);
    drop(azurite);
}
