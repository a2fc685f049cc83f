//! Logging for the server commands, from the `[log]` settings: the shared
//! set-up of task-running processes ([`pgvault_worker::logging`]), so a
//! failed task's last lines (of `pgvault worker`, `up` or `agent run`)
//! travel with its failure into the job's details.

use crate::config::LogSettings;

pub fn init(settings: &LogSettings) {
    pgvault_worker::logging::init(Some(&settings.filter), &settings.format);
}
