//! The Azure Blob emulator, started from `.tools/node_modules/.bin/azurite-blob`
//! (installed by `scripts/test.sh`), `PGVAULT_AZURITE_BIN`, or the PATH.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::bail;

use crate::ports::start_on_free_ports;
use crate::process::{ChildProcess, wait_for_port};
use crate::workspace_root;

pub struct Azurite {
    process: ChildProcess,
    port: u16,
    dir: tempfile::TempDir,
}

impl Azurite {
    pub fn start() -> anyhow::Result<Azurite> {
        let dir = tempfile::Builder::new()
            .prefix("pgvault-azurite-")
            .tempdir()?;
        let (process, port) =
            start_on_free_ports(1, |ports| Ok((launch(ports[0], dir.path())?, ports[0])))?;
        Ok(Azurite { process, port, dir })
    }

    /// Starts the emulator again after [`Self::stop`], on the same port and data.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        self.process = launch(self.port, self.dir.path())?;
        Ok(())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Datastore URL of `container` (created by pgvault itself).
    pub fn datastore_url(&self, container: &str) -> String {
        format!(
            "az://{container}?emulator=true&endpoint=http://127.0.0.1:{}/devstoreaccount1",
            self.port
        )
    }

    /// Stops the emulator (data is kept in its directory).
    pub fn stop(&mut self) {
        self.process.stop(Duration::from_secs(5));
    }
}

fn launch(port: u16, dir: &std::path::Path) -> anyhow::Result<ChildProcess> {
    let bin = find_binary()?;
    let mut command = Command::new(bin);
    command
        .args([
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            &port.to_string(),
            "--location",
        ])
        .arg(dir)
        .args(["--skipApiVersionCheck", "--disableTelemetry", "--silent"]);
    let mut process = ChildProcess::spawn("azurite", command, &dir.join("azurite.log"))?;
    wait_for_port(port, Duration::from_secs(30), &mut process)?;
    Ok(process)
}

fn find_binary() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("PGVAULT_AZURITE_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let local = workspace_root().join(".tools/node_modules/.bin/azurite-blob");
    if local.is_file() {
        return Ok(local);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("azurite-blob").is_file() {
                return Ok(dir.join("azurite-blob"));
            }
        }
    }
    bail!(
        "Azurite (azurite-blob) is not installed: run scripts/test.sh, or `npm install --prefix .tools azurite`"
    )
}
