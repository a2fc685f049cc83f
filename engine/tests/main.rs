//! The integration tests of the engine crate, one module per file, built as one
//! test binary: one link and one binary instead of one per file keeps the
//! build's time and disk small (see `autotests = false` in Cargo.toml).

mod support;

mod consistency;
mod database_properties;
mod drills;
mod encrypted;
mod errors;
mod extension_config;
mod globals;
mod pipeline;
mod restore_fanout;
mod restore_sql;
mod roundtrip;
mod selective;
mod server_grant;
mod tls;
mod versions;
