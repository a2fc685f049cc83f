//! Finds PostgreSQL programs on this machine: the one search behind every
//! program pgvault runs (`initdb`/`pg_ctl` for private clusters,
//! `pg_dump`/`pg_restore` for backups and restores). A configured
//! directory is the only place looked at when given; otherwise the newest
//! `/usr/lib/postgresql/<major>/bin`, then `pg_config --bindir`, then `PATH`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::LocalPgError;

/// What a private cluster needs.
pub const SERVER_PROGRAMS: &[&str] = &["initdb", "pg_ctl", "pg_dump", "pg_restore"];
/// What backups and restores need.
pub const CLIENT_PROGRAMS: &[&str] = &["pg_dump", "pg_restore"];

/// No directory holds every program asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} not found in {}", .programs.join("/"), .searched)]
pub struct ProgramsNotFound {
    /// The programs asked for.
    pub programs: Vec<String>,
    /// Where they were looked for, in words.
    pub searched: String,
}

/// A directory holding every one of `programs`; `configured`, when given,
/// is the only place looked at.
pub fn find_bin_dir(
    configured: Option<&Path>,
    programs: &[&str],
) -> Result<PathBuf, ProgramsNotFound> {
    let has_all = |dir: &Path| programs.iter().all(|p| dir.join(p).is_file());
    let not_found = |searched: String| ProgramsNotFound {
        programs: programs.iter().map(|p| p.to_string()).collect(),
        searched,
    };
    if let Some(dir) = configured {
        return if has_all(dir) {
            Ok(dir.to_path_buf())
        } else {
            Err(not_found(dir.display().to_string()))
        };
    }
    debian_bin_dirs()
        .into_iter()
        .chain(pg_config_bin_dir())
        .chain(path_dirs())
        .find(|dir| has_all(dir))
        .ok_or_else(|| not_found("/usr/lib/postgresql/*/bin, pg_config --bindir or PATH".into()))
}

/// The server binaries for private clusters: `PGVAULT_PG_BIN_DIR` when set,
/// else the search of [`find_bin_dir`].
pub fn bin_dir() -> Result<PathBuf, LocalPgError> {
    let configured = std::env::var_os("PGVAULT_PG_BIN_DIR").map(PathBuf::from);
    find_bin_dir(configured.as_deref(), SERVER_PROGRAMS).map_err(|_| LocalPgError::BinariesNotFound)
}

/// `/usr/lib/postgresql/<major>/bin`, newest major first.
pub(crate) fn debian_bin_dirs() -> Vec<PathBuf> {
    let mut majors: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((major, e.path().join("bin")))
        })
        .collect();
    majors.sort_by_key(|(major, _)| std::cmp::Reverse(*major));
    majors.into_iter().map(|(_, dir)| dir).collect()
}

pub(crate) fn pg_config_bin_dir() -> Option<PathBuf> {
    let output = Command::new("pg_config").arg("--bindir").output().ok()?;
    output
        .status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
}

pub(crate) fn path_dirs() -> Vec<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_directory_is_the_only_place_looked_at() {
        let dir = tempfile::tempdir().unwrap();
        for program in CLIENT_PROGRAMS {
            std::fs::write(dir.path().join(program), "").unwrap();
        }
        assert_eq!(
            find_bin_dir(Some(dir.path()), CLIENT_PROGRAMS).unwrap(),
            dir.path()
        );
        let error = find_bin_dir(Some(dir.path()), SERVER_PROGRAMS).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "initdb/pg_ctl/pg_dump/pg_restore not found in {}",
                dir.path().display()
            )
        );
    }

    #[test]
    fn without_configuration_the_machine_is_searched() {
        let error = find_bin_dir(None, &["no-such-postgres-program"]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "no-such-postgres-program not found in /usr/lib/postgresql/*/bin, pg_config --bindir or PATH"
        );
        // This machine has PostgreSQL (the tests need it): the search finds it.
        let found = find_bin_dir(None, SERVER_PROGRAMS).expect("PostgreSQL server binaries");
        assert!(found.join("initdb").is_file());
    }
}
