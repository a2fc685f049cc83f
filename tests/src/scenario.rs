//! The set-up and steps the failure tests share: RabbitMQ, Azurite, a source
//! cluster with pgbench databases, a pgvault cluster protecting them in
//! vault `f`; starting backups, holding one inside its dump with a table
//! lock (so a fault lands mid-backup deterministically, without timing),
//! restoring and comparing, and checking that every recovery point's
//! manifest lists only objects that exist with their recorded sizes.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use pgvault_datastore::Datastore;
use pgvault_localpg::TempCluster;
use pgvault_proto::v1::*;

use crate::azurite::Azurite;
use crate::compare::assert_identical;
use crate::fixtures;
use crate::pgvault::{Api, PgvaultCluster};
use crate::rabbitmq::RabbitMq;

pub const SOURCE_PASSWORD: &str = "src-Pa55word!";
/// Upper bound for one job (never reached when things work).
pub const JOB_TIMEOUT: Duration = Duration::from_secs(240);

/// Every server of a failure test. Fields drop in order: pgvault first.
pub struct Scenario {
    pub api: Api,
    pub cluster: PgvaultCluster,
    pub source: TempCluster,
    pub azurite: Azurite,
    pub broker: RabbitMq,
    /// (database, backup instance name), in the order given to `start`.
    pub instances: Vec<(String, String)>,
}

impl Scenario {
    /// pgbench databases `databases` (scale `scale`) protected in vault `f`
    /// on `datastore` (default: an Azurite container), `workers` workers.
    pub async fn start(
        databases: &[&str],
        scale: u32,
        workers: usize,
        datastore: Option<String>,
    ) -> anyhow::Result<Scenario> {
        Self::start_with_encryption(databases, scale, workers, datastore, "none").await
    }

    /// As [`Scenario::start`], vault `f` created with `encryption`
    /// (`none` or `aes-256-gcm`).
    pub async fn start_with_encryption(
        databases: &[&str],
        scale: u32,
        workers: usize,
        datastore: Option<String>,
        encryption: &str,
    ) -> anyhow::Result<Scenario> {
        let (broker, azurite) =
            tokio::task::spawn_blocking(|| (RabbitMq::start(), Azurite::start())).await?;
        let broker = broker.context("start RabbitMQ")?;
        let azurite = azurite.context("start Azurite")?;
        let source = TempCluster::start(SOURCE_PASSWORD).context("start source PostgreSQL")?;
        for db in databases {
            fixtures::pgbench(&source, db, scale).await?;
        }
        let url = broker.url();
        let cluster = tokio::task::spawn_blocking(move || PgvaultCluster::start(&url, workers))
            .await?
            .context("start coordinator and workers")?;
        let mut api = cluster.api().await.context("connect to coordinator")?;
        let datastore = datastore.unwrap_or_else(|| azurite.datastore_url("failures"));
        setup_vault_with_encryption(&mut api, &datastore, &source, encryption).await?;
        let mut instances = Vec::new();
        for db in databases {
            instances.push((db.to_string(), protect(&mut api, db).await?));
        }
        Ok(Scenario {
            api,
            cluster,
            source,
            azurite,
            broker,
            instances,
        })
    }

    /// Starts an on-demand backup of `instance` (does not wait).
    pub async fn backup_now(&mut self, instance: &str) -> anyhow::Result<Job> {
        Ok(self
            .api
            .instances
            .backup_now(BackupNowRequest {
                name: instance.into(),
                rule: RetentionRuleKind::Default as i32,
                workers: 0,
            })
            .await?
            .into_inner())
    }

