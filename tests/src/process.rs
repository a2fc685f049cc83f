//! A child process in its own process group, killed with the whole group on
//! drop, with its output captured to a log file for failure messages.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub struct ChildProcess {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl ChildProcess {
    /// Spawns `command` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> anyhow::Result<ChildProcess> {
        use std::os::unix::process::CommandExt;
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open {}", log.display()))?;
        let err = out.try_clone()?;
        command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        Ok(ChildProcess {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or_default()
    }

    /// The last lines of the process's output, for assertion messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails if the process has exited.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            bail!(
                "{} exited ({status}); output:\n{}",
                self.name,
                self.log_tail(40)
            );
        }
        Ok(())
    }

    /// Sends `signal` to the process group.
    pub fn signal(&self, signal: i32) {
        if let Some(child) = self.child.as_ref() {
            // SAFETY: kill with a negative pid signals the group we created.
            unsafe {
                libc::kill(-(child.id() as i32), signal);
            }
        }
    }

    /// SIGKILLs the process group (no chance to clean up, as in a crash)
    /// and waits for the exit.
    pub fn kill(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        self.signal(libc::SIGKILL);
        self.wait(Duration::from_secs(30))
    }

    /// SIGTERM, then SIGKILL after `grace`; waits for the exit.
    pub fn stop(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        self.signal_pid(&child, libc::SIGTERM);
        let deadline = Instant::now() + grace;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.signal_pid(&child, libc::SIGKILL);
                return Some(status);
            }
            if Instant::now() >= deadline {
                self.signal_pid(&child, libc::SIGKILL);
                return child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the process to exit by itself.
    pub fn wait(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().context("process already stopped")?;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not exit within {timeout:?}; output:\n{}",
                    self.name,
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn signal_pid(&self, child: &Child, signal: i32) {
        // SAFETY: see `signal`.
        unsafe {
            libc::kill(-(child.id() as i32), signal);
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// Waits until `process` listens on 127.0.0.1:`port`.
pub fn wait_for_port(
    port: u16,
    timeout: Duration,
    process: &mut ChildProcess,
) -> anyhow::Result<()> {
    wait_for_address(SocketAddr::from(([127, 0, 0, 1], port)), timeout, process)
}

/// Waits until `process` (or a process of its group) listens on `address`
/// and accepts connections there. Another process listening on the port
/// does not count: it took the port first, and `process` will exit (see
/// [`crate::ports::start_on_free_ports`]).
pub fn wait_for_address(
    address: SocketAddr,
    timeout: Duration,
    process: &mut ChildProcess,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        process.ensure_running()?;
        if std::net::TcpStream::connect(address).is_ok()
            && crate::ports::group_listens_on(process.pid(), address)
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let holder = if crate::ports::listening_inodes(address.port()).is_empty() {
        "nothing listened"
    } else {
        "another process listened"
    };
    bail!(
        "{holder} on {address} instead of {} within {timeout:?}; output:\n{}",
        process.name,
        process.log_tail(40)
    )
}
