//! Runs iproute2's `ip`, the one tool behind private networks, and checks
//! what it needs first: root (network namespaces and veth pairs are
//! privileged) and the `ip` program itself. A missing piece fails the test
//! with a message saying how to get it; nothing is skipped.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, bail};

/// Where `ip` keeps the names of network namespaces (`ip netns add`).
pub const NETNS_RUN_DIR: &str = "/var/run/netns";

/// `ip` failed; `exists` when the thing it was to create already exists.
#[derive(Debug)]
pub struct IpFailed {
    pub command: String,
    pub output: String,
}

impl IpFailed {
    pub fn exists(&self) -> bool {
        self.output.contains("File exists")
    }
}

impl std::fmt::Display for IpFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` failed: {}", self.command, self.output)
    }
}

impl std::error::Error for IpFailed {}

/// The `ip` program, once root and iproute2 are known to be there.
pub fn ip_program() -> anyhow::Result<PathBuf> {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FOUND
        .get_or_init(|| find().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn find() -> anyhow::Result<PathBuf> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "private networks need root (they create network namespaces and veth pairs): \
             run the end-to-end tests as root, e.g. `sudo -E cargo test -p pgvault-e2e`"
        );
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join("ip"))
        .find(|candidate| candidate.is_file())
        .context(
            "iproute2's `ip` is not installed and private networks need it: \
             run scripts/test.sh, or `apt-get install iproute2`",
        )
}

/// Runs `ip ARGS`; its stdout, or [`IpFailed`] with what it printed.
pub fn ip(args: &[&str]) -> anyhow::Result<String> {
    let program = ip_program()?;
    let output = Command::new(&program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {}", program.display()))?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    Err(IpFailed {
        command: format!("ip {}", args.join(" ")),
        output: format!(
            "{} ({})",
            String::from_utf8_lossy(&output.stderr).trim(),
            output.status
        ),
    }
    .into())
}

/// Whether `error` is an [`IpFailed`] about something that already exists.
pub fn already_exists(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<IpFailed>()
        .is_some_and(IpFailed::exists)
}
