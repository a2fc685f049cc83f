//! Which servers a recovery point restores into: one of the same or any
//! newer PostgreSQL major (12 → 18 is the upgrade path), never an older
//! one — a newer server's dump uses what older servers lack. The engine
//! checks it before touching a target; the coordinator checks it before a
//! restore job is queued, with the same words.

/// The major of a `server_version` string: `15.8`, `17.10 (Debian …)`,
/// `18beta1` → 15, 17, 18; `9.6.24` → 9.
pub fn major_of(server_version: &str) -> Option<u32> {
    server_version
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// The major of a `server_version_num` (e.g. 170004 → 17, 90624 → 9).
pub(crate) fn major_of_version_num(version_num: i32) -> u32 {
    u32::try_from(version_num / 10_000).unwrap_or(0)
}

/// The lowest client-tools major that restores a point taken on a
/// `source_major` server whose schema archive `pg_dump` of
/// `dump_tools_major` wrote, into a server of `target_major` (`None`: as
/// a SQL script). `pg_restore` reads only archives of its own major or
/// older, and restores into servers of its major or older; tools of the
/// source's major at least keep the restore's SQL within what the dump
/// meant.
pub fn restore_tools_major(
    source_major: u32,
    dump_tools_major: u32,
    target_major: Option<u32>,
) -> u32 {
    source_major
        .max(dump_tools_major)
        .max(target_major.unwrap_or(0))
}

/// A restore into an older major than the backup's source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the recovery point is from PostgreSQL {source_major} ({source_version}) and the target server runs \
     PostgreSQL {target_major}: a recovery point restores only into the same or a newer major; \
     restore into a server running PostgreSQL {source_major} or newer"
)]
pub struct OlderTarget {
    pub source_major: u32,
    pub source_version: String,
    pub target_major: u32,
}

/// `Ok` when a point taken on `source_version` restores into a server of
/// `target_major`. An unreadable source version is not refused here.
pub fn check_restorable(source_version: &str, target_major: u32) -> Result<(), OlderTarget> {
    match major_of(source_version) {
        Some(source_major) if source_major > target_major => Err(OlderTarget {
            source_major,
            source_version: source_version.trim().to_string(),
            target_major,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majors_are_read_from_server_version_strings() {
        assert_eq!(major_of("15.8"), Some(15));
        assert_eq!(major_of("17.10 (Debian 17.10-1)"), Some(17));
        assert_eq!(major_of("18beta1"), Some(18));
        assert_eq!(major_of("9.6.24"), Some(9));
        assert_eq!(major_of(""), None);
    }

    #[test]
    fn restore_tools_are_at_least_the_source_the_dump_tools_and_the_target() {
        assert_eq!(major_of_version_num(170_004), 17);
        assert_eq!(major_of_version_num(90_624), 9);
        // A 15 server dumped by 17's pg_dump: 15's pg_restore cannot read it.
        assert_eq!(restore_tools_major(15, 17, Some(15)), 17);
        assert_eq!(restore_tools_major(15, 17, None), 17);
        // The upgrade path: the target decides.
        assert_eq!(restore_tools_major(13, 15, Some(17)), 17);
        assert_eq!(restore_tools_major(15, 15, Some(15)), 15);
        assert_eq!(restore_tools_major(15, 15, None), 15);
    }

    #[test]
    fn same_and_newer_majors_restore_older_ones_are_refused_naming_both() {
        assert!(check_restorable("13.23", 17).is_ok());
        assert!(check_restorable("15.8", 15).is_ok());
        let refused = check_restorable("17.10", 15).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "the recovery point is from PostgreSQL 17 (17.10) and the target server runs PostgreSQL 15: \
             a recovery point restores only into the same or a newer major; restore into a server \
             running PostgreSQL 17 or newer"
        );
    }
}
