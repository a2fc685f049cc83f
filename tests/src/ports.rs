//! Which process listens on a port, and starting a server on free ports
//! that someone else may take first.
//!
//! A free port is only free when it is picked: between picking it and the
//! server binding it, another test's server (a coordinator binding port 0,
//! say) can take it. A harness that then waited only for "something
//! accepts connections" would hand the test a stranger — an HTTP/2 server
//! where Azurite should be — and the test would fail far from the cause.
//! So readiness means *our* process group holds the listening socket
//! (read from `/proc`), and a server that exits while a stranger holds its
//! port is started again on new ports.

use std::collections::HashSet;
use std::net::SocketAddr;

/// How many times [`start_on_free_ports`] picks new ports.
const ATTEMPTS: usize = 4;

/// Inodes of the listening TCP sockets on `port` (IPv4 and IPv6), from
/// `/proc/net/tcp{,6}` of this network namespace.
pub fn listening_inodes(port: u16) -> HashSet<u64> {
    let mut inodes = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            inodes.extend(parse_listeners(&text, port));
        }
    }
    inodes
}

/// The listening sockets on `port` of one `/proc/net/tcp` table.
fn parse_listeners(table: &str, port: u16) -> Vec<u64> {
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(1)?;
            let local_port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            (local_port == port && *fields.get(3)? == LISTEN)
                .then(|| fields.get(9)?.parse().ok())
                .flatten()
        })
        .collect()
}

/// Whether a process of the group `pgid` (the group a
/// [`crate::process::ChildProcess`] leads) holds a socket listening on
/// `address`'s port.
pub fn group_listens_on(pgid: u32, address: SocketAddr) -> bool {
    let inodes = listening_inodes(address.port());
    if inodes.is_empty() {
        return false;
    }
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return false;
    };
    processes
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| process_group(*pid) == Some(pgid))
        .any(|pid| holds_any(pid, &inodes))
}

/// The process group of `pid` (field 5 of `/proc/<pid>/stat`).
fn process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_process_group(&stat)
}

/// Field 5 of a `/proc/<pid>/stat` line; the command name (field 2) is in
/// parentheses and may itself hold spaces and parentheses.
fn parse_process_group(stat: &str) -> Option<u32> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(2)?.parse().ok()
}

fn holds_any(pid: u32, inodes: &HashSet<u64>) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .ok()
            .and_then(|target| socket_inode(&target.to_string_lossy()))
            .is_some_and(|inode| inodes.contains(&inode))
    })
}

/// `socket:[12345]` → 12345.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Runs `start` with `count` distinct free loopback ports. When it fails
/// and one of its ports is now held by someone else (the server lost the
/// race for it and exited), picks new ports and tries again, up to
/// [`ATTEMPTS`] times; any other failure is returned as it is.
pub fn start_on_free_ports<T>(
    count: usize,
    mut start: impl FnMut(&[u16]) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let mut attempt = 1;
    loop {
        let ports = distinct_free_ports(count)?;
        match start(&ports) {
            Ok(started) => return Ok(started),
            Err(e) => {
                let taken: Vec<u16> = ports
                    .iter()
                    .copied()
                    .filter(|p| !listening_inodes(*p).is_empty())
                    .collect();
                if taken.is_empty() || attempt == ATTEMPTS {
                    return Err(e);
                }
                eprintln!(
                    "harness: another process took port(s) {taken:?} before the server bound them; \
                     starting it on new ports (attempt {} of {ATTEMPTS}); it said: {e:#}",
                    attempt + 1
                );
                attempt += 1;
            }
        }
    }
}

fn distinct_free_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    let mut ports = Vec::with_capacity(count);
    while ports.len() < count {
        let port = pgvault_localpg::free_port()?;
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:B4C5 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 81234 1 0000000000000000 100 0 0 10 0
   1: 0100007F:B4C5 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 81299 1 0000000000000000 20 4 30 10 -1
   2: 00000000:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   104        0 70001 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn only_listening_sockets_on_the_port_are_read_from_the_table() {
        assert_eq!(parse_listeners(TABLE, 0xB4C5), vec![81234]);
        assert_eq!(parse_listeners(TABLE, 5432), vec![70001]);
        assert!(parse_listeners(TABLE, 80).is_empty());
    }

    #[test]
    fn the_process_group_is_read_past_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (node (azurite) x) S 4200 4242 4200 0 -1 4194560 2000";
        assert_eq!(parse_process_group(stat), Some(4242));
        assert_eq!(socket_inode("socket:[81234]"), Some(81234));
        assert_eq!(socket_inode("/dev/null"), None);
    }

    #[test]
    fn a_listener_of_this_process_is_found_and_belongs_to_its_group_only() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        // SAFETY: getpgrp has no preconditions.
        let own_group = unsafe { libc::getpgrp() } as u32;
        assert!(!listening_inodes(address.port()).is_empty());
        assert!(group_listens_on(own_group, address));
        assert!(!group_listens_on(own_group + 1_000_000, address));
        drop(listener);
        assert!(!group_listens_on(own_group, address));
    }

    #[test]
    fn a_server_that_lost_its_port_to_another_is_started_again_on_new_ports() {
        let mut stranger = None;
        let mut tried = Vec::new();
        let started = start_on_free_ports(1, |ports| {
            tried.push(ports[0]);
            if stranger.is_none() {
                // Someone else binds the port first; the server gives up.
                stranger = Some(std::net::TcpListener::bind(("127.0.0.1", ports[0]))?);
                anyhow::bail!("address in use");
            }
            Ok(ports[0])
        })
        .unwrap();
        assert_eq!(tried.len(), 2);
        assert_ne!(started, tried[0]);
    }

    #[test]
    fn a_failure_that_is_not_about_the_port_is_not_retried() {
        let mut calls = 0;
        let error = start_on_free_ports(2, |ports| -> anyhow::Result<()> {
            calls += 1;
            assert_ne!(ports[0], ports[1]);
            anyhow::bail!("binary not found")
        })
        .unwrap_err();
        assert_eq!(calls, 1);
        assert_eq!(error.to_string(), "binary not found");
    }
}
