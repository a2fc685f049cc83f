//! TCP connections opened inside a network namespace by the test process
//! itself: a short-lived thread enters the namespace (`setns`), connects,
//! and ends. A socket belongs to the network it was created in, so the
//! stream keeps talking inside after the thread has gone, while the rest of
//! the test process stays on the host's network.

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

/// Connects to `address` as a process inside the namespace at `netns` would.
pub fn connect_inside(
    netns: &Path,
    address: SocketAddr,
    timeout: Duration,
) -> anyhow::Result<TcpStream> {
    let handle = File::open(netns).with_context(|| format!("open {}", netns.display()))?;
    // A thread of its own, never a pooled one: it must not outlive the call
    // inside the namespace.
    std::thread::scope(|scope| {
        scope
            .spawn(|| -> anyhow::Result<TcpStream> {
                // SAFETY: setns on an open namespace file; it moves this
                // thread only, which ends right after the connect.
                if unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(std::io::Error::last_os_error())
                        .with_context(|| format!("cannot enter {}", netns.display()));
                }
                TcpStream::connect_timeout(&address, timeout)
                    .with_context(|| format!("connect to {address} inside {}", netns.display()))
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the thread connecting inside panicked"))?
    })
}
