//! The integration tests of end-to-end tests over the real binaries, one module per file, built as one
//! test binary: one link and one binary instead of one per file keeps the
//! build's time and disk small (see `autotests = false` in Cargo.toml).

mod agent_failures;
mod agent_private_network;
mod cli_closed_stdout;
mod cluster_backup_restore;
mod console_browser;
mod copies;
mod datastore_s3;
mod encryption;
mod export_offline;
mod failures_garbage;
mod failures_infrastructure;
mod failures_workers;
mod fanout_backup;
mod fanout_restore;
mod grant_script_cli;
mod instance_short_names;
mod job_details;
mod metrics_up;
mod notifications_webhook;
mod policy_lifecycle;
mod private_network_harness;
mod queue_rabbitmq;
mod restore_drills;
mod restore_files_and_selection;
mod secret_leaks;
mod server_budget;
mod startup_errors;
mod traces_otlp;
mod up_cli;
mod verify_points;
mod whole_server;
