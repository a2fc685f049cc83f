//! An S3 server for the `s3://` datastore: moto (`moto[server]` from PyPI),
//! started from `.tools/venv/bin/moto_server` (installed by
//! `scripts/test.sh`), `PGVAULT_MOTO_SERVER`, or the PATH, on a free
//! loopback port. It keeps everything in memory and accepts any credentials.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;

use crate::ports::start_on_free_ports;
use crate::process::{ChildProcess, wait_for_port};
use crate::workspace_root;

/// Credentials and region for pgvault processes talking to moto (any
/// credentials work; these only need to be present).
pub const AWS_ENV: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "pgvault-e2e"),
    ("AWS_SECRET_ACCESS_KEY", "pgvault-e2e-secret"),
    ("AWS_REGION", "us-east-1"),
];

pub struct Moto {
    process: ChildProcess,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Moto {
    pub fn start() -> anyhow::Result<Moto> {
        let dir = tempfile::Builder::new().prefix("pgvault-moto-").tempdir()?;
        let (process, port) = start_on_free_ports(1, |ports| {
            let port = ports[0];
            let mut command = Command::new(find_binary()?);
            command
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env_remove("AWS_ENDPOINT_URL");
            let mut process =
                ChildProcess::spawn("moto_server", command, &dir.path().join("moto.log"))?;
            wait_for_port(port, Duration::from_secs(60), &mut process)?;
            Ok((process, port))
        })?;
        Ok(Moto {
            process,
            port,
            _dir: dir,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Datastore URL of `bucket/prefix` (pgvault creates the bucket).
    pub fn datastore_url(&self, bucket_and_prefix: &str) -> String {
        format!(
            "s3://{bucket_and_prefix}?endpoint={}&region=us-east-1&allow_http=true",
            self.endpoint()
        )
    }

    /// A store on `bucket` for the test itself to look at what pgvault wrote.
    pub fn store(&self, bucket: &str) -> anyhow::Result<Arc<dyn ObjectStore>> {
        let [(_, key), (_, secret), (_, region)] = AWS_ENV;
        let store = AmazonS3Builder::new()
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .with_bucket_name(bucket)
            .with_region(region)
            .with_access_key_id(key)
            .with_secret_access_key(secret)
            .build()?;
        Ok(Arc::new(store))
    }

    /// The server's output, for assertion messages.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }
}

fn find_binary() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("PGVAULT_MOTO_SERVER") {
        return Ok(PathBuf::from(bin));
    }
    let local = workspace_root().join(".tools/venv/bin/moto_server");
    if local.is_file() {
        return Ok(local);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("moto_server").is_file() {
                return Ok(dir.join("moto_server"));
            }
        }
    }
    bail!(
        "moto (moto_server) is not installed: run scripts/test.sh, or `python3 -m venv .tools/venv && .tools/venv/bin/pip install 'moto[server]'`"
    )
}
