//! Finds the PostgreSQL server binaries: `PGVAULT_PG_BIN_DIR`, then
//! `pg_config --bindir`, then the newest `/usr/lib/postgresql/<major>/bin`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::LocalPgError;

/// Directory holding `initdb`, `pg_ctl`, `pg_dump` and `pg_restore`.
pub fn bin_dir() -> Result<PathBuf, LocalPgError> {
    if let Some(dir) = std::env::var_os("PGVAULT_PG_BIN_DIR") {
        let dir = PathBuf::from(dir);
        if has_server_binaries(&dir) {
            return Ok(dir);
        }
        return Err(LocalPgError::BinariesNotFound);
    }
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output()
        && output.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if has_server_binaries(&dir) {
            return Ok(dir);
        }
    }
    newest_debian_bin_dir().ok_or(LocalPgError::BinariesNotFound)
}

fn has_server_binaries(dir: &Path) -> bool {
    ["initdb", "pg_ctl", "pg_dump", "pg_restore"]
        .iter()
        .all(|b| dir.join(b).is_file())
}

fn newest_debian_bin_dir() -> Option<PathBuf> {
    let mut majors: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            let dir = e.path().join("bin");
            has_server_binaries(&dir).then_some((major, dir))
        })
        .collect();
    majors.sort();
    majors.pop().map(|(_, dir)| dir)
}
