//! `pgvault` processes for end-to-end tests: a cluster (coordinator + N
//! workers over RabbitMQ, state in a private PostgreSQL), the all-in-one
//! `up`, the CLI, and an authenticated gRPC client.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use pgvault_localpg::TempCluster;
use pgvault_proto::v1::agent_service_client::AgentServiceClient;
use pgvault_proto::v1::backup_instance_service_client::BackupInstanceServiceClient;
use pgvault_proto::v1::job_service_client::JobServiceClient;
use pgvault_proto::v1::policy_service_client::PolicyServiceClient;
use pgvault_proto::v1::recovery_point_service_client::RecoveryPointServiceClient;
use pgvault_proto::v1::restore_service_client::RestoreServiceClient;
use pgvault_proto::v1::secret_service_client::SecretServiceClient;
use pgvault_proto::v1::server_service_client::ServerServiceClient;
use pgvault_proto::v1::vault_service_client::VaultServiceClient;
use pgvault_proto::v1::{GetJobRequest, Job, JobState};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub use crate::binary::pgvault_bin;
use crate::ports::start_on_free_ports;
use crate::process::{ChildProcess, wait_for_address};

/// A fixed test token (any string works; the coordinator stores its hash).
pub const TEST_TOKEN: &str = "pgv_e2e-test-token-0123456789";

/// Coordinator + workers over RabbitMQ, state in a private cluster. Every
/// coordinator reads its clock offset from one file ([`Self::set_clock_offset`]).
pub struct PgvaultCluster {
    pub state: TempCluster,
    pub coordinator: ChildProcess,
    /// Coordinators started with [`Self::add_coordinator`] (same state and queue).
    pub extra_coordinators: Vec<ChildProcess>,
    pub workers: Vec<ChildProcess>,
    pub endpoint: String,
    amqp_url: String,
    /// Where the coordinator listens (every added coordinator too).
    address: SocketAddr,
    /// Extra coordinator settings (every coordinator, restarts too).
    coordinator_env: Vec<(String, String)>,
    dir: tempfile::TempDir,
}

impl PgvaultCluster {
    /// Coordinator on 127.0.0.1 and `workers` workers.
    pub fn start(amqp_url: &str, workers: usize) -> anyhow::Result<PgvaultCluster> {
        Self::start_listening_on(amqp_url, workers, LOOPBACK)
    }

    /// Like [`Self::start`], with the coordinators listening on `host`,
    /// e.g. a private network's host-side address, which processes inside
    /// that network and on the host both reach (`endpoint` names it).
    pub fn start_listening_on(
        amqp_url: &str,
        workers: usize,
        host: IpAddr,
    ) -> anyhow::Result<PgvaultCluster> {
        Self::start_with_coordinator_env(amqp_url, workers, host, &[])
    }

    /// Like [`Self::start_listening_on`], with extra coordinator settings
    /// as environment variables over the harness's own (e.g.
    /// `PGVAULT_COORDINATOR__AGENT_WAIT_SECONDS`); every coordinator of the
    /// cluster gets them, restarted and added ones too.
    pub fn start_with_coordinator_env(
        amqp_url: &str,
        workers: usize,
        host: IpAddr,
        coordinator_env: &[(&str, &str)],
    ) -> anyhow::Result<PgvaultCluster> {
        let coordinator_env: Vec<(String, String)> = coordinator_env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let dir = tempfile::Builder::new()
            .prefix("pgvault-cluster-")
            .tempdir()?;
        let state = TempCluster::start("state-db-pw")?;
        let (coordinator, address) = start_on_free_ports(1, |ports| {
            let address = SocketAddr::new(host, ports[0]);
            let process = start_coordinator(
                &state,
                amqp_url,
                address,
                &dir.path().join("coordinator.log"),
                &dir.path().join(CLOCK_OFFSET_FILE),
                &coordinator_env,
            )?;
            Ok((process, address))
        })?;
        let mut cluster = PgvaultCluster {
            coordinator,
            state,
            extra_coordinators: Vec::new(),
            workers: Vec::new(),
            endpoint: endpoint_of(address),
            amqp_url: amqp_url.to_string(),
            address,
            coordinator_env,
            dir,
        };
        for _ in 0..workers {
            cluster.add_worker()?;
        }
        Ok(cluster)
    }

