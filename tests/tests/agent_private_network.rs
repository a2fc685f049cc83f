//! The agent end to end, through the CLI (issue 12): a source PostgreSQL
//! inside a private network that neither the coordinator nor the workers
//! can reach, with only an agent (`pgvault agent run`) inside. Its server
//! is registered with `--agent`; its databases are listed, a low-privileged
//! user is validated (the grant script generated through the agent fixes
//! it), a backup is taken, restored as a database and as a SQL file — all
//! through the agent — and both restores are identical to the source; a
//! restore failing on the agent shows the agent's last log lines. The
//! same server registered without `--agent` is handed to a plain worker,
//! whose job fails to connect: the routing, not luck, reaches the server.
//! Needs root (network namespaces), PostgreSQL and RabbitMQ.

use std::net::IpAddr;
use std::process::Output;

use pgvault_e2e::agent::{AgentProcess, create_agent, wait_connected};
use pgvault_e2e::compare::assert_identical;
use pgvault_e2e::fixtures;
use pgvault_e2e::netns::{InsidePostgres, PrivateNetwork};
use pgvault_e2e::pg_access::PgAccess;
use pgvault_e2e::pgvault::{Api, PgvaultCluster};
use pgvault_e2e::rabbitmq::RabbitMq;
use pgvault_proto::v1::{GetJobRequest, Job, JobState, ListJobsRequest};
use serde_json::Value;

const ADMIN_PASSWORD: &str = "Agent-adm1n-pw";
const LOW_PASSWORD: &str = "Agent-l0w-pw";

/// Everything the test runs; fields drop in order (the agent and pgvault
/// before the source, the source before its network).
struct Servers {
    agent: AgentProcess,
    cluster: PgvaultCluster,
    source: InsidePostgres,
    _network: PrivateNetwork,
    _broker: RabbitMq,
    /// The file:// datastore and the restore-as-files destination: on the
    /// host's disk, which processes inside the namespace see too.
    dir: tempfile::TempDir,
}

impl Servers {
    /// `pgvault ARGS`: (success, stdout + stderr). No output may show a password.
    fn cli(&self, args: &[&str], stdin: Option<&str>) -> (bool, String) {
        let output: Output = self.cluster.cli(args, stdin).expect("run pgvault");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            !text.contains(ADMIN_PASSWORD) && !text.contains(LOW_PASSWORD),
            "`pgvault {}` printed a password",
            args.join(" ")
        );
        (output.status.success(), text)
    }

    /// `pgvault ARGS`, which must succeed; its output.
    fn ok(&self, args: &[&str]) -> String {
        self.ok_with(args, None)
    }

    fn ok_with(&self, args: &[&str], stdin: Option<&str>) -> String {
        let (success, text) = self.cli(args, stdin);
        assert!(
            success,
            "`pgvault {}` failed:\n{text}\n{}",
            args.join(" "),
            self.logs()
        );
        text
    }

    fn logs(&self) -> String {
        format!("{}\n{}", self.cluster.logs(), self.agent.labelled_log())
    }
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The newest job of `instance` (restores included), with its attempts.
async fn newest_job(api: &mut Api, instance: &str) -> Job {
    let jobs = api
        .jobs
        .list_jobs(ListJobsRequest {
            backup_instance: instance.into(),
            page_size: 100,
            all: true,
            ..Default::default()
        })
        .await
        .expect("list jobs")
        .into_inner()
        .jobs;
    let newest = jobs
        .into_iter()
        .max_by_key(|j| {
            j.create_time
                .as_ref()
                .map(|t| (t.seconds, t.nanos))
                .unwrap_or_default()
        })
        .expect("the instance has a job");
    api.jobs
        .get_job(GetJobRequest { name: newest.name })
        .await
        .expect("get job")
        .into_inner()
}

