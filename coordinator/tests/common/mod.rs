//! Test harness: a private PostgreSQL cluster as the state database (also
//! used as the "protected" server), a coordinator on 127.0.0.1:0, a recording
//! `TaskPublisher`, and authenticated gRPC clients over a real channel.

#![allow(dead_code)]

pub mod agent;
pub mod agent_fixture;
pub mod old_versions;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgvault_coordinator::{Coordinator, CoordinatorConfig, CoordinatorHandle};
use pgvault_localpg::TempCluster;
use pgvault_proto::v1 as pb;
use pgvault_proto::v1::backup_instance_service_client::BackupInstanceServiceClient;
use pgvault_proto::v1::job_service_client::JobServiceClient;
use pgvault_proto::v1::policy_service_client::PolicyServiceClient;
use pgvault_proto::v1::recovery_point_service_client::RecoveryPointServiceClient;
use pgvault_proto::v1::restore_service_client::RestoreServiceClient;
use pgvault_proto::v1::secret_service_client::SecretServiceClient;
use pgvault_proto::v1::server_service_client::ServerServiceClient;
use pgvault_proto::v1::vault_service_client::VaultServiceClient;
use pgvault_proto::v1::worker_service_client::WorkerServiceClient;
use pgvault_queue::{DeadLetterSource, QueueError, TaskPublisher};
use prost::Message;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

pub const TOKEN: &str = "test-owner-token-0123456789";
pub const DB_PASSWORD: &str = "state-db-Pa55word";

/// Records every published envelope; can be told to fail.
#[derive(Default)]
pub struct RecordingPublisher {
    pub published: Mutex<Vec<(String, pb::TaskEnvelope)>>,
    pub failing: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl TaskPublisher for RecordingPublisher {
    async fn publish(&self, message_id: &str, payload: Vec<u8>) -> Result<(), QueueError> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(QueueError::Closed);
        }
        let envelope = pb::TaskEnvelope::decode(payload.as_slice())
            .expect("coordinator publishes TaskEnvelopes");
        self.published
            .lock()
            .expect("lock")
            .push((message_id.to_string(), envelope));
        Ok(())
    }
}

impl RecordingPublisher {
    pub fn envelopes(&self) -> Vec<(String, pb::TaskEnvelope)> {
        self.published.lock().expect("lock").clone()
    }

    /// Waits until an envelope for `job_id` at `attempt` was published
    /// (30 s: the dispatcher polls every second, a loaded machine is slow).
    pub async fn wait_for(&self, job_id: &str, attempt: u32) -> (String, pb::TaskEnvelope) {
        for _ in 0..300 {
            if let Some(found) = self
                .envelopes()
                .into_iter()
                .find(|(_, e)| e.job_id == job_id && e.attempt == attempt)
            {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "no envelope for job {job_id} attempt {attempt}; got {:?}",
            self.envelopes()
        );
    }
}

pub type Auth = fn(Request<()>) -> Result<Request<()>, Status>;
pub type Svc = InterceptedService<Channel, Auth>;

// The signature is tonic's interceptor contract.
#[allow(clippy::result_large_err)]
fn with_token(mut request: Request<()>) -> Result<Request<()>, Status> {
    let value = format!("Bearer {TOKEN}")
        .parse()
        .map_err(|_| Status::internal("bad token"))?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

pub struct Harness {
    pub cluster: TempCluster,
    pub handle: Option<CoordinatorHandle>,
    pub publisher: Arc<RecordingPublisher>,
    pub channel: Channel,
    pub datastore_dir: tempfile::TempDir,
}

pub fn config(cluster: &TempCluster) -> CoordinatorConfig {
    let mut config = CoordinatorConfig::new(cluster.url("postgres"), [42u8; 32]);
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.bootstrap_token = Some(TOKEN.to_string());
    config.lease_ttl = Duration::from_secs(2);
    config.reaper_interval = Duration::from_millis(200);
    config.max_attempts = 2;
    config.retry_backoff = std::time::Duration::ZERO;
    config
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with(|_| {}).await
    }

    /// Like `start`, with the coordinator's configuration adjusted by `adjust`.
    pub async fn start_with(adjust: impl FnOnce(&mut CoordinatorConfig)) -> Harness {
        Harness::start_full(adjust, None).await
    }

    /// Like `start`, with the coordinator draining `dead_letters`.
    pub async fn start_draining(dead_letters: Box<dyn DeadLetterSource>) -> Harness {
        Harness::start_full(|_| {}, Some(dead_letters)).await
    }

    async fn start_full(
        adjust: impl FnOnce(&mut CoordinatorConfig),
        dead_letters: Option<Box<dyn DeadLetterSource>>,
    ) -> Harness {
        let cluster = tokio::task::spawn_blocking(|| TempCluster::start(DB_PASSWORD))
            .await
            .expect("join")
            .unwrap_or_else(|e| panic!("cannot start PostgreSQL (install postgresql-15): {e}"));
        let publisher = Arc::new(RecordingPublisher::default());
        let mut config = config(&cluster);
        adjust(&mut config);
        let handle = Coordinator::start_with_dead_letters(config, publisher.clone(), dead_letters)
            .await
            .expect("coordinator starts");
        let channel = Channel::from_shared(format!("http://{}", handle.local_addr()))
            .expect("uri")
            .connect()
            .await
            .expect("connect to coordinator");
        let datastore_dir = tempfile::tempdir().expect("tempdir");
        Harness {
            cluster,
            handle: Some(handle),
            publisher,
            channel,
            datastore_dir,
        }
    }

    pub async fn stop(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown().await.expect("clean shutdown");
        }
    }

