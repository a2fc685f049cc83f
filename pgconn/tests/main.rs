//! The integration tests of the pgconn crate, one module per file, built as one
//! test binary: one link and one binary instead of one per file keeps the
//! build's time and disk small (see `autotests = false` in Cargo.toml).

mod connect;
mod properties;
