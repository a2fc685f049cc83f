//! The private-network harness itself (`pgvault_e2e::netns`), proven over
//! real namespaces: a PostgreSQL inside answers processes inside and
//! nothing on the host; processes inside reach servers on the host-side
//! address (a plain listener, `pgvault up`, a coordinator); spawned processes really
//! run inside, log to files and die by SIGKILL; and dropping everything
//! leaves no namespace, veth or process behind. Needs root and iproute2.

use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use pgvault_e2e::compare::assert_identical;
use pgvault_e2e::fixtures;
use pgvault_e2e::netns::PrivateNetwork;
use pgvault_e2e::pg_access::PgAccess;
use pgvault_e2e::pgvault::{PgvaultCluster, PgvaultUp, TEST_TOKEN, pgvault_bin};
use pgvault_e2e::rabbitmq::RabbitMq;
use pgvault_localpg::TempCluster;

/// `ip ARGS` as the test's own witness: (success, stdout and stderr).
fn ip(args: &[&str]) -> (bool, String) {
    let output = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (apt-get install iproute2)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// `/proc/PID/stat` of a process still running (a zombie waiting for
/// init to reap it has exited: it is not running).
fn running(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat.rsplit_once(") ")?.1.chars().next()?;
    (state != 'Z' && state != 'X').then_some(stat)
}

/// Whether a TCP connection from the test process (on the host) to
/// `address` is accepted.
fn host_connects(address: SocketAddr) -> bool {
    TcpStream::connect_timeout(&address, Duration::from_secs(2)).is_ok()
}

#[tokio::test]
async fn postgres_inside_answers_processes_inside_and_nothing_on_the_host() {
    let network = PrivateNetwork::create().expect("create private network");
    let pg = network
        .start_postgres("inside-pw")
        .expect("start PostgreSQL inside");

    // (1) Reachable from inside: psql run in the namespace, and a
    // connection whose socket was opened there.
    let answer = pg
        .psql("postgres", "select 'inside ' || 6 * 7")
        .expect("psql inside");
    assert_eq!(answer, "inside 42");
    let client = pg.connect("postgres").await.expect("connect inside");
    let row = client
        .query_one("select inet_server_addr()::text", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "127.0.0.1/32");

    // (2) Not reachable from the host: neither on the host's loopback nor
    // through the veth pair to the namespace's address.
    let port = pg.port();
    let loopback = SocketAddr::from(([127, 0, 0, 1], port));
    let through_veth = SocketAddr::new(IpAddr::V4(network.inside_address()), port);
    assert!(
        !host_connects(loopback),
        "something on the host answered on {loopback}: the server must listen inside only"
    );
    assert!(
        !host_connects(through_veth),
        "the host reached {through_veth}: the server must listen on the namespace's loopback only"
    );
    // The same address works inside, so the refusals above are about where
    // the test stands, not about a server that is down.
    network.connect_tcp(loopback).expect("connect inside");
}

#[test]
fn processes_inside_reach_a_listener_on_the_host_side_address() {
    let network = PrivateNetwork::create().expect("create private network");
    let listener = TcpListener::bind((network.host_address(), 0)).expect("bind host side");
    listener.set_nonblocking(true).unwrap();
    let target = listener.local_addr().unwrap();

    // (3) bash's /dev/tcp opens the connection from inside the namespace.
    let mut command = network.command("bash");
    command.args([
        "-c",
        &format!(
            "echo hello from inside >/dev/tcp/{}/{} && echo sent && echo to-stderr >&2",
            target.ip(),
            target.port()
        ),
    ]);
    let mut sender = network.spawn("sender", command).expect("spawn inside");
    let status = sender.wait(Duration::from_secs(10)).expect("sender exits");
    assert!(status.success(), "sender failed:\n{}", sender.log_text());
    let (mut stream, peer) = listener
        .accept()
        .expect("the connection from inside is waiting");
    assert_eq!(peer.ip(), IpAddr::V4(network.inside_address()));
    stream.set_nonblocking(false).unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    assert_eq!(text, "hello from inside\n");
    let log = sender.log_text();
    assert!(
        log.contains("sent") && log.contains("to-stderr"),
        "stdout and stderr are captured: {log:?}"
    );

    // The host's loopback is not the namespace's: a server listening only
    // there is out of reach from inside.
    let loopback_only = TcpListener::bind(("127.0.0.1", 0)).expect("bind host loopback");
    let address = loopback_only.local_addr().unwrap();
    assert!(
        network.connect_tcp(address).is_err(),
        "a process inside reached the host's {address}"
    );
}

#[test]
fn spawned_processes_run_inside_and_die_by_sigkill() {
    let network = PrivateNetwork::create().expect("create private network");
    let mut command = network.command("sleep");
    command.arg("600");
    let mut sleeper = network.spawn("sleeper", command).expect("spawn inside");
    let pid = sleeper.pid();
    assert!(
        network.pids().unwrap().contains(&pid),
        "pid {pid} is not in {}",
        network.name()
    );
    let status = sleeper.kill().expect("SIGKILL");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert!(!network.pids().unwrap().contains(&pid));

    let mut stray = Command::new("sleep");
    stray.arg("600");
    let refused = network
        .spawn("host sleeper", stray)
        .err()
        .expect("a host command is refused");
    assert!(
        refused
            .to_string()
            .contains("build it with PrivateNetwork::command"),
        "{refused}"
    );
}

#[test]
fn dropping_the_network_removes_namespace_veth_and_everything_inside() {
    let network = PrivateNetwork::create().expect("create private network");
    let (name, interface) = (network.name().to_string(), network.host_interface());
    let pg = network
        .start_postgres("inside-pw")
        .expect("start PostgreSQL inside");
    let mut command = network.command("sleep");
    command.arg("600");
    let sleeper = network.spawn("sleeper", command).expect("spawn inside");
    let inside = network.pids().unwrap();
    assert!(
        inside.len() >= 2,
        "PostgreSQL and sleep run inside: {inside:?}"
    );
    assert!(ip(&["netns", "list"]).1.contains(&name));
    assert!(ip(&["link", "show", &interface]).0);

    // (4) The network goes with the last thing using it, in any order.
    drop(network);
    assert!(
        ip(&["netns", "list"]).1.contains(&name),
        "still in use by PostgreSQL and sleep"
    );
    drop(sleeper);
    drop(pg);
    let (_, namespaces) = ip(&["netns", "list"]);
    assert!(
        !namespaces.contains(&name),
        "{name} left behind: {namespaces}"
    );
    let (found, output) = ip(&["link", "show", &interface]);
    assert!(!found, "veth {interface} left behind: {output}");
    assert!(!Path::new("/var/run/netns").join(&name).exists());
    let survivors: Vec<String> = inside.into_iter().filter_map(running).collect();
    assert!(survivors.is_empty(), "still running: {survivors:?}");
}

#[tokio::test]
async fn fixtures_and_comparisons_work_on_a_postgres_inside() {
    let network = PrivateNetwork::create().expect("create private network");
    let inside = network
        .start_postgres("inside-pw")
        .expect("start PostgreSQL inside");
    let host = TempCluster::start("host-pw").expect("start PostgreSQL on the host");
    fixtures::mixed(&inside, "mixed")
        .await
        .expect("load inside");
    fixtures::mixed(&host, "mixed")
        .await
        .expect("load on the host");
    fixtures::pgbench(&inside, "bench", 1)
        .await
        .expect("pgbench inside");
    assert_identical(&inside, "mixed", &host, "mixed")
        .await
        .expect("the same fixture compares identical across the boundary");
    let accounts = inside
        .psql("bench", "select count(*) from pgbench_accounts")
        .expect("pgbench ran inside");
    assert_eq!(accounts, "100000");
    let client = inside.client("mixed").await.expect("connect inside");
    client
        .batch_execute("UPDATE public.lines SET body = 'changed' WHERE id = 2")
        .await
        .unwrap();
    let differs = assert_identical(&inside, "mixed", &host, "mixed").await;
    assert!(differs.is_err(), "a changed row must not compare identical");
}

#[tokio::test]
async fn a_process_inside_reaches_pgvault_up_listening_on_the_host_side() {
    let network = PrivateNetwork::create().expect("create private network");
    let host = IpAddr::V4(network.host_address());
    let up = tokio::task::spawn_blocking(move || PgvaultUp::start_listening_on(host, &[]))
        .await
        .unwrap()
        .expect("start pgvault up on the host-side address");
    assert!(up.endpoint.contains(&host.to_string()), "{}", up.endpoint);

    let datastore = format!("file://{}", up.data_dir.join("datastore").display());
    let output = network
        .command(pgvault_bin().expect("pgvault binary"))
        .args(["vault", "create", "made-inside", "--region", "local"])
        .args(["--datastore", &datastore])
        .env("PGVAULT_ENDPOINT", &up.endpoint)
        .env("PGVAULT_TOKEN", up.token().expect("admin token"))
        .output()
        .expect("run the CLI inside");
    assert!(
        output.status.success(),
        "the CLI inside could not use the coordinator: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listed = up.cli(&["vault", "list"], None).expect("list vaults");
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("made-inside"),
        "{listed:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_process_inside_and_the_host_both_reach_a_coordinator_on_the_host_side_address() {
    let network = PrivateNetwork::create().expect("create private network");
    let host = IpAddr::V4(network.host_address());
    let broker = tokio::task::spawn_blocking(RabbitMq::start)
        .await
        .unwrap()
        .expect("start RabbitMQ");
    let url = broker.url();
    let mut cluster =
        tokio::task::spawn_blocking(move || PgvaultCluster::start_listening_on(&url, 0, host))
            .await
            .unwrap()
            .expect("start a coordinator on the host-side address");
    assert!(
        cluster.endpoint.contains(&host.to_string()),
        "{}",
        cluster.endpoint
    );

    let output = network
        .command(pgvault_bin().expect("pgvault binary"))
        .args(["vault", "list"])
        .env("PGVAULT_ENDPOINT", &cluster.endpoint)
        .env("PGVAULT_TOKEN", TEST_TOKEN)
        .output()
        .expect("run the CLI inside");
    assert!(
        output.status.success(),
        "the CLI inside could not use the coordinator: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Host-side clients (and workers) dial the same endpoint.
    let listed = cluster.cli(&["vault", "list"], None).expect("list vaults");
    assert!(listed.status.success(), "{listed:?}");
    let second = cluster
        .add_coordinator()
        .expect("a second coordinator listens on the same host address");
    assert!(second.contains(&host.to_string()), "{second}");
}
