//! The integration tests of the coordinator crate, one module per file, built as one
//! test binary: one link and one binary instead of one per file keeps the
//! build's time and disk small (see `autotests = false` in Cargo.toml).

mod common;

mod access_roles;
mod agent_operations;
mod agent_probes;
mod agents;
mod api_resources;
mod chunk_rpcs;
mod copies;
mod data_protection;
mod dead_letters;
mod drill_schedule;
mod encryption_keys;
mod job_controls;
mod job_details;
mod job_specs_migration;
mod jobs_and_leases;
mod lifecycle;
mod metrics;
mod metrics_rules;
mod notification_urls;
mod notifications;
mod protection;
mod readiness;
mod restore_server;
mod scheduled_checks;
mod scheduler;
mod scheduler_batches;
mod secret_access;
mod server_budgets;
mod server_rebind;
mod short_names_migration;
mod stage_split;
mod startup;
mod verify_jobs;
mod versions;
mod whole_server;