    pub fn add_worker(&mut self) -> anyhow::Result<()> {
        self.spawn_worker(None, &[])
    }

    /// A worker with extra settings as environment variables over the
    /// harness's own (e.g. `PGVAULT_LOG__FORMAT=json`).
    pub fn add_worker_with_env(&mut self, env: &[(&str, &str)]) -> anyhow::Result<()> {
        self.spawn_worker(None, env)
    }

    /// A worker whose files may not grow past `bytes` (RLIMIT_FSIZE, with
    /// SIGXFSZ ignored): every larger write fails with EFBIG, as on a full disk.
    pub fn add_worker_with_file_size_limit(&mut self, bytes: u64) -> anyhow::Result<()> {
        self.spawn_worker(Some(bytes), &[])
    }

    /// SIGKILLs the worker process holding `job`'s lease (worker ids are
    /// `host:pid`); returns that worker id.
    pub fn kill_worker_holding(&mut self, job: &Job) -> anyhow::Result<String> {
        let pid: u32 = job
            .worker
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .with_context(|| format!("job {} names no worker pid: {:?}", job.name, job.worker))?;
        let worker = self
            .workers
            .iter_mut()
            .find(|w| w.pid() == pid)
            .with_context(|| format!("no running worker has pid {pid} ({})", job.worker))?;
        worker.signal(libc::SIGKILL);
        worker.wait(Duration::from_secs(30))?;
        Ok(job.worker.clone())
    }

    fn spawn_worker(
        &mut self,
        file_size_limit: Option<u64>,
        env: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        let n = self.workers.len();
        let mut command = Command::new(pgvault_bin()?);
        if let Some(bytes) = file_size_limit {
            use std::os::unix::process::CommandExt;
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    let limit = libc::rlimit {
                        rlim_cur: bytes as libc::rlim_t,
                        rlim_max: bytes as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                    Ok(())
                });
            }
        }
        command
            .args([
                "worker",
                "--coordinator",
                &self.endpoint,
                "--amqp-url",
                &self.amqp_url,
            ])
            .env("PGVAULT_WORKER__TOKEN", TEST_TOKEN)
            .env("PGVAULT_WORKER__SPLIT_THRESHOLD_MB", "1")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied());
        let log = self.dir.path().join(format!("worker-{n}.log"));
        self.workers
            .push(ChildProcess::spawn(&format!("worker {n}"), command, &log)?);
        Ok(())
    }

    /// Restarts the coordinator process on the same port and state.
    pub fn restart_coordinator(&mut self) -> anyhow::Result<()> {
        self.coordinator.stop(Duration::from_secs(10));
        self.coordinator = start_coordinator(
            &self.state,
            &self.amqp_url,
            self.address,
            &self.dir.path().join("coordinator.log"),
            &self.dir.path().join(CLOCK_OFFSET_FILE),
            &self.coordinator_env,
        )?;
        Ok(())
    }

    /// Starts one more coordinator on the same state database and queue;
    /// returns its endpoint.
    pub fn add_coordinator(&mut self) -> anyhow::Result<String> {
        let n = self.extra_coordinators.len() + 1;
        let (process, address) = start_on_free_ports(1, |ports| {
            let address = SocketAddr::new(self.address.ip(), ports[0]);
            let process = start_coordinator(
                &self.state,
                &self.amqp_url,
                address,
                &self.dir.path().join(format!("coordinator-{n}.log")),
                &self.dir.path().join(CLOCK_OFFSET_FILE),
                &self.coordinator_env,
            )?;
            Ok((process, address))
        })?;
        self.extra_coordinators.push(process);
        Ok(endpoint_of(address))
    }

    /// Moves every coordinator's clock `seconds` ahead of the machine's.
    pub fn set_clock_offset(&self, seconds: i64) -> anyhow::Result<()> {
        let path = self.dir.path().join(CLOCK_OFFSET_FILE);
        std::fs::write(&path, seconds.to_string())
            .with_context(|| format!("write {}", path.display()))
    }

    pub async fn api(&self) -> anyhow::Result<Api> {
        Api::connect(&self.endpoint, TEST_TOKEN).await
    }

    /// Runs the CLI against this cluster with the test token (from
    /// `PGVAULT_TOKEN`); stdin is empty unless given.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<Output> {
        run_cli(&self.endpoint, TEST_TOKEN, self.dir.path(), args, stdin)
    }

    /// Every process's output, for failure messages and leak checks.
    pub fn logs(&self) -> String {
        let mut all = format!("--- coordinator ---\n{}", self.coordinator.log_text());
        for (i, c) in self.extra_coordinators.iter().enumerate() {
            all.push_str(&format!(
                "\n--- coordinator {} ---\n{}",
                i + 1,
                c.log_text()
            ));
        }
        for (i, w) in self.workers.iter().enumerate() {
            all.push_str(&format!("\n--- worker {i} ---\n{}", w.log_text()));
        }
        all
    }
}

