//! Private PostgreSQL clusters run with the machine's own `initdb` and `pg_ctl`.
//!
//! `pgvault up` keeps its state in one of these, and the test harness starts
//! its source and target servers the same way. PostgreSQL refuses to run as
//! root, so when this process is root the server binaries run as the
//! unprivileged `postgres` OS user (or `PGVAULT_PG_OS_USER`) via `runuser`.
//!
//! # Layout
//! - [`bin_dir`]: finds PostgreSQL programs (for clusters and for pg_dump/pg_restore).
//! - [`cluster`]: creates, starts and stops one cluster.
//! - [`temp_cluster`]: a throwaway cluster in a temporary directory, for tests.
//! - [`port`]: picks free loopback ports.

mod bin_dir;
mod cluster;
mod error;
mod port;
mod temp_cluster;

pub use bin_dir::{CLIENT_PROGRAMS, ProgramsNotFound, SERVER_PROGRAMS, bin_dir, find_bin_dir};
pub use cluster::{ClusterOptions, LocalCluster};
pub use error::LocalPgError;
pub use port::free_port;
pub use temp_cluster::TempCluster;