/// Runs `sql_file` with psql inside the private network, on `database`.
fn psql_file(source: &InsidePostgres, database: &str, sql_file: &std::path::Path) {
    let output = source
        .client_command("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", database, "-f"])
        .arg(sql_file)
        .output()
        .expect("run psql inside");
    assert!(
        output.status.success(),
        "psql -f {} failed: {}",
        sql_file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_only_the_agent_reaches_is_validated_backed_up_and_restored_through_it() {
    // A private network with the source inside; pgvault on the host side.
    let network = PrivateNetwork::create().expect("create private network");
    let source = network
        .start_postgres(ADMIN_PASSWORD)
        .expect("start PostgreSQL inside the private network");
    fixtures::mixed(&source, "shop")
        .await
        .expect("load the source database");
    source
        .connect("shop")
        .await
        .expect("connect inside")
        .batch_execute(&format!(
            "CREATE ROLE lowpriv LOGIN PASSWORD '{LOW_PASSWORD}'"
        ))
        .await
        .expect("create the low-privileged user");
    let broker = tokio::task::spawn_blocking(RabbitMq::start)
        .await
        .unwrap()
        .expect("start RabbitMQ");
    let (url, host) = (broker.url(), IpAddr::V4(network.host_address()));
    let cluster =
        tokio::task::spawn_blocking(move || PgvaultCluster::start_listening_on(&url, 1, host))
            .await
            .unwrap()
            .expect("start a coordinator and a worker on the host");
    let mut api = cluster.api().await.expect("connect to the coordinator");

    // The agent: created through the CLI, run inside with its token.
    let token = create_agent(&cluster, "dc1", "local").expect("pgvault agent create");
    let agent = AgentProcess::start(&network, &cluster.endpoint, "dc1", &token)
        .expect("start pgvault agent run inside");
    let dir = tempfile::Builder::new()
        .prefix("pgvault-agent-e2e-")
        .tempdir()
        .expect("datastore directory");
    let mut s = Servers {
        agent,
        cluster,
        source,
        _network: network,
        _broker: broker,
        dir,
    };
    wait_connected(&mut api, "dc1", 1, &mut [&mut s.agent])
        .await
        .expect("the agent connects");

    let datastore = format!("file://{}", s.dir.path().join("store").display());
    let port = s.source.port().to_string();
    s.ok(&[
        "vault",
        "create",
        "v",
        "--region",
        "local",
        "--datastore",
        &datastore,
    ]);
    s.ok(&[
        "policy",
        "create",
        "nightly",
        "--vault",
        "v",
        "--weekdays",
        "mon",
        "--at",
        "02:30",
    ]);
    // The same address twice: through the agent, and (for the routing
    // proof) directly, as workers would dial it.
    let register = |name: &str, agent: Option<&str>| {
        let mut args = vec![
            "server",
            "register",
            name,
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--region",
            "local",
        ];
        args.extend(agent.map(|a| ["--agent", a]).into_iter().flatten());
        s.ok(&args);
    };
    register("private", Some("dc1"));
    register("direct", None);
    s.ok_with(
        &["secret", "put", "admin"],
        Some(&format!("user=postgres password={ADMIN_PASSWORD}")),
    );
    s.ok_with(
        &["secret", "put", "low"],
        Some(&format!("user=lowpriv password={LOW_PASSWORD}")),
    );
    s.ok(&["secret", "grant", "admin", "--vault", "v"]);

    // Listing databases goes through the agent; the coordinator itself
    // cannot reach the address.
    let listed = json(&s.ok(&[
        "server",
        "databases",
        "private",
        "--secret",
        "admin",
        "--output",
        "json",
    ]));
    assert!(
        listed.to_string().contains("\"shop\""),
        "shop is listed through the agent: {listed}"
    );
    let (success, text) = s.cli(
        &["server", "databases", "direct", "--secret", "admin"],
        None,
    );
    assert!(
        !success
            && text
                .contains("UserErrorServerConnectionClosed: cannot connect to server \"direct\""),
        "the coordinator must not reach the private server directly:\n{text}"
    );

    // The low-privileged user fails validation; the grant script comes
    // through the agent, the administrator runs it inside, and the
    // revalidation succeeds.
    let (success, text) = s.cli(
        &[
            "backup",
            "configure",
            "--vault",
            "v",
            "--policy",
            "nightly",
            "--server",
            "private",
            "--database",
            "shop",
            "--secret",
            "low",
            "--assign-missing-permissions",
            "--output",
            "json",
        ],
        None,
    );
    assert!(!success, "a row failing validation fails the command");
    let result = json(&text)["results"][0].clone();
    assert_eq!(result["readiness"], "FAILED_VALIDATION", "{result}");
    assert_eq!(
        result["error"]["code"], "UserErrorMissingDBPermissions",
        "{result}"
    );
    let instance = result["backup_instance"]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("the failed row is kept: {result}"))
        .to_string();
    let sql = result["grant_script"]["sql"]
        .as_str()
        .unwrap_or_else(|| panic!("a grant script: {result}"))
        .to_string();
    assert!(sql.contains("lowpriv"), "{sql}");
    let script = s.dir.path().join("grant.sql");
    std::fs::write(&script, &sql).expect("write the grant script");
    psql_file(&s.source, "shop", &script);
    let revalidated = json(&s.ok(&["backup", "revalidate", &instance, "--output", "json"]));
    assert_eq!(
        revalidated["results"][0]["readiness"], "SUCCESS",
        "{revalidated}"
    );

    // The backup runs on the agent.
    s.ok(&["backup", "now", &instance, "--wait"]);
    let backup = newest_job(&mut api, &instance).await;
    assert_eq!(backup.state, JobState::Completed as i32, "{backup:?}");
    assert_eq!(backup.agent, "agents/dc1", "{backup:?}");
    assert!(
        s.agent.is_worker(&backup.worker),
        "the agent ran the backup: {backup:?}"
    );
    let attempt = backup.attempts.last().expect("an attempt");
    assert_eq!(attempt.agent, "agents/dc1", "{backup:?}");
    let points = json(&s.ok(&["recovery-point", "list", &instance, "--output", "json"]));
    let point = points["recovery_points"][0]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("a recovery point: {points}"))
        .to_string();

    // Restored as a database into the private server, through the agent.
    s.ok(&[
        "restore",
        "database",
        &point,
        "--target-database",
        "shop_copy",
        "--secret",
        "admin",
        "--wait",
    ]);
    let restore = newest_job(&mut api, &instance).await;
    assert_eq!(restore.target_database, "shop_copy", "{restore:?}");
    assert_eq!(restore.agent, "agents/dc1", "{restore:?}");
    assert!(s.agent.is_worker(&restore.worker), "{restore:?}");
    assert_identical(&s.source, "shop", &s.source, "shop_copy")
        .await
        .expect("the database restored through the agent equals the source");

    // Restored as a SQL file (the agent writes it), loaded inside.
    let exports = s.dir.path().join("exports");
    let to = format!("file://{}", exports.display());
    s.ok(&[
        "restore", "files", &point, "--to", &to, "--name", "shop.sql", "--wait",
    ]);
    let files = newest_job(&mut api, &instance).await;
    assert_eq!(files.target_file, "shop.sql", "{files:?}");
    assert_eq!(files.agent, "agents/dc1", "{files:?}");
    assert!(s.agent.is_worker(&files.worker), "{files:?}");
    fixtures::create_database(&s.source, "shop_from_sql")
        .await
        .expect("create an empty database");
    psql_file(&s.source, "shop_from_sql", &exports.join("shop.sql"));
    assert_identical(&s.source, "shop", &s.source, "shop_from_sql")
        .await
        .expect("the SQL file written through the agent loads identical");

    // A task failing on the agent brings the agent's last log lines
    // into the job's details.
    let (success, text) = s.cli(
        &[
            "restore",
            "database",
            &point,
            "--target-database",
            "shop_copy",
            "--secret",
            "admin",
            "--wait",
        ],
        None,
    );
    assert!(!success, "the target database exists:\n{text}");
    let failed = newest_job(&mut api, &instance).await;
    assert_eq!(
        failed.error.as_ref().map(|e| e.code.as_str()),
        Some("UserErrorDatabaseNameAlreadyInUse"),
        "{failed:?}"
    );
    let attempt = failed.attempts.last().expect("an attempt");
    assert!(
        attempt.agent == "agents/dc1" && !attempt.log_tail.is_empty(),
        "the failed attempt carries the agent's log tail: {failed:?}"
    );
    let shown = s.ok(&["job", "show", &failed.name]);
    assert!(
        shown.contains("LOG OF ATTEMPT 1") && shown.contains("agent dc1"),
        "{shown}"
    );

    // The routing proof: the same server without --agent goes to the
    // plain worker, which cannot connect.
    let (success, text) = s.cli(
        &[
            "restore",
            "database",
            &point,
            "--target-server",
            "direct",
            "--target-database",
            "shop_direct",
            "--secret",
            "admin",
            "--wait",
        ],
        None,
    );
    assert!(
        !success,
        "a worker must not reach the private server:\n{text}"
    );
    let direct = newest_job(&mut api, &instance).await;
    assert_eq!(direct.target_server, "servers/direct", "{direct:?}");
    assert_eq!(direct.state, JobState::Failed as i32, "{direct:?}");
    assert_eq!(direct.agent, "", "a server without --agent goes to workers");
    let error = direct.error.clone().expect("a failed job has an error");
    assert_eq!(
        error.code,
        "UserErrorServerConnectionClosed",
        "{error:?}\n{}",
        s.logs()
    );
    assert!(
        direct
            .attempts
            .iter()
            .all(|a| a.agent.is_empty() && !s.agent.is_worker(&a.worker)),
        "every attempt ran on the worker: {direct:?}"
    );
    let databases = s
        .source
        .psql("postgres", "SELECT datname FROM pg_database ORDER BY 1")
        .expect("list databases inside");
    assert!(!databases.contains("shop_direct"), "{databases}");

    // `agent list` shows it connected, with its version and server.
    let agents = json(&s.ok(&["agent", "list", "--output", "json"]));
    let dc1 = &agents["agents"][0];
    assert_eq!(dc1["name"], "agents/dc1", "{agents}");
    assert_eq!(dc1["connected"], true, "{agents}");
    assert_eq!(dc1["servers"], serde_json::json!(["servers/private"]));
    assert_eq!(
        dc1["instances"][0]["version"],
        env!("CARGO_PKG_VERSION"),
        "{agents}"
    );
    assert_eq!(dc1["instances"][0]["supported"], true, "{agents}");
    let table = s.ok(&["agent", "list"]);
    let row = table
        .lines()
        .find(|l| l.starts_with("dc1"))
        .unwrap_or_else(|| panic!("a row for dc1:\n{table}"));
    assert!(
        row.contains("yes") && row.contains(env!("CARGO_PKG_VERSION")),
        "{table}"
    );

    // Secrets reached the agent inside its tasks only: never its log.
    let log = s.agent.log_text();
    assert!(
        !log.contains(ADMIN_PASSWORD) && !log.contains(LOW_PASSWORD),
        "the agent logged a password"
    );
    assert!(!log.contains(&token), "the agent logged its token");
}
