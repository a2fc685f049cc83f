//! The set-up the agent failure tests share ([`AgentScenario`]): a pgbench
//! source inside a private network, a coordinator on the host and no
//! worker, agent `dc1` with some instances inside, and `bank` protected
//! through it on a file:// datastore; then the steps of a drill: start a
//! backup, hold it inside its dump with a table lock (so a fault lands
//! mid-backup without timing), wait for attempts, restore and compare.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use pgvault_proto::v1::*;

use crate::agent::{AgentProcess, create_agent, wait_connected};
use crate::compare::assert_identical;
use crate::fixtures;
use crate::netns::{InsidePostgres, PrivateNetwork};
use crate::pgvault::{Api, PgvaultCluster};
use crate::rabbitmq::RabbitMq;
use crate::scenario::wait_for_lock_waiter;

/// The source superuser's password.
pub const PASSWORD: &str = "agent-scenario-pw";
/// The protected pgbench database.
pub const DATABASE: &str = "bank";
/// Upper bound for one job (never reached when things work).
pub const JOB_TIMEOUT: Duration = Duration::from_secs(180);

/// Every server of one test; fields drop in order (agents and pgvault
/// before the source, the source before its network).
pub struct AgentScenario {
    pub agents: Vec<AgentProcess>,
    pub api: Api,
    pub cluster: PgvaultCluster,
    pub source: InsidePostgres,
    pub network: PrivateNetwork,
    pub broker: RabbitMq,
    /// The file:// datastore (on the host's disk, which processes inside see).
    pub store: tempfile::TempDir,
    pub token: String,
    /// The backup instance of `bank` on the agent's server.
    pub instance: String,
}

