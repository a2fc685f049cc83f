//! One network namespace and its veth pair: created with `ip`, torn down
//! on drop (every process still inside is killed, then the veth pair and
//! the namespace are deleted). Shared behind an `Arc` by the network handle
//! and everything running inside, so it goes only when the last of them does.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::ip::{NETNS_RUN_DIR, already_exists, ip};
use super::subnet::{Subnet, networks_in_use};

/// Numbers the namespaces of this test process (`pgv-<pid>-<n>`).
static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct Namespace {
    /// `pgv-<pid>-<n>`: the test process that made it, for anyone looking.
    pub name: String,
    /// The claimed /30; `None` until the veth pair exists.
    pub subnet: Option<Subnet>,
    /// Logs of the processes started inside.
    pub dir: tempfile::TempDir,
}

impl Namespace {
    /// A namespace with loopback up and a veth pair on a free /30.
    pub fn create() -> anyhow::Result<Namespace> {
        let dir = tempfile::Builder::new()
            .prefix("pgvault-netns-")
            .tempdir()?;
        let pid = std::process::id();
        let mut namespace = loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let name = format!("pgv-{pid}-{n}");
            match ip(&["netns", "add", &name]) {
                Ok(_) => {
                    break Namespace {
                        name,
                        subnet: None,
                        dir,
                    };
                }
                // Left behind by an earlier process with the same pid.
                Err(e) if already_exists(&e) && n < 1000 => continue,
                Err(e) => return Err(e.context("cannot create a network namespace")),
            }
        };
        // From here on, dropping `namespace` removes what was made.
        namespace.subnet = Some(namespace.add_veth(pid)?);
        namespace.configure()?;
        Ok(namespace)
    }

    /// Path of the namespace's handle, for `setns`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(NETNS_RUN_DIR).join(&self.name)
    }

    /// Pids of the processes inside.
    pub fn pids(&self) -> anyhow::Result<Vec<u32>> {
        let output = ip(&["netns", "pids", &self.name])?;
        Ok(output
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect())
    }

    pub fn subnet(&self) -> Subnet {
        self.subnet.expect("a created namespace has its subnet")
    }

    /// Claims the first free /30 from a seed spread by pid and number by
    /// creating its veth pair (host side here, the peer inside).
    fn add_veth(&self, pid: u32) -> anyhow::Result<Subnet> {
        let in_use = networks_in_use(&ip(&["-4", "-o", "addr", "show"])?);
        let seed = pid
            .wrapping_mul(97)
            .wrapping_add(NEXT.load(Ordering::Relaxed));
        for subnet in Subnet::candidates(seed) {
            if in_use.iter().any(|(a, p)| subnet.overlaps(*a, *p)) {
                continue;
            }
            let (host, inside) = (subnet.host_interface(), subnet.inside_interface());
            let peer = ["peer", "name", &inside, "netns", &self.name];
            match ip(&[&["link", "add", &host, "type", "veth"][..], &peer].concat()) {
                Ok(_) => return Ok(subnet),
                Err(e) if already_exists(&e) => continue,
                Err(e) => return Err(e.context("cannot create a veth pair")),
            }
        }
        bail!("no free /30 left in 10.251.0.0/16 for a private network")
    }

    /// Addresses on both sides, everything up.
    fn configure(&self) -> anyhow::Result<()> {
        let subnet = self.subnet();
        let (host, inside) = (subnet.host_interface(), subnet.inside_interface());
        let host_cidr = format!("{}/30", subnet.host_address());
        let inside_cidr = format!("{}/30", subnet.inside_address());
        let n = self.name.as_str();
        let steps: [&[&str]; 5] = [
            &["addr", "add", &host_cidr, "dev", &host],
            &["link", "set", &host, "up"],
            &["-n", n, "addr", "add", &inside_cidr, "dev", &inside],
            &["-n", n, "link", "set", &inside, "up"],
            &["-n", n, "link", "set", "lo", "up"],
        ];
        for step in steps {
            ip(step).with_context(|| format!("cannot set up private network {n}"))?;
        }
        Ok(())
    }

    /// SIGKILLs every process inside and waits (a few seconds) for them to go.
    fn kill_everything_inside(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pids = self.pids()?;
            if pids.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("processes {pids:?} are still inside after SIGKILL");
            }
            for pid in pids {
                // SAFETY: kill has no memory preconditions; every process in
                // this namespace was started by this harness.
                unsafe {
                    libc::kill(pid as i32, libc::SIGKILL);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let name = self.name.clone();
        if let Err(e) = self.kill_everything_inside() {
            eprintln!("warning: private network {name}: {e:#}");
        }
        // Deleting one end of a veth pair deletes both.
        if let Some(subnet) = self.subnet
            && let Err(e) = ip(&["link", "del", &subnet.host_interface()])
        {
            eprintln!("warning: private network {name}: {e:#}");
        }
        if let Err(e) = ip(&["netns", "del", &name]) {
            eprintln!("warning: private network {name}: {e:#}");
        }
    }
}
