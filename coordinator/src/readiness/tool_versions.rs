//! Whether anything that would run a server's backups has `pg_dump` new
//! enough for it: `pg_dump` dumps servers of its own major and older only.
//! Workers report the majors of their client tool sets with every claim
//! and this coordinator remembers the newest it has seen ([`WorkerTools`],
//! in memory: since it started); an agent's instances announce theirs in
//! their hello. When nothing has reported yet, readiness cannot confirm
//! and does not fail.

use std::sync::atomic::{AtomicU32, Ordering};

use pgvault_errors::ErrorCode;

use crate::model::JobError;

/// The newest client tools major any worker reported to this coordinator.
#[derive(Debug, Default)]
pub struct WorkerTools {
    /// 0: no worker reported yet.
    newest: AtomicU32,
}

impl WorkerTools {
    /// Remembers a claim's reported majors.
    pub fn record(&self, majors: &[u32]) {
        if let Some(&newest) = majors.iter().max() {
            self.newest.fetch_max(newest, Ordering::Relaxed);
        }
    }

    /// `None` while no worker has reported.
    pub fn newest(&self) -> Option<u32> {
        match self.newest.load(Ordering::Relaxed) {
            0 => None,
            major => Some(major),
        }
    }
}

/// Who would run the server's backups, for the message.
pub enum Runners<'a> {
    Workers,
    Agent(&'a str),
}

/// The row error when the newest reported `pg_dump` is older than a
/// server of `server_version_num`; `None` when it fits or nothing reported.
pub fn check(
    server_version_num: u32,
    newest: Option<u32>,
    runners: Runners<'_>,
) -> Option<JobError> {
    let server = server_version_num / 10_000;
    let newest = newest?;
    if newest >= server {
        return None;
    }
    let message = match runners {
        Runners::Workers => format!(
            "server is PostgreSQL {server}; the newest pg_dump on any worker is {newest}; \
             install postgresql-client-{server} on the workers or set worker.pg_bin_dirs"
        ),
        Runners::Agent(agent) => format!(
            "server is PostgreSQL {server}; the newest pg_dump of agent \"{agent}\" is {newest}; \
             install postgresql-client-{server} on the agent's hosts or pass it --pg-bin-dir"
        ),
    };
    Some(JobError::new(
        ErrorCode::UserErrorServerVersionUnsupported,
        message,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_reported_major_is_remembered() {
        let tools = WorkerTools::default();
        assert_eq!(tools.newest(), None);
        tools.record(&[]);
        assert_eq!(tools.newest(), None);
        tools.record(&[13, 15]);
        tools.record(&[14]);
        assert_eq!(tools.newest(), Some(15));
    }

    #[test]
    fn a_server_newer_than_every_workers_tools_names_both_versions_and_the_fix() {
        let error = check(170_004, Some(15), Runners::Workers).unwrap();
        assert_eq!(error.code, ErrorCode::UserErrorServerVersionUnsupported);
        assert_eq!(
            error.message,
            "server is PostgreSQL 17; the newest pg_dump on any worker is 15; \
             install postgresql-client-17 on the workers or set worker.pg_bin_dirs"
        );
        let error = check(180_001, Some(17), Runners::Agent("dc1")).unwrap();
        assert!(
            error.message.contains("agent \"dc1\" is 17"),
            "{}",
            error.message
        );
    }

    #[test]
    fn fitting_tools_or_no_report_pass() {
        assert!(check(150_008, Some(15), Runners::Workers).is_none());
        assert!(check(120_022, Some(18), Runners::Workers).is_none());
        assert!(check(180_001, None, Runners::Workers).is_none());
    }
}