/// File (in the cluster's directory) holding the coordinators' clock offset.
const CLOCK_OFFSET_FILE: &str = "clock-offset";

/// Where coordinators listen unless told otherwise.
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The address a client dials for a listener on `address` (loopback for
/// an unspecified one).
fn dial_address(address: SocketAddr) -> SocketAddr {
    if address.ip().is_unspecified() {
        SocketAddr::new(LOOPBACK, address.port())
    } else {
        address
    }
}

/// `http://` endpoint of a coordinator listening on `address`.
fn endpoint_of(address: SocketAddr) -> String {
    format!("http://{}", dial_address(address))
}

/// Starts a coordinator listening on `address` and waits until it holds
/// the port.
fn start_coordinator(
    state: &TempCluster,
    amqp_url: &str,
    address: SocketAddr,
    log: &std::path::Path,
    clock_offset: &std::path::Path,
    extra_env: &[(String, String)],
) -> anyhow::Result<ChildProcess> {
    let mut command = Command::new(pgvault_bin()?);
    command
        .args([
            "coordinator",
            "--listen",
            &address.to_string(),
            "--amqp-url",
            amqp_url,
        ])
        .env("PGVAULT_COORDINATOR__DATABASE_URL", state.url("postgres"))
        .env(
            "PGVAULT_COORDINATOR__MASTER_KEY",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        )
        .env("PGVAULT_COORDINATOR__BOOTSTRAP_TOKEN", TEST_TOKEN)
        .env("PGVAULT_COORDINATOR__LEASE_TTL_SECONDS", "10")
        .env("PGVAULT_COORDINATOR__REAPER_INTERVAL_SECONDS", "1")
        .env("PGVAULT_COORDINATOR__RETRY_BACKOFF_SECONDS", "1")
        .env("PGVAULT_COORDINATOR__SCHEDULER_INTERVAL_SECONDS", "1")
        .env("PGVAULT_COORDINATOR__CLOCK_OFFSET_FILE", clock_offset)
        .env("RUST_LOG", "info")
        .envs(extra_env.iter().map(|(k, v)| (k, v)));
    let mut process = ChildProcess::spawn("coordinator", command, log)?;
    wait_for_address(dial_address(address), Duration::from_secs(60), &mut process)?;
    Ok(process)
}

/// `pgvault up` in a temporary data directory, plus the CLI pointed at it.
pub struct PgvaultUp {
    pub process: ChildProcess,
    pub endpoint: String,
    pub data_dir: PathBuf,
    dir: tempfile::TempDir,
    /// Extra environment of the process, kept for [`Self::restart`].
    env: Vec<(String, String)>,
    /// Where it listens, kept for [`Self::restart`] (the port changes).
    host: IpAddr,
}

impl PgvaultUp {
    pub fn start() -> anyhow::Result<PgvaultUp> {
        Self::start_with_env(&[])
    }

    /// `pgvault up` with extra environment variables (e.g. datastore
    /// credentials, `moto::AWS_ENV`).
    pub fn start_with_env(env: &[(&str, &str)]) -> anyhow::Result<PgvaultUp> {
        Self::start_listening_on(LOOPBACK, env)
    }

    /// Like [`Self::start_with_env`], listening on `host`, e.g. a private
    /// network's host-side address, which processes inside that network
    /// and on the host both reach (`endpoint` names it).
    pub fn start_listening_on(host: IpAddr, env: &[(&str, &str)]) -> anyhow::Result<PgvaultUp> {
        let dir = tempfile::Builder::new().prefix("pgvault-up-").tempdir()?;
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::start_in(dir, env, host)
    }

    fn start_in(
        dir: tempfile::TempDir,
        env: Vec<(String, String)>,
        host: IpAddr,
    ) -> anyhow::Result<PgvaultUp> {
        let data_dir = dir.path().join("data");
        let (process, address) = start_on_free_ports(1, |ports| {
            let address = SocketAddr::new(host, ports[0]);
            let mut command = Command::new(pgvault_bin()?);
            command
                .arg("up")
                .arg("--data-dir")
                .arg(&data_dir)
                .args(["--listen", &address.to_string()])
                .env("PGVAULT_WORKER__SPLIT_THRESHOLD_MB", "1")
                .env("RUST_LOG", "info")
                .envs(env.iter().cloned())
                .current_dir(dir.path());
            let mut process =
                ChildProcess::spawn("pgvault up", command, &dir.path().join("up.log"))?;
            wait_for_address(dial_address(address), Duration::from_secs(90), &mut process)?;
            Ok((process, address))
        })?;
        Ok(PgvaultUp {
            process,
            endpoint: endpoint_of(address),
            data_dir,
            dir,
            env,
            host,
        })
    }

    /// Ctrl-C, then a second `up` on the same directory.
    pub fn restart(self) -> anyhow::Result<PgvaultUp> {
        let PgvaultUp {
            mut process,
            dir,
            env,
            host,
            ..
        } = self;
        process.signal(libc::SIGINT);
        let status = process.wait(Duration::from_secs(60))?;
        if !status.success() {
            bail!(
                "pgvault up did not stop cleanly ({status}):\n{}",
                process.log_tail(30)
            );
        }
        Self::start_in(dir, env, host)
    }

    pub fn token(&self) -> anyhow::Result<String> {
        let path = self.data_dir.join("admin.token");
        Ok(std::fs::read_to_string(&path)
            .with_context(|| format!("read {}", path.display()))?
            .trim()
            .to_string())
    }

    /// Runs the CLI against this instance; stdin is empty unless given.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<Output> {
        run_cli(&self.endpoint, &self.token()?, self.dir.path(), args, stdin)
    }

    /// The walkthrough's set-up through the CLI: vault `demo` on this
    /// instance's local datastore, policy `policy` on `weekdays` at 02:30,
    /// and server `src` at 127.0.0.1:`source_port`. Panics with the CLI's
    /// output when a step fails.
    pub fn create_demo_vault(&self, policy: &str, weekdays: &str, source_port: u16) {
        let datastore = format!("file://{}", self.data_dir.join("datastore").display());
        let port = source_port.to_string();
        let steps: [&[&str]; 3] = [
            &[
                "vault",
                "create",
                "demo",
                "--region",
                "local",
                "--datastore",
                &datastore,
            ],
            &[
                "policy",
                "create",
                policy,
                "--vault",
                "demo",
                "--weekdays",
                weekdays,
                "--at",
                "02:30",
            ],
            &[
                "server",
                "register",
                "src",
                "--host",
                "127.0.0.1",
                "--port",
                &port,
                "--region",
                "local",
            ],
        ];
        for args in steps {
            self.cli_ok(args, None);
        }
    }

    /// After [`PgvaultUp::create_demo_vault`] (policy `policy`): stores the
    /// source superuser's credentials as secret `src-admin` and configures
    /// `database` on server `src` in vault `demo` through the CLI; returns
    /// the backup instance's name.
    pub fn protect_demo_database(
        &self,
        policy: &str,
        source_password: &str,
        database: &str,
    ) -> String {
        let secret = format!("user=postgres password={source_password}");
        self.cli_ok(&["secret", "put", "src-admin"], Some(&secret));
        let configured = self.cli_ok(
            &[
                "backup",
                "configure",
                "--vault",
                "demo",
                "--policy",
                policy,
                "--secret",
                "src-admin",
                "--server",
                "src",
                "--database",
                database,
                "--assign-missing-permissions",
                "--output",
                "json",
            ],
            None,
        );
        let value: serde_json::Value = serde_json::from_str(&configured)
            .unwrap_or_else(|e| panic!("configure JSON ({e}): {configured}"));
        value["results"][0]["backup_instance"]["name"]
            .as_str()
            .unwrap_or_else(|| panic!("configure names the instance: {configured}"))
            .to_string()
    }

    /// Runs `pgvault ARGS` and returns its stdout, failing the test with
    /// both outputs when it does not succeed.
    fn cli_ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let output = self.cli(args, stdin).expect("run pgvault");
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        assert!(
            output.status.success(),
            "`pgvault {}` failed ({}):\nstdout: {stdout}\nstderr: {}",
            args[..2.min(args.len())].join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }
}

