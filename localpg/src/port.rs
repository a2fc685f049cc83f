//! Free loopback ports for servers started by pgvault and its tests.

use std::net::TcpListener;

use crate::LocalPgError;

/// A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it).
pub fn free_port() -> Result<u16, LocalPgError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(LocalPgError::NoFreePort)?;
    let port = listener
        .local_addr()
        .map_err(LocalPgError::NoFreePort)?
        .port();
    Ok(port)
}
