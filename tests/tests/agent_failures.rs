//! The agent when things go wrong (issue 12), with real processes: a
//! pgbench source inside a private network that only agents reach, a
//! coordinator on the host and no worker at all.
//! - Two instances of one agent: the one running a backup is SIGKILLed; the
//!   lease expires and the other instance completes the backup, and the
//!   point restores identical.
//! - An instance stopped with SIGTERM releases its backup: the other
//!   instance takes it over at once, not after the lease.
//! - The coordinator restarts while the agent runs a backup: the agent
//!   reconnects by itself, its heartbeats keep the lease for longer than
//!   a lease lasts, and the same attempt completes.
//! - The agent is offline: its job stays QUEUED saying what it waits for,
//!   fails with AgentUnavailable after `coordinator.agent_wait_seconds`,
//!   and a job queued while it is away runs once it is back.
//!
//! A table lock held by the test keeps each backup inside its dump until
//! the fault is injected, so nothing depends on timing. Needs root
//! (network namespaces), PostgreSQL and RabbitMQ.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use pgvault_e2e::agent::{AgentProcess, create_agent, wait_connected};
use pgvault_e2e::compare::assert_identical;
use pgvault_e2e::fixtures;
use pgvault_e2e::netns::{InsidePostgres, PrivateNetwork};
use pgvault_e2e::pgvault::{Api, PgvaultCluster};
use pgvault_e2e::rabbitmq::RabbitMq;
use pgvault_proto::v1::*;

const PASSWORD: &str = "agent-failures-pw";
const DATABASE: &str = "bank";
const JOB_TIMEOUT: Duration = Duration::from_secs(180);

/// Every server of one test; fields drop in order (agents and pgvault
/// before the source, the source before its network).
struct Setup {
    agents: Vec<AgentProcess>,
    api: Api,
    cluster: PgvaultCluster,
    source: InsidePostgres,
    network: PrivateNetwork,
    _broker: RabbitMq,
    _store: tempfile::TempDir,
    token: String,
    /// The backup instance of `bank` on the agent's server.
    instance: String,
}

impl Setup {
    /// pgbench `bank` (scale 1) inside a private network, protected in
    /// vault `v` through agent `dc1` and its `agents` instances; the
    /// coordinators get `coordinator_env` besides the harness's settings.
    async fn start(agents: usize, coordinator_env: &[(&str, &str)]) -> anyhow::Result<Setup> {
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
        let mut s = Setup {
            agents: Vec::new(),
            api,
            cluster,
            source,
            network,
            _broker: broker,
            _store: store,
            token,
            instance: String::new(),
        };
        for _ in 0..agents {
            s.start_agent()?;
        }
        s.wait_connected(agents).await?;
        let datastore = format!("file://{}", s._store.path().display());
        s.protect(&datastore).await?;
        Ok(s)
    }

    /// One more instance of `dc1` inside the network.
    fn start_agent(&mut self) -> anyhow::Result<()> {
        let agent = AgentProcess::start(&self.network, &self.cluster.endpoint, "dc1", &self.token)?;
        self.agents.push(agent);
        Ok(())
    }

