//! The `pgvault` binary the end-to-end tests run: built by the harness, once
//! per test process, with `cargo build -p pgvault --features test-clock`
//! (the file-driven coordinator clock, absent from production builds), so a
//! test never runs a
//! binary older than the sources. Cargo decides what is stale (a no-op when
//! nothing changed); the build goes to the target directory cargo uses for
//! the tests (`CARGO_TARGET_DIR` and cargo's configuration are honoured),
//! and cargo's build lock serialises test processes building at once.
//!
//! `PGVAULT_BIN=/path/to/pgvault` runs that binary instead and builds
//! nothing; the harness then trusts it (tests that move the clock need it
//! built with `--features test-clock`).

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, bail};

use crate::workspace_root;

/// Cargo features the tests need in the binary they run: `test-clock`
/// lets them move the coordinator's clock (`PgvaultCluster::set_clock_offset`).
const FEATURES: &[&str] = &["test-clock"];

/// The `pgvault` binary to run: `PGVAULT_BIN`, or the one the harness built.
pub fn pgvault_bin() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("PGVAULT_BIN") {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("PGVAULT_BIN names {}, which is not a file", bin.display());
        }
        return Ok(bin);
    }
    // Concurrent tests of one process wait for the first one's build.
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

/// `cargo build -p pgvault --features …`; the path cargo reports for the binary.
fn build() -> anyhow::Result<PathBuf> {
    // The cargo running the tests (it sets CARGO), else the one that built them.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let mut command = Command::new(&cargo);
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(is_test_crate_variable) {
            command.env_remove(name);
        }
    }
    command
        .current_dir(workspace_root())
        .args(["build", "-p", "pgvault", "--bin", "pgvault"])
        .arg("--message-format=json-render-diagnostics");
    if !FEATURES.is_empty() {
        command.arg("--features").arg(FEATURES.join(","));
    }
    eprintln!("building the pgvault binary for end-to-end tests: {command:?}");
    let output = command
        .output()
        .with_context(|| format!("cannot run {} to build pgvault", cargo.to_string_lossy()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
        bail!(
            "`cargo build -p pgvault --features {}` failed ({}); fix the build, then run the tests again:\n{}",
            FEATURES.join(","),
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    executable(&String::from_utf8_lossy(&output.stdout))
        .context("cargo built pgvault but reported no executable")
}

/// Whether `name` is a variable cargo sets for the test process about the
/// crate under test. The nested build must not see them: build scripts
/// that track them (ring's reads `CARGO_MANIFEST_DIR` and `CARGO_PKG_*`
/// with `rerun-if-env-changed`) would find them changed between
/// `cargo test` and this build, and each would rebuild half the workspace
/// for the other on every run.
fn is_test_crate_variable(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || matches!(
            name,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_TARGET_TMPDIR"
                | "CARGO_RUSTC_CURRENT_DIR"
                | "OUT_DIR"
        )
}

/// The `pgvault` executable named in cargo's JSON messages.
fn executable(messages: &str) -> Option<PathBuf> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "pgvault")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nested_build_drops_what_cargo_says_about_the_test_crate_only() {
        for name in [
            "CARGO_MANIFEST_DIR",
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
            "CARGO_CRATE_NAME",
            "CARGO_TARGET_TMPDIR",
        ] {
            assert!(is_test_crate_variable(name), "{name}");
        }
        for name in [
            "CARGO",
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_JOBS",
            "PATH",
        ] {
            assert!(!is_test_crate_variable(name), "{name}");
        }
    }

    #[test]
    fn the_executable_comes_from_cargos_artifact_message() {
        let messages = concat!(
            r#"{"reason":"compiler-artifact","target":{"name":"pgvault_proto"},"executable":null}"#,
            "\n",
            "not json\n",
            r#"{"reason":"compiler-artifact","target":{"name":"pgvault"},"executable":"/t/debug/pgvault"}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
        );
        assert_eq!(
            executable(messages),
            Some(PathBuf::from("/t/debug/pgvault"))
        );
        assert_eq!(executable(r#"{"reason":"build-finished"}"#), None);
    }
}