/// Runs `pgvault ARGS` against `endpoint` with `token` in `PGVAULT_TOKEN`.
fn run_cli(
    endpoint: &str,
    token: &str,
    dir: &std::path::Path,
    args: &[&str],
    stdin: Option<&str>,
) -> anyhow::Result<Output> {
    use std::io::Write;
    let mut command = Command::new(pgvault_bin()?);
    command
        .args(args)
        .env("PGVAULT_ENDPOINT", endpoint)
        .env("PGVAULT_TOKEN", token)
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn()?;
    if let (Some(mut input), Some(text)) = (child.stdin.take(), stdin) {
        input.write_all(text.as_bytes())?;
    }
    Ok(child.wait_with_output()?)
}

/// Adds `authorization: Bearer <token>`.
#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

type Authed = InterceptedService<Channel, Bearer>;

/// Authenticated clients for every public service.
pub struct Api {
    pub vaults: VaultServiceClient<Authed>,
    pub policies: PolicyServiceClient<Authed>,
    pub servers: ServerServiceClient<Authed>,
    pub secrets: SecretServiceClient<Authed>,
    pub instances: BackupInstanceServiceClient<Authed>,
    pub recovery_points: RecoveryPointServiceClient<Authed>,
    pub restores: RestoreServiceClient<Authed>,
    pub jobs: JobServiceClient<Authed>,
    pub agents: AgentServiceClient<Authed>,
}