    async fn wait_connected(&mut self, instances: usize) -> anyhow::Result<Agent> {
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

    async fn backup_now(&mut self) -> anyhow::Result<Job> {
        Ok(self
            .api
            .instances
            .backup_now(BackupNowRequest {
                name: self.instance.clone(),
                rule: RetentionRuleKind::Default as i32,
            })
            .await?
            .into_inner())
    }

    async fn get_job(&mut self, job: &str) -> anyhow::Result<Job> {
        Ok(self
            .api
            .jobs
            .get_job(GetJobRequest { name: job.into() })
            .await?
            .into_inner())
    }

    /// Waits until `job` runs on some process; fails if it ends first.
    async fn wait_running(&mut self, job: &str) -> anyhow::Result<Job> {
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
    async fn wait_running_attempt(&mut self, job: &str, attempt: u32) -> Job {
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
    async fn wait_completed(&mut self, job: &str) -> anyhow::Result<Job> {
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
    async fn hold_table_lock(&self) -> anyhow::Result<tokio_postgres::Client> {
        let client = self.source.connect(DATABASE).await?;
        client
            .batch_execute("BEGIN; LOCK TABLE pgbench_accounts IN ACCESS EXCLUSIVE MODE")
            .await?;
        Ok(client)
    }

    /// Waits until a session on `bank` waits for a lock: the backup is
    /// inside its dump, blocked by [`Self::hold_table_lock`].
    async fn wait_for_blocked_backup(&self) -> anyhow::Result<()> {
        let client = self.source.connect("postgres").await?;
        let deadline = Instant::now() + JOB_TIMEOUT;
        loop {
            let row = client
                .query_one(
                    "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
                     WHERE NOT l.granted AND d.datname = $1",
                    &[&DATABASE],
                )
                .await?;
            if row.get::<_, i64>(0) > 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("no backup blocked on the lock\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The only recovery point of the instance, restored as `target` on
    /// the agent's server, compared with the source.
    async fn restore_the_point_and_compare(&mut self, target: &str) -> anyhow::Result<()> {
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

    fn logs(&self) -> String {
        let agents: Vec<String> = self.agents.iter().map(|a| a.labelled_log()).collect();
        format!("{}\n{}", self.cluster.logs(), agents.join("\n"))
    }
}

async fn start(agents: usize, coordinator_env: &[(&str, &str)]) -> Setup {
    Setup::start(agents, coordinator_env)
        .await
        .expect("start the source inside a private network, pgvault and the agent")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_whose_agent_instance_is_killed_completes_on_another_instance_and_restores_identical()
 {
    let mut s = start(2, &[]).await;
    let lock = s.hold_table_lock().await.expect("lock a table");
    let job = s.backup_now().await.expect("backup now");
    let running = s.wait_running(&job.name).await.expect("the backup runs");
    s.wait_for_blocked_backup()
        .await
        .expect("the backup is inside its dump");
    let holder = s
        .agents
        .iter()
        .position(|a| a.is_worker(&running.worker))
        .unwrap_or_else(|| {
            panic!(
                "no agent process ran the backup ({}):\n{}",
                running.worker,
                s.logs()
            )
        });
    assert_eq!(running.agent, "agents/dc1", "{running:?}");
    s.agents[holder]
        .kill()
        .expect("SIGKILL the agent holding the lease");
    lock.batch_execute("COMMIT")
        .await
        .expect("release the lock");

    let done = s
        .wait_completed(&job.name)
        .await
        .expect("the other instance completes the backup");
    let survivor = &s.agents[1 - holder];
    assert!(
        survivor.is_worker(&done.worker),
        "the surviving instance completed it: {done:?}"
    );
    assert!(done.attempt >= 2, "the killed attempt counted: {done:?}");
    let first = &done.attempts[0];
    assert!(
        s.agents[holder].is_worker(&first.worker)
            && matches!(
                AttemptOutcome::try_from(first.outcome),
                Ok(AttemptOutcome::LeaseExpired | AttemptOutcome::Fenced)
            ),
        "the killed instance's attempt ended with its lease: {done:?}"
    );
    assert!(
        done.attempts.iter().all(|a| a.agent == "agents/dc1"),
        "every attempt ran on the agent: {done:?}"
    );
    s.restore_the_point_and_compare("bank_restored")
        .await
        .expect("the point restores identical");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_instance_stopped_mid_backup_releases_it_to_another_instance_at_once() {
    // A long lease: a takeover well within it cannot be the lease expiring.
    let lease = Duration::from_secs(30);
    let mut s = start(
        2,
        &[(
            "PGVAULT_COORDINATOR__LEASE_TTL_SECONDS",
            &lease.as_secs().to_string(),
        )],
    )
    .await;
    let lock = s.hold_table_lock().await.expect("lock a table");
    let job = s.backup_now().await.expect("backup now");
    let running = s.wait_running(&job.name).await.expect("the backup runs");
    s.wait_for_blocked_backup()
        .await
        .expect("the backup is inside its dump");
    let holder = s
        .agents
        .iter()
        .position(|a| a.is_worker(&running.worker))
        .unwrap_or_else(|| panic!("no agent process ran the backup:\n{}", s.logs()));
    let stopped_at = Instant::now();
    let status = s.agents[holder]
        .terminate(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("the agent stops on SIGTERM: {e:#}\n{}", s.logs()));
    assert!(status.success(), "a clean exit: {status}");
    // Released, not abandoned: the other instance takes it over without
    // waiting for the lease to expire.
    let retried = s.wait_running_attempt(&job.name, 2).await;
    assert!(
        stopped_at.elapsed() < lease,
        "taken over before the lease could expire ({:?})",
        stopped_at.elapsed()
    );
    assert!(
        s.agents[1 - holder].is_worker(&retried.worker),
        "{retried:?}"
    );
    lock.batch_execute("COMMIT")
        .await
        .expect("release the lock");
    let done = s
        .wait_completed(&job.name)
        .await
        .expect("the backup completes");
    let first = &done.attempts[0];
    assert_eq!(
        first.error.as_ref().map(|e| e.code.as_str()),
        Some("SystemErrorWorkerShutdown"),
        "{done:?}"
    );
    s.restore_the_point_and_compare("bank_restored")
        .await
        .expect("the point restores identical");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_coordinator_restart_does_not_fail_the_backup_an_agent_is_running() {
    let lease = Duration::from_secs(8);
    let mut s = start(
        1,
        &[(
            "PGVAULT_COORDINATOR__LEASE_TTL_SECONDS",
            &lease.as_secs().to_string(),
        )],
    )
    .await;
    let lock = s.hold_table_lock().await.expect("lock a table");
    let job = s.backup_now().await.expect("backup now");
    let running = s.wait_running(&job.name).await.expect("the backup runs");
    s.wait_for_blocked_backup()
        .await
        .expect("the backup is inside its dump");
    assert!(s.agents[0].is_worker(&running.worker), "{running:?}");

    let connected_at = |agent: &Agent| {
        agent
            .instances
            .iter()
            .filter(|i| i.connected)
            .filter_map(|i| i.connect_time.as_ref().map(|t| (t.seconds, t.nanos)))
            .max()
    };
    let before = s.wait_connected(1).await.expect("the agent is connected");
    let first_connect = connected_at(&before).expect("a connect time");
    tokio::task::block_in_place(|| s.cluster.restart_coordinator())
        .expect("restart the coordinator");
    // The agent dials the new coordinator by itself (same instance, a new
    // stream and connect time).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        s.agents[0]
            .ensure_running()
            .expect("the agent keeps running");
        let agent = s.wait_connected(1).await.expect("an instance is connected");
        if connected_at(&agent) > Some(first_connect) {
            assert_eq!(agent.instances.len(), 1, "{agent:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not reconnect after the restart: {agent:?}\n{}",
            s.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Longer than a lease: only heartbeats reaching the new coordinator
    // keep the attempt alive meanwhile.
    tokio::time::sleep(lease + Duration::from_secs(2)).await;
    lock.batch_execute("COMMIT")
        .await
        .expect("release the lock");

    let done = s
        .wait_completed(&job.name)
        .await
        .expect("the backup completes");
    assert_eq!(
        (done.attempt, done.attempts.len()),
        (1, 1),
        "the running attempt carried on: {done:?}\n{}",
        s.logs()
    );
    assert!(s.agents[0].is_worker(&done.worker), "{done:?}");
    s.restore_the_point_and_compare("bank_restored")
        .await
        .expect("the point restores identical");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_waits_for_an_offline_agent_then_fails_with_agent_unavailable() {
    let wait_seconds = 15;
    let mut s = start(
        1,
        &[(
            "PGVAULT_COORDINATOR__AGENT_WAIT_SECONDS",
            &wait_seconds.to_string(),
        )],
    )
    .await;
    s.agents[0].kill().expect("SIGKILL the only agent instance");
    s.wait_connected(0).await.expect("the agent is offline");

    // Queued, saying what it waits for (the API and `job show`).
    let queued_at = Instant::now();
    let job = s.backup_now().await.expect("backup now");
    let queued = s.get_job(&job.name).await.expect("get job");
    assert_eq!(queued.state, JobState::Queued as i32, "{queued:?}");
    assert_eq!(queued.agent, "agents/dc1", "{queued:?}");
    assert!(
        queued
            .queued_reason
            .starts_with("waiting for agent dc1, last seen "),
        "{queued:?}"
    );
    let shown = s
        .cluster
        .cli(&["job", "show", &job.name], None)
        .expect("run pgvault job show");
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.status.success() && text.contains("waiting for agent dc1, last seen"),
        "{text}{}",
        String::from_utf8_lossy(&shown.stderr)
    );

    // It fails with a stable code once it has waited agent_wait_seconds.
    let ended = s
        .api
        .wait_for_job(&job.name, JOB_TIMEOUT)
        .await
        .expect("the job ends");
    assert_eq!(ended.state, JobState::Failed as i32, "{ended:?}");
    let error = ended.error.clone().expect("a failed job has an error");
    assert_eq!(error.code, "AgentUnavailable", "{error:?}");
    assert!(
        error.message.contains("agent \"dc1\"") && !error.recommended_action.is_empty(),
        "{error:?}"
    );
    // (The state database's clock counts whole seconds here and there.)
    assert!(
        queued_at.elapsed() + Duration::from_secs(1) >= Duration::from_secs(wait_seconds),
        "failed only after waiting {wait_seconds} s ({:?})",
        queued_at.elapsed()
    );
    assert!(ended.attempts.is_empty(), "it never ran: {ended:?}");

    // A job queued while the agent is away runs once it is back.
    let job = s.backup_now().await.expect("backup now");
    s.start_agent().expect("start the agent again");
    let done = s
        .wait_completed(&job.name)
        .await
        .expect("the backup runs on the returning agent");
    assert!(s.agents[1].is_worker(&done.worker), "{done:?}");
    s.restore_the_point_and_compare("bank_restored")
        .await
        .expect("the point restores identical");
}
