//! The client verbs against the real coordinator (state in a private
//! PostgreSQL cluster, in-process queue, optionally an in-process worker):
//! every request the CLI builds is one the coordinator accepts, refusals come
//! back as exit codes and one-line messages, and `--wait` follows real jobs.

use std::process::ExitCode;

use pgvault_coordinator::{Coordinator, CoordinatorConfig, CoordinatorHandle};
use pgvault_engine::EngineOptions;
use pgvault_localpg::TempCluster;
use pgvault_proto::v1::{
    DeadLetter, ListBackupInstancesRequest, ListDeadLettersRequest, ListRecoveryPointsRequest,
    TaskEnvelope,
};
use pgvault_queue::TaskPublisher;
use pgvault_queue::memory::InProcessQueue;
use pgvault_worker::runner::WorkerOptions;
use tokio_util::sync::CancellationToken;

use super::connect::Api;
use super::tests::parse;
use super::{ClientOptions, OutputFormat, describe, dispatch};

const TOKEN: &str = "live-test-admin-token";

/// A coordinator over a private cluster holding the state database and a
/// source database `orders`, with a vault `prod` and a policy `nightly`.
struct Live {
    cluster: TempCluster,
    /// The in-process task queue coordinator and worker share.
    queue: InProcessQueue,
    coordinator: CoordinatorHandle,
    endpoint: String,
    worker: Option<CancellationToken>,
    _datastore: tempfile::TempDir,
}

impl Live {
    async fn start(with_worker: bool) -> Self {
        let cluster = TempCluster::start("password").expect("start PostgreSQL (see localpg)");
        let admin = cluster.connect("postgres").await.expect("connect");
        for sql in ["CREATE DATABASE pgvault_state", "CREATE DATABASE orders"] {
            admin.batch_execute(sql).await.expect("create database");
        }
        let orders = cluster.connect("orders").await.expect("connect orders");
        orders
            .batch_execute(
                "CREATE TABLE items (id bigint PRIMARY KEY, name text);
                 INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 1000) i;",
            )
            .await
            .expect("seed orders");

        let mut config = CoordinatorConfig::new(cluster.url("pgvault_state"), [7u8; 32]);
        config.listen = "127.0.0.1:0".parse().expect("address");
        config.bootstrap_token = Some(TOKEN.to_owned());
        let queue = InProcessQueue::new();
        // Wired as `pgvault up` wires it: the coordinator drains the
        // in-process queue's dead letters.
        let coordinator = Coordinator::start_with_dead_letters(
            config,
            queue.publisher(),
            Some(queue.dead_letter_source()),
        )
        .await
        .expect("start coordinator");
        let task_queue = queue.clone();
        let endpoint = format!("http://{}", coordinator.local_addr());

        let worker = with_worker.then(|| {
            let shutdown = CancellationToken::new();
            let options = WorkerOptions {
                coordinator_endpoint: endpoint.clone(),
                token: TOKEN.to_owned(),
                ca_cert: None,
                worker_id: "live-test-worker".to_owned(),
                concurrency: 1,
                engine: EngineOptions::default(),
            };
            let consumers = move || queue.consumer();
            tokio::spawn(pgvault_worker::runner::run(
                options,
                consumers,
                shutdown.clone(),
            ));
            shutdown
        });

