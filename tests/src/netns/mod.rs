//! Private networks for end-to-end tests: a network namespace that nothing
//! on the host can reach into, joined to the host by a veth pair on a /30
//! of its own. A test runs there what must stay out of the workers' reach
//! (a PostgreSQL on the namespace's own 127.0.0.1) and what must reach both
//! sides (an agent), while the coordinator listens on the host side.
//!
//! ```text
//!   host: test, coordinator, workers        namespace pgv-<pid>-<n>: agent, PostgreSQL
//!   10.251.x.1 = host_address()  <──veth──> 10.251.x.2 = inside_address()
//! ```
//!
//! Needs root and iproute2's `ip`; without them [`PrivateNetwork::create`]
//! fails saying how to get them. Everything is removed when the network
//! handle and everything started inside have been dropped.
//!
//! # Layout
//! - [`PrivateNetwork`] (here): create, run commands inside, connect inside.
//! - [`InsideProcess`]: a managed child process inside (log file, SIGKILL).
//! - [`InsidePostgres`]: a private PostgreSQL listening only inside.
//! - `namespace`, `subnet`, `ip`, `socket`: the namespace's lifecycle, its
//!   /30, the `ip` tool, and sockets opened inside by the test itself.
//!
//! # Example
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use pgvault_e2e::netns::PrivateNetwork;
//! use pgvault_e2e::pgvault::{PgvaultUp, pgvault_bin};
//!
//! let network = PrivateNetwork::create()?;
//! let source = network.start_postgres("source-pw")?; // 127.0.0.1:port, inside only
//! source.psql("postgres", "CREATE DATABASE shop")?;
//! let up = PgvaultUp::start_listening_on(network.host_address().into(), &[])?;
//! let mut command = network.command(pgvault_bin()?);
//! command.args(["agent", "run", "--coordinator", &up.endpoint]);
//! let mut agent = network.spawn("agent", command)?;
//! agent.kill()?; // SIGKILL, as in a failover test
//! # Ok(())
//! # }
//! ```

mod ip;
mod namespace;
mod postgres;
mod process;
mod socket;
mod subnet;

use std::ffi::OsStr;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use pgvault_localpg::TempCluster;

use crate::process::ChildProcess;

pub use postgres::InsidePostgres;
pub use process::InsideProcess;

use namespace::Namespace;

/// A handle on one private network; clones share it. The namespace and its
/// veth pair go when the last handle, [`InsideProcess`] and
/// [`InsidePostgres`] of it are dropped.
#[derive(Clone)]
pub struct PrivateNetwork {
    namespace: Arc<Namespace>,
    /// The `ip` program every command inside runs through.
    ip: PathBuf,
    /// Numbers the log files of processes started inside.
    logs: Arc<AtomicU32>,
}

impl PrivateNetwork {
    /// A new namespace `pgv-<pid>-<n>`: loopback up, and a veth pair on a
    /// free /30 of 10.251.0.0/16 (host side `.1`, namespace side `.2`).
    pub fn create() -> anyhow::Result<PrivateNetwork> {
        let ip = ip::ip_program()?;
        let namespace = Namespace::create().context("cannot create a private network")?;
        Ok(PrivateNetwork {
            namespace: Arc::new(namespace),
            ip,
            logs: Arc::new(AtomicU32::new(0)),
        })
    }

    /// The namespace's name, as `ip netns list` shows it.
    pub fn name(&self) -> &str {
        &self.namespace.name
    }

    /// The host side of the veth pair: what processes inside dial to reach
    /// a server on the host (listen there, e.g. the coordinator).
    pub fn host_address(&self) -> Ipv4Addr {
        self.namespace.subnet().host_address()
    }

    /// The namespace side of the veth pair.
    pub fn inside_address(&self) -> Ipv4Addr {
        self.namespace.subnet().inside_address()
    }

    /// Name of the host-side veth interface (the pair goes with it).
    pub fn host_interface(&self) -> String {
        self.namespace.subnet().host_interface()
    }

    /// A command running `program` inside (`ip netns exec NAME program`);
    /// add arguments and environment as usual, then run it or [`Self::spawn`] it.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new(&self.ip);
        command.args(["netns", "exec", self.name()]).arg(program);
        command
    }

    /// Starts `command` (made by [`Self::command`]) as a managed child: its
    /// own process group, stdout and stderr in a log file, killed on drop.
    pub fn spawn(&self, name: &str, command: Command) -> anyhow::Result<InsideProcess> {
        let args: Vec<&OsStr> = command.get_args().take(3).collect();
        if command.get_program() != self.ip || args != ["netns", "exec", self.name()] {
            bail!(
                "{name} would not run inside {}: build it with PrivateNetwork::command",
                self.name()
            );
        }
        let n = self.logs.fetch_add(1, Ordering::Relaxed);
        let slug: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let log = self.namespace.dir.path().join(format!("{slug}-{n}.log"));
        let process = ChildProcess::spawn(name, command, &log)?;
        self.wait_until_inside(&process)?;
        Ok(InsideProcess::new(process, self.clone()))
    }

    /// `ip netns exec` enters the namespace a moment after it starts; waits
    /// for that moment (or for the process to end), so that a spawned
    /// process is inside by the time the caller looks.
    fn wait_until_inside(&self, process: &ChildProcess) -> anyhow::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let namespace = std::fs::metadata(self.namespace.path())
            .with_context(|| format!("namespace {} has no handle", self.name()))?;
        let own = format!("/proc/{}/ns/net", process.pid());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match std::fs::metadata(&own) {
                Ok(m) if (m.dev(), m.ino()) == (namespace.dev(), namespace.ino()) => return Ok(()),
                Ok(_) => {}
                // Gone already (a short command): nothing left to wait for.
                Err(_) => return Ok(()),
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not enter {} within 30 s; output:\n{}",
                    process.pid(),
                    self.name(),
                    process.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A private, throwaway PostgreSQL inside, listening only on the
    /// namespace's 127.0.0.1 (superuser `postgres` with `password`).
    pub fn start_postgres(&self, password: &str) -> anyhow::Result<InsidePostgres> {
        let prefix = [
            self.ip.display().to_string(),
            "netns".into(),
            "exec".into(),
            self.name().into(),
        ];
        let cluster = TempCluster::start_through(password, prefix.to_vec())
            .with_context(|| format!("cannot start PostgreSQL inside {}", self.name()))?;
        Ok(InsidePostgres::new(cluster, self.clone()))
    }

    /// A TCP connection to `address` opened inside, as a process there
    /// would open it (the test's own way in; nothing on the host can).
    pub fn connect_tcp(&self, address: SocketAddr) -> anyhow::Result<TcpStream> {
        socket::connect_inside(&self.namespace.path(), address, Duration::from_secs(5))
    }

    /// Pids of every process inside.
    pub fn pids(&self) -> anyhow::Result<Vec<u32>> {
        self.namespace.pids()
    }
}

impl std::fmt::Debug for PrivateNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateNetwork")
            .field("name", &self.name())
            .field("host_address", &self.host_address())
            .field("inside_address", &self.inside_address())
            .finish()
    }
}
