//! Harness for end-to-end tests: starts real servers on free loopback ports
//! and stops them when dropped.
//!
//! - [`agent`]: `pgvault agent run` inside a private network, and the
//!   agent's creation through the CLI; [`agent_scenario`]: the set-up and
//!   steps of the agent failure tests.
//! - [`azurite`]: the Azure Blob emulator (npm `azurite`).
//! - [`browser`]: headless Chromium over WebDriver (Debian `chromium`,
//!   `chromium-driver`), for the web console tests.
//! - [`moto`]: an S3 server (PyPI `moto[server]`).
//! - [`rabbitmq`]: a private RabbitMQ node (Debian `rabbitmq-server`).
//! - [`pgvault`]: `pgvault` processes (coordinator, workers, `up`, the CLI);
//!   [`binary`]: the `pgvault` binary they run, built by the harness.
//! - [`compare`]: proves two databases identical (schema text, row checksums).
//! - [`scenario`]: the shared set-up and checks of the failure tests.
//! - [`fixtures`]: source databases worth backing up.
//! - [`netns`]: private networks (a network namespace and a veth pair) with
//!   a PostgreSQL and processes inside that the host cannot reach.
//! - [`pg_access`]: what fixtures and comparisons need of a PostgreSQL, on
//!   the host's loopback or inside a private network.
//! - [`process`]: managed child processes (log file, process group);
//!   [`ports`]: which process listens on a port, and starting servers on
//!   free ports that another may take first.
//! - [`webhook`]: a webhook receiver on loopback recording what it gets.
//!
//! PostgreSQL clusters come from `pgvault_localpg::TempCluster`. A missing
//! server binary fails the test with a message saying how to install it
//! (`scripts/test.sh` installs everything); nothing is skipped silently.

pub mod agent;
pub mod agent_scenario;
pub mod azurite;
pub mod binary;
pub mod browser;
pub mod compare;
pub mod fixtures;
pub mod moto;
pub mod netns;
pub mod pg_access;
pub mod pgvault;
pub mod ports;
pub mod process;
pub mod rabbitmq;
pub mod scenario;
pub mod webhook;

use std::path::PathBuf;

/// The workspace root (where `scripts/test.sh` installs tools into `.tools/`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}