impl Api {
    pub async fn connect(endpoint: &str, token: &str) -> anyhow::Result<Api> {
        let channel = Channel::from_shared(endpoint.to_string())?
            .connect()
            .await?;
        let bearer = Bearer(format!("Bearer {token}").parse()?);
        Ok(Api {
            vaults: VaultServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            policies: PolicyServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            servers: ServerServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            secrets: SecretServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            instances: BackupInstanceServiceClient::with_interceptor(
                channel.clone(),
                bearer.clone(),
            ),
            recovery_points: RecoveryPointServiceClient::with_interceptor(
                channel.clone(),
                bearer.clone(),
            ),
            restores: RestoreServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            jobs: JobServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            agents: AgentServiceClient::with_interceptor(channel, bearer),
        })
    }

    /// Polls the job until it ends; returns it whatever the outcome.
    pub async fn wait_for_job(&mut self, name: &str, timeout: Duration) -> anyhow::Result<Job> {
        let deadline = Instant::now() + timeout;
        loop {
            let job = self
                .jobs
                .get_job(GetJobRequest {
                    name: name.to_string(),
                })
                .await?
                .into_inner();
            let state = JobState::try_from(job.state).unwrap_or(JobState::Unspecified);
            if matches!(
                state,
                JobState::Completed
                    | JobState::CompletedWithWarnings
                    | JobState::Failed
                    | JobState::Cancelled
            ) {
                return Ok(job);
            }
            if Instant::now() > deadline {
                bail!("job {name} still {state:?} after {timeout:?}: {job:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