    fn auth(&self) -> (Channel, Auth) {
        (self.channel.clone(), with_token as Auth)
    }

    pub fn vaults(&self) -> VaultServiceClient<Svc> {
        let (c, a) = self.auth();
        VaultServiceClient::with_interceptor(c, a)
    }
    pub fn policies(&self) -> PolicyServiceClient<Svc> {
        let (c, a) = self.auth();
        PolicyServiceClient::with_interceptor(c, a)
    }

    /// Creates policy `soon` in `vault`: every day, two minutes from now
    /// (UTC), keeping points by `rule` — a slot a test reaches by moving
    /// the clock.
    pub async fn create_policy_due_soon(&self, vault: &str, rule: pb::RetentionRule) {
        use chrono::Timelike;
        let due = chrono::Utc::now() + chrono::Duration::minutes(2);
        self.policies()
            .create_policy(pb::CreatePolicyRequest {
                parent: format!("vaults/{vault}"),
                policy_id: "soon".into(),
                policy: Some(pb::Policy {
                    schedule: Some(pb::Schedule {
                        weekdays: (1..=7).collect(),
                        time_of_day: format!("{:02}:{:02}", due.hour(), due.minute()),
                        time_zone: "UTC".into(),
                    }),
                    retention_rules: vec![rule],
                    ..Default::default()
                }),
            })
            .await
            .expect("create policy");
    }
    pub fn servers(&self) -> ServerServiceClient<Svc> {
        let (c, a) = self.auth();
        ServerServiceClient::with_interceptor(c, a)
    }
    pub fn secrets(&self) -> SecretServiceClient<Svc> {
        let (c, a) = self.auth();
        SecretServiceClient::with_interceptor(c, a)
    }
    pub fn instances(&self) -> BackupInstanceServiceClient<Svc> {
        let (c, a) = self.auth();
        BackupInstanceServiceClient::with_interceptor(c, a)
    }
    pub fn points(&self) -> RecoveryPointServiceClient<Svc> {
        let (c, a) = self.auth();
        RecoveryPointServiceClient::with_interceptor(c, a)
    }
    pub fn restores(&self) -> RestoreServiceClient<Svc> {
        let (c, a) = self.auth();
        RestoreServiceClient::with_interceptor(c, a)
    }
    pub fn jobs(&self) -> JobServiceClient<Svc> {
        let (c, a) = self.auth();
        JobServiceClient::with_interceptor(c, a)
    }
    pub fn workers(&self) -> WorkerServiceClient<Svc> {
        let (c, a) = self.auth();
        WorkerServiceClient::with_interceptor(c, a)
    }

