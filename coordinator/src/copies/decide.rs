//! The pure decisions about copies, unit-tested here:
//! - a completed backup is copied when its policy names a copy datastore
//!   (one COPY job per point and datastore);
//! - a copy is kept until its snapshot time plus the copy retention;
//! - an expired copy is deleted, unless its point is one of the instance's
//!   newest `keep_min` points copied there (so failing backups never eat
//!   every copy) or soft-deleted (the purge removes it), and not while a
//!   restore or copy reads the point (postponed), and only once.

use chrono::{DateTime, Utc};

use crate::model::{CopyRule, Policy};
use crate::retention::IsoDuration;
use crate::store::copies::DueCopy;

/// Where the point a backup under `policy` produced is copied, if anywhere.
pub fn copy_due(policy: &Policy) -> Option<&CopyRule> {
    policy.copy.as_ref()
}

/// When a copy of a point taken at `snapshot_time` expires under `rule`;
/// an unreadable period (never stored: validated on create) keeps it for
/// `fallback`.
pub fn copy_expiry(
    rule: Option<&CopyRule>,
    snapshot_time: DateTime<Utc>,
    fallback: DateTime<Utc>,
) -> DateTime<Utc> {
    rule.and_then(|r| IsoDuration::parse(&r.retention).ok())
        .and_then(|d| d.after(snapshot_time))
        .unwrap_or(fallback)
}

/// What an expired copy needs now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyDecision {
    /// Not due, held, soft-deleted or already under way.
    Nothing,
    /// Due, but a restore or copy reads the point: the next pass looks again.
    Postpone,
    /// Delete the copy (only this copy).
    Delete,
}

/// The decision for the copy at `now`.
pub fn decide(copy: &DueCopy, now: DateTime<Utc>) -> CopyDecision {
    if copy.expires_at > now || copy.keep_min_held || copy.soft_deleted || copy.expiry_taken {
        return CopyDecision::Nothing;
    }
    if copy.read_active {
        return CopyDecision::Postpone;
    }
    CopyDecision::Delete
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use uuid::Uuid;

    use super::*;
    use crate::model::Schedule;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
    }

    fn due() -> DueCopy {
        DueCopy {
            recovery_point_id: Uuid::nil(),
            vault_id: "v".into(),
            backup_instance_id: Uuid::nil(),
            datastore_url: "azure://copies".into(),
            expires_at: t0(),
            keep_min_held: false,
            soft_deleted: false,
            read_active: false,
            expiry_taken: false,
        }
    }

    fn policy(copy: Option<CopyRule>) -> Policy {
        Policy {
            vault_id: "v".into(),
            id: "p".into(),
            schedule: Schedule {
                weekdays: vec![1],
                time_of_day: "02:00".into(),
                time_zone: "UTC".into(),
            },
            retention_rules: vec![],
            keep_min: 3,
            copy,
            verify_schedule: None,
            drill: None,
            create_time: t0(),
        }
    }

    #[test]
    fn a_point_is_copied_only_when_its_policy_names_a_copy_datastore() {
        assert_eq!(copy_due(&policy(None)), None);
        let rule = CopyRule {
            datastore_url: "azure://copies".into(),
            retention: "P30D".into(),
        };
        assert_eq!(copy_due(&policy(Some(rule.clone()))), Some(&rule));
    }

    #[test]
    fn a_copy_is_kept_for_its_own_retention_after_the_snapshot() {
        let rule = CopyRule {
            datastore_url: "azure://copies".into(),
            retention: "P30D".into(),
        };
        let fallback = t0() + Duration::days(7);
        assert_eq!(
            copy_expiry(Some(&rule), t0(), fallback),
            t0() + Duration::days(30)
        );
        assert_eq!(copy_expiry(None, t0(), fallback), fallback);
    }

    #[test]
    fn an_expired_copy_is_deleted_once_and_not_before_its_expiry() {
        let copy = due();
        assert_eq!(
            decide(&copy, t0() - Duration::seconds(1)),
            CopyDecision::Nothing
        );
        assert_eq!(decide(&copy, t0()), CopyDecision::Delete);
        let taken = DueCopy {
            expiry_taken: true,
            ..due()
        };
        assert_eq!(decide(&taken, t0()), CopyDecision::Nothing);
    }

    #[test]
    fn expiry_never_deletes_a_copy_of_the_newest_keep_min_points_or_of_a_soft_deleted_point() {
        let held = DueCopy {
            keep_min_held: true,
            ..due()
        };
        assert_eq!(
            decide(&held, t0() + Duration::days(400)),
            CopyDecision::Nothing
        );
        let soft_deleted = DueCopy {
            soft_deleted: true,
            ..due()
        };
        assert_eq!(
            decide(&soft_deleted, t0() + Duration::days(400)),
            CopyDecision::Nothing
        );
    }

    #[test]
    fn a_restore_or_copy_reading_the_point_postpones_the_copy_deletion() {
        let read = DueCopy {
            read_active: true,
            ..due()
        };
        assert_eq!(decide(&read, t0()), CopyDecision::Postpone);
    }
}
