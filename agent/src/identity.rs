//! Who this agent process is, as its `hello` says: the agent's name, a
//! random instance id per start (tells the instances of a group apart),
//! its version and protocol version, the host it runs on, the major
//! versions of every `pg_dump` set it has (found as the engine finds them:
//! `--pg-bin-dir`, then every `/usr/lib/postgresql/*/bin`, `pg_config
//! --bindir`, `PATH`) and how many tasks it runs at once.

use pgvault_localpg::{CLIENT_PROGRAMS, find_tool_sets};
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
        let sets = find_tool_sets(&options.engine.pg_bin_dirs, CLIENT_PROGRAMS);
        if sets.is_empty() {
            tracing::warn!(
                "no usable pg_dump: backups and restores on this agent will fail with PgToolNotFound; install the PostgreSQL client tools or pass --pg-bin-dir"
            );
        }
        let majors = pgvault_localpg::majors(&sets);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::AgentSettings;

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
    fn every_pg_dump_set_of_this_machine_is_announced() {
        // The tests need PostgreSQL, so this machine has a pg_dump; a
        // configured directory that holds none adds nothing.
        let options = AgentOptions::from_settings(&AgentSettings {
            name: "dc1".into(),
            token: "t".into(),
            pg_bin_dirs: vec!["/nonexistent".into()],
            ..AgentSettings::default()
        })
        .unwrap();
        let majors = Identity::discover(&options).hello.pg_tool_majors;
        assert!(majors.iter().any(|m| *m >= 15), "{majors:?}");
        assert!(majors.windows(2).all(|w| w[0] < w[1]), "{majors:?}");
    }
}
