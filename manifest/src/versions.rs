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