        let datastore = tempfile::tempdir().expect("tempdir");
        let live = Live {
            cluster,
            queue: task_queue,
            coordinator,
            endpoint,
            worker,
            _datastore: datastore,
        };
        let datastore_url = format!("file://{}", live._datastore.path().display());
        live.ok(&format!(
            "vault create prod --region eu --datastore {datastore_url}"
        ))
        .await;
        live.ok("policy create nightly --vault prod --weekdays mon,thu --at 02:30 --retain P3M")
            .await;
        let port = live.cluster.port().to_string();
        live.ok(&format!(
            "server register local --host {} --port {port} --region eu",
            live.cluster.host()
        ))
        .await;
        // One variable per cluster, so tests running side by side never share one.
        let var = format!("PGVAULT_LIVE_TEST_CONNECTION_{port}");
        // SAFETY: written once, before this test's commands read it; no other
        // code reads this variable.
        unsafe { std::env::set_var(&var, live.cluster.url("postgres")) };
        live.ok(&format!("secret put local-admin --from-env {var}"))
            .await;
        live
    }

    /// Runs one command line (words split on whitespace, without "pgvault").
    async fn pgvault(&self, line: &str) -> anyhow::Result<ExitCode> {
        let args: Vec<&str> = line.split_whitespace().collect();
        let cli = parse(&args).map_err(|e| anyhow::anyhow!("{e}"))?;
        let options = ClientOptions {
            endpoint: self.endpoint.clone(),
            token: Some(TOKEN.to_owned()),
            ..cli.options
        };
        dispatch(&options, cli.command).await
    }

    async fn ok(&self, line: &str) {
        match self.pgvault(line).await {
            Ok(code) => assert_eq!(code, ExitCode::SUCCESS, "pgvault {line}"),
            Err(error) => panic!("pgvault {line} failed: {}", describe(&error)),
        }
    }

    fn api(&self) -> Api {
        Api::new(&self.endpoint, TOKEN, OutputFormat::Json).expect("client")
    }

    /// The full name of the first backup instance of `prod`.
    async fn first_instance(&self) -> String {
        let request = ListBackupInstancesRequest {
            parent: "vaults/prod".into(),
            ..Default::default()
        };
        let response = self
            .api()
            .instances()
            .list_backup_instances(request)
            .await
            .expect("list instances");
        response
            .into_inner()
            .backup_instances
            .into_iter()
            .next()
            .expect("one instance")
            .name
    }

    async fn stop(self) {
        if let Some(worker) = &self.worker {
            worker.cancel();
        }
        self.coordinator.shutdown().await.expect("shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbs_against_a_real_coordinator() {
    let live = Live::start(false).await;
    live.ok("vault get prod --output json").await;
    live.ok("vault list").await;
    let missing = live
        .pgvault("vault get nope")
        .await
        .expect_err("unknown vault");
    assert!(
        !describe(&missing).contains("Status {"),
        "{}",
        describe(&missing)
    );
    live.ok("policy get nightly --vault prod").await;
    live.ok("policy list --vault prod --output json").await;
    live.ok("server list").await;
    live.ok("server get local --output json").await;
    live.ok("secret list").await;
    live.ok("server databases local --secret local-admin").await;

    let configure =
        "backup configure --vault prod --policy nightly --secret local-admin --server local";
    // The vault may not read the secret yet: the row fails and is kept.
    let ungranted = live
        .pgvault(&format!("{configure} --database orders"))
        .await;
    assert_eq!(ungranted.expect("answered"), ExitCode::FAILURE);
    live.ok("secret grant local-admin --vault prod").await;
    live.ok("secret list --output json").await;
    live.ok(&format!("{configure} --database orders")).await;
    // Already protected, and never protectable: both rows fail, so does the command.
    let refused = live
        .pgvault(&format!(
            "{configure} --database orders --database template1"
        ))
        .await;
    assert_eq!(refused.expect("answered"), ExitCode::FAILURE);

    live.ok("backup list --vault prod").await;
    live.ok("backup list").await;
    let instance = live.first_instance().await;
    live.ok(&format!("backup get {instance}")).await;
    live.ok(&format!("backup revalidate {instance}")).await;
    live.ok(&format!("recovery-point list {instance}")).await;
    // No worker runs: the on-demand backup stays queued.
    live.ok(&format!("backup now {instance} --rule default"))
        .await;
    live.ok(&format!("backup now {instance} --output json"))
        .await;
    live.ok("job list --vault prod --state queued").await;
    live.ok(&format!("job list --instance {instance} --output json"))
        .await;
    let restore = live
        .pgvault(&format!(
            "restore {instance}/recoveryPoints/nope --target-database copy"
        ))
        .await;
    assert!(!describe(&restore.expect_err("no such point")).is_empty());
    live.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_and_restore_with_wait() {
    let live = Live::start(true).await;
    let configure = "backup configure --vault prod --policy nightly --secret secret://local-admin \
                     --server local --assign-missing-permissions";
    live.ok(&format!("{configure} --database orders")).await;
    let instance = live.first_instance().await;

    live.ok(&format!("backup now {instance} --wait")).await;
    let request = ListRecoveryPointsRequest {
        parent: instance.clone(),
        ..Default::default()
    };
    let points = live
        .api()
        .recovery_points()
        .list_recovery_points(request)
        .await
        .expect("list points");
    let point = points
        .into_inner()
        .recovery_points
        .into_iter()
        .next()
        .expect("one recovery point")
        .name;
    live.ok(&format!("recovery-point list {instance}")).await;

    live.ok(&format!(
        "restore {point} --target-database orders_copy --wait"
    ))
    .await;
    let copy = live
        .cluster
        .connect("orders_copy")
        .await
        .expect("restored database exists");
    let row = copy
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .expect("count");
    assert_eq!(row.get::<_, i64>(0), 1000);

    // The target exists now: the restore job fails and so does the command.
    let again = live
        .pgvault(&format!(
            "restore {point} --target-database orders_copy --wait"
        ))
        .await;
    assert_eq!(again.expect("followed"), ExitCode::FAILURE);
    live.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_and_role_verbs() {
    let live = Live::start(false).await;
    live.ok("token create ci --role BackupReader").await;
    live.ok("token create team-a --role BackupOperator --vault prod --output json")
        .await;
    live.ok("token list").await;
    live.ok("role list").await;
    let tokens = live
        .api()
        .access()
        .list_tokens(pgvault_proto::v1::ListTokensRequest {})
        .await
        .expect("list tokens")
        .into_inner()
        .tokens;
    let ci = tokens
        .iter()
        .find(|t| t.display_name == "ci")
        .expect("ci token listed")
        .name
        .clone();
    live.ok(&format!("role assign {ci} BackupContributor --vault prod"))
        .await;
    live.ok(&format!("role list --token {ci} --output json"))
        .await;
    live.ok(&format!("role remove {ci} --vault prod")).await;
    live.ok(&format!("role remove {ci}")).await;
    let again = live.pgvault(&format!("role remove {ci}")).await;
    assert!(describe(&again.expect_err("no role left")).contains("not found"));
    let bad = live.pgvault(&format!("role assign {ci} Admin")).await;
    assert!(describe(&bad.expect_err("unknown role")).contains("BackupContributor"));
    live.ok(&format!("token revoke {ci}")).await;
    assert!(live.pgvault(&format!("token revoke {ci}")).await.is_err());
    live.stop().await;
}

/// The dead letters the coordinator lists.
async fn dead_letters(live: &Live) -> Vec<DeadLetter> {
    live.api()
        .jobs()
        .list_dead_letters(ListDeadLettersRequest::default())
        .await
        .expect("list dead letters")
        .into_inner()
        .dead_letters
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_of_the_in_process_queue_are_listed_and_deleted() {
    use prost::Message;

    let live = Live::start(true).await;
    live.queue
        .publish("garbage", b"\x00\x01 not a task".to_vec())
        .await
        .expect("publish garbage");
    let ghost = TaskEnvelope {
        job_id: "6f1c1d52-6bd0-4a4e-9d0f-0c1b6a7e9f00".into(),
        attempt: 1,
        trace_context: Default::default(),
        chunk_invite: false,
    };
    live.queue
        .publish("ghost", ghost.encode_to_vec())
        .await
        .expect("publish a task for no job");
    // The in-process worker rejects both; the coordinator drains them.
    let mut listed = Vec::new();
    for _ in 0..200 {
        listed = dead_letters(&live).await;
        if listed.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(
        listed
            .iter()
            .all(|d| d.reason == "rejected" && d.queue == "in-process"),
        "{listed:?}"
    );
    let garbage = listed
        .iter()
        .find(|d| d.message_id == "garbage")
        .expect("garbage listed");
    assert_eq!(garbage.preview, "\\x00\\x01 not a task");
    live.ok("job dead-letters").await;
    live.ok("--output json job dead-letters").await;
    let id = garbage.name.trim_start_matches("deadLetters/").to_owned();
    live.ok(&format!("job dead-letters delete {id}")).await;
    assert!(
        live.pgvault(&format!("job dead-letters delete {id}"))
            .await
            .is_err(),
        "deleting twice fails"
    );
    let left = dead_letters(&live).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].message_id, "ghost");
    live.stop().await;
}