    /// The cluster's connection string, as a user would store it.
    pub fn connection_string(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres password={} sslmode=disable",
            self.cluster.port(),
            DB_PASSWORD
        )
    }

    /// Creates vault `v`, policy `daily`, server `pg1` (this cluster), secret
    /// `pg1-admin` and a database `app`; returns the vault name.
    pub async fn fixture(&self) -> String {
        let url = format!("file://{}", self.datastore_dir.path().display());
        self.vaults()
            .create_vault(pb::CreateVaultRequest {
                vault_id: "v".into(),
                vault: Some(pb::Vault {
                    standard_datastore: url,
                    region: "local".into(),
                    ..Default::default()
                }),
            })
            .await
            .expect("create vault");
        self.policies()
            .create_policy(pb::CreatePolicyRequest {
                parent: "vaults/v".into(),
                policy_id: "daily".into(),
                policy: Some(pb::Policy {
                    schedule: Some(pb::Schedule {
                        weekdays: vec![pb::Weekday::Monday as i32],
                        time_of_day: "02:00".into(),
                        time_zone: "Europe/Berlin".into(),
                    }),
                    retention_rules: vec![pb::RetentionRule {
                        kind: pb::RetentionRuleKind::Weekly as i32,
                        standard_duration: "P8W".into(),
                        archive_duration: String::new(),
                    }],
                    ..Default::default()
                }),
            })
            .await
            .expect("create policy");
        self.servers()
            .register_server(pb::RegisterServerRequest {
                server_id: "pg1".into(),
                server: Some(pb::Server {
                    host: "127.0.0.1".into(),
                    port: u32::from(self.cluster.port()),
                    region: "local".into(),
                    ..Default::default()
                }),
            })
            .await
            .expect("register server");
        self.secrets()
            .put_secret(pb::PutSecretRequest {
                secret_id: "pg1-admin".into(),
                value: self.connection_string(),
            })
            .await
            .expect("put secret");
        let client = self.cluster.connect("postgres").await.expect("connect");
        client
            .batch_execute("CREATE DATABASE app")
            .await
            .expect("create database app");
        "vaults/v".into()
    }

    /// Configures `database` on pg1 in vault v; returns the instance name.
    pub async fn protect(&self, database: &str) -> String {
        let response = self
            .instances()
            .configure_backup(pb::ConfigureBackupRequest {
                parent: "vaults/v".into(),
                policy: "vaults/v/policies/daily".into(),
                rows: vec![pb::ConfigureBackupRow {
                    server: "servers/pg1".into(),
                    database: database.into(),
                    secret: String::new(),
                }],
                default_secret: "secrets/pg1-admin".into(),
                assign_missing_permissions: true,
                all_databases_of: String::new(),
                role_passwords: false,
            })
            .await
            .expect("configure backup")
            .into_inner();
        let result = &response.results[0];
        assert_eq!(
            result.readiness,
            pb::Readiness::Success as i32,
            "{result:?}"
        );
        result
            .backup_instance
            .as_ref()
            .expect("instance")
            .name
            .clone()
    }
}

/// The job as GetJob returns it (with attempts and tables).
pub async fn get(h: &Harness, name: &str) -> pb::Job {
    h.jobs()
        .get_job(pb::GetJobRequest { name: name.into() })
        .await
        .expect("get job")
        .into_inner()
}

/// `BackupNow` of `instance` with the Weekly rule.
pub async fn backup_now(h: &Harness, instance: &str) -> pb::Job {
    h.instances()
        .backup_now(pb::BackupNowRequest {
            name: instance.into(),
            rule: pb::RetentionRuleKind::Weekly as i32,
            workers: 0,
        })
        .await
        .expect("backup now")
        .into_inner()
}

/// The job's id (its name without "jobs/").
pub fn job_id(job: &pb::Job) -> String {
    job.name
        .strip_prefix("jobs/")
        .expect("job name")
        .to_string()
}

/// `ClaimTask` of `job_id` as `worker`.
pub async fn claim(h: &Harness, job_id: &str, worker: &str) -> pb::ClaimTaskResponse {
    h.workers()
        .claim_task(pb::ClaimTaskRequest {
            job_id: job_id.into(),
            worker_id: worker.into(),
            pg_tool_majors: Vec::new(),
            connections: 0,
        })
        .await
        .expect("claim")
        .into_inner()
}

/// Runs a `BackupNow` of `instance` to completion as worker "w1", as if it
/// stored 10 bytes with a snapshot at `snapshot` (manifest "cd"×32);
/// returns the recovery point's name.
pub async fn completed_backup_at(
    h: &Harness,
    instance: &str,
    snapshot: chrono::DateTime<chrono::Utc>,
) -> String {
    let job = backup_now(h, instance).await;
    let claimed = claim(h, &job_id(&job), "w1").await;
    assert!(claimed.claimed, "{claimed:?}");
    h.workers()
        .complete_task(pb::CompleteTaskRequest {
            job_id: job_id(&job),
            lease_token: claimed.lease_token,
            result: Some(pb::complete_task_request::Result::Backup(
                pb::BackupResult {
                    snapshot_time: Some(prost_types::Timestamp {
                        seconds: snapshot.timestamp(),
                        nanos: 0,
                    }),
                    stored_bytes: 10,
                    raw_bytes: 20,
                    chunk_count: 1,
                    manifest_sha256: "cd".repeat(32),
                    server_version: "15".into(),
                    stage_split: None,
                },
            )),
            progress: None,
            tables: Vec::new(),
        })
        .await
        .expect("complete backup");
    get(h, &job.name).await.recovery_point
}

/// The id of recovery point `name` (".../recoveryPoints/{id}").
pub fn point_id(name: &str) -> uuid::Uuid {
    name.rsplit('/')
        .next()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("point name {name}"))
}