    /// Waits until `job` is IN_PROGRESS on a named worker; fails if it ends first.
    pub async fn wait_in_progress(&mut self, job: &str) -> anyhow::Result<Job> {
        let deadline = Instant::now() + JOB_TIMEOUT;
        loop {
            let current = self.get_job(job).await?;
            let state = JobState::try_from(current.state).unwrap_or_default();
            if state == JobState::InProgress && !current.worker.is_empty() {
                return Ok(current);
            }
            if matches!(
                state,
                JobState::Completed | JobState::Failed | JobState::Cancelled
            ) {
                bail!("job {job} ended as {state:?} before it was seen running: {current:?}");
            }
            if Instant::now() > deadline {
                bail!("job {job} never ran: {current:?}\n{}", self.cluster.logs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn get_job(&mut self, job: &str) -> anyhow::Result<Job> {
        Ok(self
            .api
            .jobs
            .get_job(GetJobRequest { name: job.into() })
            .await?
            .into_inner())
    }

    /// Waits for `job` to end and fails unless it COMPLETED.
    pub async fn wait_completed(&mut self, job: &str) -> anyhow::Result<Job> {
        let ended = self.api.wait_for_job(job, JOB_TIMEOUT).await?;
        if ended.state != JobState::Completed as i32 {
            bail!(
                "job {job} ended as {:?} with {:?}\n{}",
                JobState::try_from(ended.state),
                ended.error,
                self.cluster.logs()
            );
        }
        Ok(ended)
    }

    pub async fn points(&mut self, instance: &str) -> anyhow::Result<Vec<RecoveryPoint>> {
        Ok(self
            .api
            .recovery_points
            .list_recovery_points(ListRecoveryPointsRequest {
                parent: instance.into(),
                page_size: 1000,
                ..Default::default()
            })
            .await?
            .into_inner()
            .recovery_points)
    }

    /// Every job of `instance` (any state, any age).
    pub async fn jobs_of(&mut self, instance: &str) -> anyhow::Result<Vec<Job>> {
        Ok(self
            .api
            .jobs
            .list_jobs(ListJobsRequest {
                backup_instance: instance.into(),
                page_size: 1000,
                all: true,
                ..Default::default()
            })
            .await?
            .into_inner()
            .jobs)
    }

    /// Restores `point` as `target` and proves it identical to `database`.
    pub async fn restore_and_compare(
        &mut self,
        point: &str,
        database: &str,
        target: &str,
    ) -> anyhow::Result<()> {
        let job = self
            .api
            .restores
            .restore_as_database(RestoreAsDatabaseRequest {
                recovery_point: point.into(),
                target_database: target.into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        self.wait_completed(&job.name).await?;
        assert_identical(&self.source, database, &self.source, target).await
    }

    /// Opens a transaction on `database` holding ACCESS EXCLUSIVE on
    /// `pgbench_accounts`: a backup started now connects, takes its snapshot
    /// and waits for this lock inside its dump until the client commits
    /// (or is disconnected).
    pub async fn hold_table_lock(&self, database: &str) -> anyhow::Result<tokio_postgres::Client> {
        let client = self.source.connect(database).await?;
        client
            .batch_execute("BEGIN; LOCK TABLE pgbench_accounts IN ACCESS EXCLUSIVE MODE")
            .await?;
        Ok(client)
    }

    /// Waits until some session on `database` waits for a lock (the backup
    /// is inside its dump, blocked by [`Self::hold_table_lock`]).
    pub async fn wait_for_blocked_backup(&self, database: &str) -> anyhow::Result<()> {
        let client = self.source.connect("postgres").await?;
        if !wait_for_lock_waiter(&client, database, JOB_TIMEOUT).await? {
            bail!(
                "no backup blocked on {database}'s lock\n{}",
                self.cluster.logs()
            );
        }
        Ok(())
    }
}

/// Waits up to `timeout` until some session on `database` waits for a lock
/// (a backup blocked inside its dump by a lock the test holds); `client` is
/// connected to any database of that server. False when none did.
pub async fn wait_for_lock_waiter(
    client: &tokio_postgres::Client,
    database: &str,
    timeout: Duration,
) -> anyhow::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        let row = client
            .query_one(
                "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
                 WHERE NOT l.granted AND d.datname = $1",
                &[&database],
            )
            .await?;
        if row.get::<_, i64>(0) > 0 {
            return Ok(true);
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Fails unless every object `point`'s manifest lists exists with its size.
/// Returns how many objects were checked.
pub async fn assert_manifest_objects_complete(point: &RecoveryPoint) -> anyhow::Result<usize> {
    let store = Datastore::open(&point.location)
        .with_context(|| format!("open the location of {}", point.name))?;
    let objects = store.object_store();
    let manifest = objects
        .get(&store.path("manifest.json"))
        .await
        .with_context(|| format!("{} has no manifest.json", point.name))?
        .bytes()
        .await?;
    let manifest: serde_json::Value = serde_json::from_slice(&manifest)?;
    let mut entries = Vec::new();
    object_entries(&manifest, &mut entries);
    if entries.is_empty() {
        bail!("{}'s manifest lists no object: {manifest}", point.name);
    }
    for (path, size) in &entries {
        let meta = objects
            .head(&store.path(path))
            .await
            .with_context(|| format!("{} references missing object {path}", point.name))?;
        if meta.size as u64 != *size {
            bail!(
                "{} references {path} of {size} bytes, but the stored object has {}",
                point.name,
                meta.size
            );
        }
    }
    Ok(entries.len())
}

/// Every `{path, size, sha256}` object in a manifest, wherever it sits.
fn object_entries(value: &serde_json::Value, out: &mut Vec<(String, u64)>) {
    match value {
        serde_json::Value::Object(map) => {
            if let (Some(path), Some(size), true) = (
                map.get("path").and_then(|p| p.as_str()),
                map.get("size").and_then(|s| s.as_u64()),
                map.contains_key("sha256"),
            ) {
                out.push((path.to_string(), size));
            }
            map.values().for_each(|v| object_entries(v, out));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| object_entries(v, out)),
        _ => {}
    }
}

/// Every file under `dir` (recursively), relative to it.
pub fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(dir) {
                out.push(rel.display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// Vault `f` on `datastore` with policy `p`, server `source` and its admin
/// secret `source-admin` (password [`SOURCE_PASSWORD`]).
pub async fn setup_vault(
    api: &mut Api,
    datastore: &str,
    source: &TempCluster,
) -> anyhow::Result<()> {
    // The failure scenarios read manifests straight from the datastore
    // ([`assert_manifest_objects_complete`]); encrypted points have their
    // own tests (tests/encryption.rs, the encrypted fan-out).
    setup_vault_with_encryption(api, datastore, source, "none").await
}

/// As [`setup_vault`], the vault created with `encryption`.
pub async fn setup_vault_with_encryption(
    api: &mut Api,
    datastore: &str,
    source: &TempCluster,
    encryption: &str,
) -> anyhow::Result<()> {
    api.vaults
        .create_vault(CreateVaultRequest {
            vault_id: "f".into(),
            vault: Some(Vault {
                region: "local".into(),
                standard_datastore: datastore.into(),
                encryption: encryption.into(),
                ..Default::default()
            }),
        })
        .await
        .context("create vault")?;
    api.policies
        .create_policy(CreatePolicyRequest {
            parent: "vaults/f".into(),
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
        .await
        .context("create policy")?;
    api.servers
        .register_server(RegisterServerRequest {
            server_id: "source".into(),
            server: Some(Server {
                host: source.host().into(),
                port: source.port().into(),
                region: "local".into(),
                // Scenarios run several backups of one server at once (one
                // per worker) to prove other things; the default budget (8)
                // would queue all but two. server_budget.rs proves budgets.
                max_connections: 64,
                ..Default::default()
            }),
        })
        .await
        .context("register server")?;
    api.secrets
        .put_secret(PutSecretRequest {
            secret_id: "source-admin".into(),
            value: format!("user=postgres password={SOURCE_PASSWORD}"),
        })
        .await
        .context("put secret")?;
    Ok(())
}

/// Protects `database` of server `source` in vault `f`; returns the
/// backup instance's name.
pub async fn protect(api: &mut Api, database: &str) -> anyhow::Result<String> {
    let result = api
        .instances
        .configure_backup(ConfigureBackupRequest {
            parent: "vaults/f".into(),
            policy: "vaults/f/policies/p".into(),
            rows: vec![ConfigureBackupRow {
                server: "servers/source".into(),
                database: database.into(),
                secret: "secrets/source-admin".into(),
            }],
            default_secret: String::new(),
            // The owner token grants the vault access to the secret inline.
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
        bail!("protecting {database} failed: {result:?}");
    }
    Ok(result.backup_instance.context("configured instance")?.name)
}
