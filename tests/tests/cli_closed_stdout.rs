//! A client command whose reader has gone away (`pgvault errors | head -1`)
//! ends quietly, as Unix tools do, rather than panicking in `println!`.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use pgvault_e2e::pgvault::pgvault_bin;

#[test]
fn a_client_command_writing_into_a_closed_pipe_ends_by_sigpipe_without_a_panic() {
    let (reader, writer) = std::io::pipe().expect("pipe");
    // The reader is gone before the command writes a byte.
    drop(reader);
    let output = Command::new(pgvault_bin().expect("pgvault binary"))
        .arg("errors")
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run pgvault errors");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("panicked"),
        "pgvault errors panicked on a closed stdout:\n{stderr}"
    );
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGPIPE),
        "ended by SIGPIPE like other Unix tools: {:?}\n{stderr}",
        output.status
    );
}
