//! Every set of PostgreSQL client tools on this machine, and which one
//! serves a given server. `pg_dump` dumps servers of its own major and
//! older only, so a machine with several majors installed uses, for each
//! server, the *lowest* major that is at least the server's (the closest
//! match, as `pg_dump`'s documentation recommends). Sets are looked for in
//! the configured directories first, then every `/usr/lib/postgresql/*/bin`,
//! then `pg_config --bindir` and `PATH`; a directory counts once.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bin_dir::{debian_bin_dirs, path_dirs, pg_config_bin_dir};

/// One directory holding the client tools, and their major version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolSet {
    pub major: u32,
    pub dir: PathBuf,
}

/// No set of tools can serve a server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoToolsFor {
    #[error("no PostgreSQL client tools ({}) found in {searched}", .programs.join("/"))]
    NoneFound {
        programs: Vec<String>,
        searched: String,
    },
    #[error(
        "server is PostgreSQL {server_major}; the newest pg_dump found is {newest} ({dir}); \
         install postgresql-client-{server_major} or list its bin directory in {setting}",
        dir = .newest_dir.display()
    )]
    TooOld {
        server_major: u32,
        newest: u32,
        newest_dir: PathBuf,
        /// The setting that lists tool directories, e.g. `worker.pg_bin_dirs`.
        setting: String,
    },
}

/// Every directory (configured ones first) holding all of `programs`, with
/// the major version `pg_dump --version` reports; directories whose
/// `pg_dump` does not answer are left out.
pub fn find_tool_sets(configured: &[PathBuf], programs: &[&str]) -> Vec<ToolSet> {
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut sets = Vec::new();
    let candidates = configured
        .iter()
        .cloned()
        .chain(debian_bin_dirs())
        .chain(pg_config_bin_dir())
        .chain(path_dirs());
    for dir in candidates {
        let key = dir.canonicalize().unwrap_or_else(|_| dir.clone());
        if seen.contains(&key) || !programs.iter().all(|p| dir.join(p).is_file()) {
            continue;
        }
        seen.push(key);
        if let Some(major) = tool_major(&dir) {
            sets.push(ToolSet { major, dir });
        }
    }
    sets
}

/// The set to use for a server of `server_major`: the lowest major at
/// least the server's (the first configured one among equals).
pub fn choose_tool_set<'a>(
    sets: &'a [ToolSet],
    server_major: u32,
    programs: &[&str],
    setting: &str,
) -> Result<&'a ToolSet, NoToolsFor> {
    if let Some(best) = sets
        .iter()
        .filter(|s| s.major >= server_major)
        .min_by_key(|s| s.major)
    {
        return Ok(best);
    }
    match sets.iter().max_by_key(|s| s.major) {
        Some(newest) => Err(NoToolsFor::TooOld {
            server_major,
            newest: newest.major,
            newest_dir: newest.dir.clone(),
            setting: setting.to_string(),
        }),
        None => Err(NoToolsFor::NoneFound {
            programs: programs.iter().map(|p| p.to_string()).collect(),
            searched: format!("{setting}, /usr/lib/postgresql/*/bin, pg_config --bindir or PATH"),
        }),
    }
}

/// The distinct majors of `sets`, ascending (what a worker reports).
pub fn majors(sets: &[ToolSet]) -> Vec<u32> {
    let mut majors: Vec<u32> = sets.iter().map(|s| s.major).collect();
    majors.sort_unstable();
    majors.dedup();
    majors
}

/// The major version of `dir/pg_dump`.
fn tool_major(dir: &Path) -> Option<u32> {
    let output = Command::new(dir.join("pg_dump"))
        .arg("--version")
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| parse_major(&String::from_utf8_lossy(&output.stdout)))?
}

/// `pg_dump (PostgreSQL) 15.8 (Debian 15.8-1)` → 15; `17beta1` → 17.
pub fn parse_major(version_output: &str) -> Option<u32> {
    let version = version_output
        .split_whitespace()
        .find(|word| word.starts_with(|c: char| c.is_ascii_digit()))?;
    version
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// The major of a `server_version_num` (e.g. 170004 → 17, 90624 → 9).
pub fn major_of_version_num(version_num: i64) -> u32 {
    u32::try_from(version_num / 10_000).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(major: u32) -> ToolSet {
        ToolSet {
            major,
            dir: PathBuf::from(format!("/pg/{major}/bin")),
        }
    }

    const SETTING: &str = "worker.pg_bin_dirs";

    #[test]
    fn the_lowest_major_at_least_the_servers_is_chosen() {
        let sets = [set(18), set(15), set(16)];
        let programs = ["pg_dump"];
        assert_eq!(
            choose_tool_set(&sets, 12, &programs, SETTING)
                .unwrap()
                .major,
            15
        );
        assert_eq!(
            choose_tool_set(&sets, 15, &programs, SETTING)
                .unwrap()
                .major,
            15
        );
        assert_eq!(
            choose_tool_set(&sets, 16, &programs, SETTING)
                .unwrap()
                .major,
            16
        );
        assert_eq!(
            choose_tool_set(&sets, 17, &programs, SETTING)
                .unwrap()
                .major,
            18
        );
    }

    #[test]
    fn a_server_newer_than_every_set_names_both_versions_and_the_fix() {
        let error = choose_tool_set(&[set(15)], 17, &["pg_dump"], SETTING).unwrap_err();
        assert_eq!(
            error.to_string(),
            "server is PostgreSQL 17; the newest pg_dump found is 15 (/pg/15/bin); \
             install postgresql-client-17 or list its bin directory in worker.pg_bin_dirs"
        );
        let error = choose_tool_set(&[], 17, &["pg_dump", "pg_restore"], SETTING).unwrap_err();
        assert_eq!(
            error.to_string(),
            "no PostgreSQL client tools (pg_dump/pg_restore) found in worker.pg_bin_dirs, \
             /usr/lib/postgresql/*/bin, pg_config --bindir or PATH"
        );
    }

    #[test]
    fn versions_are_read_from_tool_output_and_version_numbers() {
        assert_eq!(
            parse_major("pg_dump (PostgreSQL) 15.8 (Debian 15.8-1)\n"),
            Some(15)
        );
        assert_eq!(parse_major("pg_dump (PostgreSQL) 17beta1"), Some(17));
        assert_eq!(parse_major("nothing"), None);
        assert_eq!(major_of_version_num(170004), 17);
        assert_eq!(major_of_version_num(120022), 12);
    }

    #[test]
    fn this_machines_tools_are_found_with_their_major() {
        // The tests need PostgreSQL 15 (/usr/lib/postgresql/15/bin).
        let sets = find_tool_sets(&[], crate::CLIENT_PROGRAMS);
        assert!(
            sets.iter().any(|s| s.major >= 15),
            "no PostgreSQL client tools of major 15+ found: {sets:?}"
        );
        let dirs: Vec<_> = sets.iter().map(|s| s.dir.canonicalize().unwrap()).collect();
        let mut unique = dirs.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(dirs.len(), unique.len(), "a directory counts once");
    }
}
