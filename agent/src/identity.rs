//! Who this agent process is, as its `hello` says: the agent's name, a
//! random instance id per start (tells the instances of a group apart),
//! its version and protocol version, the host it runs on, the major
//! version of the `pg_dump` it would use (found as the engine finds it:
//! `--pg-bin-dir`, else the newest `/usr/lib/postgresql/*/bin`,
//! `pg_config --bindir`, `PATH`) and how many tasks it runs at once.

use std::path::Path;
use std::process::Command;

use pgvault_localpg::{CLIENT_PROGRAMS, find_bin_dir};
use pgvault_proto::AGENT_PROTOCOL_VERSION;
use pgvault_proto::v1::AgentHello;

use crate::options::AgentOptions;

/// This process, for the coordinator.
#[derive(Debug, Clone)]
pub struct Identity {
    pub hello: AgentHello,
}

impl Identity {
    /// Looks at this machine once, at start.
    pub fn discover(options: &AgentOptions) -> Identity {
        let majors = match pg_dump_major(options.engine.pg_bin_dir.as_deref()) {
            Ok(major) => vec![major],
            Err(reason) => {
                tracing::warn!(%reason, "no usable pg_dump: backups and restores on this agent will fail with PgToolNotFound; install the PostgreSQL client tools or pass --pg-bin-dir");
                Vec::new()
            }
        };
        Identity::new(options, hostname(), majors)
    }

    pub fn new(options: &AgentOptions, hostname: String, pg_tool_majors: Vec<u32>) -> Identity {
        Identity {
            hello: AgentHello {
                agent_id: options.name.clone(),
                instance_id: uuid::Uuid::new_v4().to_string(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                protocol_version: AGENT_PROTOCOL_VERSION,
                hostname,
                pg_tool_majors,
                concurrency: u32::try_from(options.concurrency).unwrap_or(u32::MAX),
            },
        }
    }

    pub fn instance_id(&self) -> &str {
        &self.hello.instance_id
    }

    /// How the runner names this process in job attempts:
    /// `host:pid`, like a worker (the attempt records the agent besides).
    pub fn worker_id(&self) -> String {
        format!("{}:{}", self.hello.hostname, std::process::id())
    }
}

/// The machine's host name; "unknown" when it cannot be read.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// The major version of the `pg_dump` the engine would run.
fn pg_dump_major(configured: Option<&Path>) -> Result<u32, String> {
    let dir = find_bin_dir(configured, CLIENT_PROGRAMS).map_err(|e| e.to_string())?;
    let program = dir.join("pg_dump");
    let output = Command::new(&program)
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    parse_major(&text)
        .ok_or_else(|| format!("{} --version printed {:?}", program.display(), text.trim()))
}

/// `pg_dump (PostgreSQL) 15.8 (Debian 15.8-1)` → 15; `9.6.24` → 9.
fn parse_major(version_output: &str) -> Option<u32> {
    let version = version_output
        .split_whitespace()
        .find(|word| word.starts_with(|c: char| c.is_ascii_digit()))?;
    version
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::AgentSettings;

    #[test]
    fn the_major_version_is_read_from_pg_dump_output() {
        assert_eq!(
            parse_major("pg_dump (PostgreSQL) 15.8 (Debian 15.8-1.pgdg120+1)\n"),
            Some(15)
        );
        assert_eq!(parse_major("pg_dump (PostgreSQL) 17beta1"), Some(17));
        assert_eq!(parse_major("pg_dump (PostgreSQL) 9.6.24"), Some(9));
        assert_eq!(parse_major("no version here"), None);
    }

    #[test]
    fn the_hello_announces_name_instance_version_protocol_host_tools_and_concurrency() {
        let options = AgentOptions::from_settings(&AgentSettings {
            name: "dc1".into(),
            token: "t".into(),
            concurrency: 3,
            ..AgentSettings::default()
        })
        .unwrap();
        let first = Identity::new(&options, "db-host".into(), vec![15]);
        let hello = &first.hello;
        assert_eq!(hello.agent_id, "dc1");
        assert!(uuid::Uuid::parse_str(&hello.instance_id).is_ok());
        assert_eq!(hello.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(hello.protocol_version, AGENT_PROTOCOL_VERSION);
        assert_eq!(hello.hostname, "db-host");
        assert_eq!(hello.pg_tool_majors, vec![15]);
        assert_eq!(hello.concurrency, 3);
        let second = Identity::new(&options, "db-host".into(), vec![15]);
        assert_ne!(
            first.instance_id(),
            second.instance_id(),
            "one id per start"
        );
    }

    #[test]
    fn this_machines_pg_dump_is_found() {
        // The tests need PostgreSQL, so this machine has a pg_dump.
        let major = pg_dump_major(None).expect("a pg_dump on this machine");
        assert!(major >= 9, "{major}");
        let missing = pg_dump_major(Some(Path::new("/nonexistent"))).unwrap_err();
        assert_eq!(missing, "pg_dump/pg_restore not found in /nonexistent");
    }
}
