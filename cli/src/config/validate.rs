//! The checks of [`Settings`] that one value cannot make alone (ranges,
//! keys that go together), run once after loading, before anything starts;
//! each error names the key and the accepted values.

use anyhow::bail;

use super::Settings;

impl Settings {
    pub(super) fn validate(&self) -> anyhow::Result<()> {
        let c = &self.coordinator;
        if c.lease_ttl_seconds < 3 || c.lease_ttl_seconds > 3600 {
            bail!(
                "coordinator.lease_ttl_seconds must be between 3 and 3600 (got {})",
                c.lease_ttl_seconds
            );
        }
        if c.max_attempts == 0 || c.max_attempts > 100 {
            bail!(
                "coordinator.max_attempts must be between 1 and 100 (got {})",
                c.max_attempts
            );
        }
        if c.scheduler_interval_seconds == 0 || c.scheduler_interval_seconds > 60 {
            bail!(
                "coordinator.scheduler_interval_seconds must be between 1 and 60 (got {})",
                c.scheduler_interval_seconds
            );
        }
        if c.schedule_max_lateness_minutes == 0 {
            bail!("coordinator.schedule_max_lateness_minutes must be at least 1");
        }
        if c.reaper_interval_seconds == 0 {
            bail!("coordinator.reaper_interval_seconds must be at least 1");
        }
        if c.retry_backoff_seconds > 600 {
            bail!(
                "coordinator.retry_backoff_seconds must be between 0 and 600 (got {})",
                c.retry_backoff_seconds
            );
        }
        if c.notification_retry_seconds == 0 || c.notification_retry_seconds > 600 {
            bail!(
                "coordinator.notification_retry_seconds must be between 1 and 600 (got {})",
                c.notification_retry_seconds
            );
        }
        if c.notification_max_attempts == 0 || c.notification_max_attempts > 100 {
            bail!(
                "coordinator.notification_max_attempts must be between 1 and 100 (got {})",
                c.notification_max_attempts
            );
        }
        if c.notification_timeout_seconds == 0 || c.notification_timeout_seconds > 300 {
            bail!(
                "coordinator.notification_timeout_seconds must be between 1 and 300 (got {})",
                c.notification_timeout_seconds
            );
        }
        if c.database_max_connections < 2 {
            bail!(
                "coordinator.database_max_connections must be at least 2 (got {})",
                c.database_max_connections
            );
        }
        if c.tls_cert.as_os_str().is_empty() != c.tls_key.as_os_str().is_empty() {
            bail!("coordinator.tls_cert and coordinator.tls_key must be set together (PEM files)");
        }
        c.console_listen()?;
        if c.console_idle_timeout_seconds == 0 || c.console_idle_timeout_seconds > 86_400 {
            bail!(
                "coordinator.console_idle_timeout_seconds must be between 1 and 86400 (got {})",
                c.console_idle_timeout_seconds
            );
        }
        if !c.secret_file_dir.as_os_str().is_empty() && !c.secret_file_dir.is_absolute() {
            bail!(
                "coordinator.secret_file_dir must be an absolute directory (got {})",
                c.secret_file_dir.display()
            );
        }
        if c.agent_wait_seconds == 0 {
            bail!(
                "coordinator.agent_wait_seconds must be at least 1 (a job waits this long for its agent)"
            );
        }
        let most = pgvault_coordinator::config::MAX_AGENT_STATUS_INTERVAL.as_secs();
        if !(1..=most).contains(&c.agent_status_interval_seconds) {
            bail!(
                "coordinator.agent_status_interval_seconds must be between 1 and {most} (got {}; agents report this often, and one silent for three intervals counts as gone)",
                c.agent_status_interval_seconds
            );
        }
        let w = &self.worker;
        if w.concurrency == 0 || w.concurrency > 64 {
            bail!(
                "worker.concurrency must be between 1 and 64 (got {})",
                w.concurrency
            );
        }
        if !(1..=22).contains(&w.zstd_level) {
            bail!(
                "worker.zstd_level must be between 1 and 22 (got {})",
                w.zstd_level
            );
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            bail!(
                "log.format must be \"text\" or \"json\" (got {:?})",
                self.log.format
            );
        }
        if self.queue.queue_name.is_empty() {
            bail!("queue.queue_name must not be empty");
        }
        self.agent.validate()?;
        self.telemetry.metrics_listen()?;
        self.telemetry.otlp_endpoint()?;
        Ok(())
    }
}