impl AgentScenario {
    /// pgbench `bank` (scale 1) inside a private network, protected in
    /// vault `v` through agent `dc1` and its `agents` instances; the
    /// coordinators get `coordinator_env` besides the harness's settings.
    pub async fn start(
        agents: usize,
        coordinator_env: &[(&str, &str)],
    ) -> anyhow::Result<AgentScenario> {
        let network = PrivateNetwork::create()?;
        let source = network.start_postgres(PASSWORD)?;
        fixtures::pgbench(&source, DATABASE, 1).await?;
        let broker = tokio::task::spawn_blocking(RabbitMq::start)
            .await?
            .context("start RabbitMQ")?;
        let (url, host) = (broker.url(), IpAddr::V4(network.host_address()));
        let env: Vec<(String, String)> = coordinator_env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let cluster = tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (&**k, &**v)).collect();
            PgvaultCluster::start_with_coordinator_env(&url, 0, host, &env)
        })
        .await?
        .context("start a coordinator on the host")?;
        let api = cluster.api().await?;
        let token = create_agent(&cluster, "dc1", "local")?;
        let store = tempfile::Builder::new()
            .prefix("pgvault-agent-store-")
            .tempdir()?;
        let mut s = AgentScenario {
            agents: Vec::new(),
            api,
            cluster,
            source,
            network,
            broker,
            store,
            token,
            instance: String::new(),
        };
        for _ in 0..agents {
            s.start_agent()?;
        }
        s.wait_connected(agents).await?;
        let datastore = format!("file://{}", s.store.path().display());
        s.protect(&datastore).await?;
        Ok(s)
    }

    /// One more instance of `dc1` inside the network.
    pub fn start_agent(&mut self) -> anyhow::Result<()> {
        let agent = AgentProcess::start(&self.network, &self.cluster.endpoint, "dc1", &self.token)?;
        self.agents.push(agent);
        Ok(())
    }

    pub async fn wait_connected(&mut self, instances: usize) -> anyhow::Result<Agent> {
        let mut agents: Vec<&mut AgentProcess> = self.agents.iter_mut().collect();
        wait_connected(&mut self.api, "dc1", instances, &mut agents).await
    }

    /// Vault, policy, the server bound to `dc1`, its secret, and `bank`
    /// configured (validated through the agent).
    async fn protect(&mut self, datastore: &str) -> anyhow::Result<()> {
        let api = &mut self.api;
        api.vaults
            .create_vault(CreateVaultRequest {
                vault_id: "v".into(),
                vault: Some(Vault {
                    region: "local".into(),
                    standard_datastore: datastore.into(),
                    ..Default::default()
                }),
            })
            .await?;
        api.policies
            .create_policy(CreatePolicyRequest {
                parent: "vaults/v".into(),
                policy_id: "p".into(),
                policy: Some(Policy {
                    schedule: Some(Schedule {
                        weekdays: vec![Weekday::Monday as i32],
                        time_of_day: "02:30".into(),
                        time_zone: "UTC".into(),
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
                server_id: "private".into(),
                server: Some(Server {
                    host: "127.0.0.1".into(),
                    port: self.source.port().into(),
                    region: "local".into(),
                    agent: "dc1".into(),
                    ..Default::default()
                }),
            })
            .await?;
        api.secrets
            .put_secret(PutSecretRequest {
                secret_id: "admin".into(),
                value: format!("user=postgres password={PASSWORD}"),
            })
            .await?;
        let result = api
            .instances
            .configure_backup(ConfigureBackupRequest {
                parent: "vaults/v".into(),
                policy: "vaults/v/policies/p".into(),
                rows: vec![ConfigureBackupRow {
                    server: "servers/private".into(),
                    database: DATABASE.into(),
                    secret: "secrets/admin".into(),
                }],
                default_secret: String::new(),
                assign_missing_permissions: true,
                all_databases_of: String::new(),
                role_passwords: false,
            })
            .await?
            .into_inner()
            .results
            .into_iter()
            .next()
            .context("one result per row")?;
        if result.readiness != Readiness::Success as i32 {
            bail!("configuring {DATABASE} through the agent failed: {result:?}");
        }
        self.instance = result.backup_instance.context("an instance")?.name;
        Ok(())
    }

    pub async fn backup_now(&mut self) -> anyhow::Result<Job> {
        Ok(self
            .api
            .instances
            .backup_now(BackupNowRequest {
                name: self.instance.clone(),
                rule: RetentionRuleKind::Default as i32,
                workers: 0,
            })
            .await?
            .into_inner())
    }

    pub async fn get_job(&mut self, job: &str) -> anyhow::Result<Job> {
        Ok(self
            .api
            .jobs
            .get_job(GetJobRequest { name: job.into() })
            .await?
            .into_inner())
    }

    /// Waits until `job` runs on some process; fails if it ends first.
    pub async fn wait_running(&mut self, job: &str) -> anyhow::Result<Job> {
        let deadline = Instant::now() + JOB_TIMEOUT;
        loop {
            let current = self.get_job(job).await?;
            let state = JobState::try_from(current.state).unwrap_or_default();
            if state == JobState::InProgress && !current.worker.is_empty() {
                return Ok(current);
            }
            if state != JobState::Queued && state != JobState::InProgress {
                bail!("job {job} ended as {state:?} before it ran: {current:?}");
            }
            if Instant::now() > deadline {
                bail!("job {job} never ran: {current:?}\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until attempt `attempt` of `job` runs; panics with the logs
    /// if it does not within a minute.
    pub async fn wait_running_attempt(&mut self, job: &str, attempt: u32) -> Job {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let current = self.get_job(job).await.expect("get job");
            if current.attempt >= attempt && current.state == JobState::InProgress as i32 {
                return current;
            }
            assert!(
                Instant::now() < deadline,
                "attempt {attempt} of {job} never ran: {current:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for `job` to end; fails unless it COMPLETED.
    pub async fn wait_completed(&mut self, job: &str) -> anyhow::Result<Job> {
        let ended = self.api.wait_for_job(job, JOB_TIMEOUT).await?;
        if ended.state != JobState::Completed as i32 {
            bail!(
                "job {job} ended as {:?}: {ended:?}\n{}",
                JobState::try_from(ended.state),
                self.logs()
            );
        }
        Ok(ended)
    }

    /// A transaction holding ACCESS EXCLUSIVE on `pgbench_accounts`: a
    /// backup started now takes its snapshot and waits for this lock
    /// inside its dump until the client commits.
    pub async fn hold_table_lock(&self) -> anyhow::Result<tokio_postgres::Client> {
        let client = self.source.connect(DATABASE).await?;
        client
            .batch_execute("BEGIN; LOCK TABLE pgbench_accounts IN ACCESS EXCLUSIVE MODE")
            .await?;
        Ok(client)
    }

    /// Waits until a session on `bank` waits for a lock: the backup is
    /// inside its dump, blocked by [`Self::hold_table_lock`].
    pub async fn wait_for_blocked_backup(&self) -> anyhow::Result<()> {
        let client = self.source.connect("postgres").await?;
        if !wait_for_lock_waiter(&client, DATABASE, JOB_TIMEOUT).await? {
            bail!("no backup blocked on the lock\n{}", self.logs());
        }
        Ok(())
    }

    /// The only recovery point of the instance, restored as `target` on
    /// the agent's server, compared with the source.
    pub async fn restore_the_point_and_compare(&mut self, target: &str) -> anyhow::Result<()> {
        let points = self
            .api
            .recovery_points
            .list_recovery_points(ListRecoveryPointsRequest {
                parent: self.instance.clone(),
                page_size: 100,
                ..Default::default()
            })
            .await?
            .into_inner()
            .recovery_points;
        if points.len() != 1 {
            bail!("one recovery point expected: {points:?}");
        }
        let job = self
            .api
            .restores
            .restore_as_database(RestoreAsDatabaseRequest {
                recovery_point: points[0].name.clone(),
                target_database: target.into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        self.wait_completed(&job.name).await?;
        assert_identical(&self.source, DATABASE, &self.source, target).await
    }

    pub fn logs(&self) -> String {
        let agents: Vec<String> = self.agents.iter().map(|a| a.labelled_log()).collect();
        format!("{}\n{}", self.cluster.logs(), agents.join("\n"))
    }
}

/// [`AgentScenario::start`], panicking with the reason when it cannot.
pub async fn start(agents: usize, coordinator_env: &[(&str, &str)]) -> AgentScenario {
    AgentScenario::start(agents, coordinator_env)
        .await
        .expect("start the source inside a private network, pgvault and the agent")
}
