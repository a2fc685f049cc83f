//! The sweeper's decision for one recovery point at one instant: which
//! lifecycle job (if any) it needs. Pure, so the rules are unit-tested here:
//! - a standard point past its expiry is moved to archive when its rule has
//!   an archive period and the vault an archive datastore, else deleted;
//! - an archive point past its (archive) expiry is deleted;
//! - a rehydrated copy past its period is deleted (the archive point stays);
//! - a stage already under way or done is not started again (exactly once);
//! - nothing is deleted or moved while a restore of the point is queued or
//!   running: the decision is postponed to a later pass;
//! - expiry never deletes one of the instance's newest `keep_min` live
//!   points (the policy's floor under retention), however old it is; it
//!   may still move it to the archive datastore, which keeps it;
//! - a soft-deleted point never expires: it is purged (every copy deleted)
//!   once its purge time has come, and not before.

use chrono::{DateTime, Utc};

use crate::model::Tier;
use crate::store::lifecycle::DuePoint;
use crate::tagging::{self, Due};

/// The stages, as stored (`lifecycle_runs.stage`, `jobs.lifecycle_stage`).
pub use crate::model::stage::{ARCHIVE_EXPIRY, REHYDRATE, REHYDRATED_EXPIRY, STANDARD_EXPIRY};

/// What the point needs now.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Nothing is due, or what is due is already under way.
    Nothing,
    /// Due, but a restore reads the point: the next pass looks again.
    Postpone { stage: String },
    /// Copy to the archive datastore, kept there until `archive_expire_time`.
    TierMove { archive_expire_time: DateTime<Utc> },
    /// Delete every copy of the point (stage STANDARD_EXPIRY or ARCHIVE_EXPIRY).
    Delete { stage: String },
    /// Delete the rehydrated copy at `prefix`; the archive point stays.
    DeleteRehydrated { stage: String, prefix: String },
}

impl Decision {
    /// The lifecycle stage the decision carries out.
    pub fn stage(&self) -> Option<&str> {
        match self {
            Decision::Nothing => None,
            Decision::TierMove { .. } => Some(STANDARD_EXPIRY),
            Decision::Postpone { stage }
            | Decision::Delete { stage }
            | Decision::DeleteRehydrated { stage, .. } => Some(stage),
        }
    }
}

/// The decision for `point` at `now`.
pub fn decide(point: &DuePoint, now: DateTime<Utc>) -> Decision {
    let taken = |stage: &str| point.stages_taken.iter().any(|s| s == stage);
    let expiry = if point.purge_due {
        Due::Delete
    } else if point.soft_deleted_by.is_some() {
        Due::Keep
    } else {
        match tagging::due(point.tier, point.expire_time, &point.archive_duration, now) {
            // The floor holds the point where it is, unless expiry only
            // moves it to the archive datastore.
            Due::MoveToArchive { .. } | Due::Delete
                if point.keep_min_held && point.archive_datastore.is_empty() =>
            {
                Due::Keep
            }
            Due::Delete if point.keep_min_held => Due::Keep,
            due => due,
        }
    };
    let wanted = match expiry {
        Due::Keep => None,
        Due::MoveToArchive {
            archive_expire_time,
        } if !point.archive_datastore.is_empty() && !point.purge_due => Some(Decision::TierMove {
            archive_expire_time,
        }),
        Due::MoveToArchive { .. } | Due::Delete => Some(Decision::Delete {
            stage: match point.tier {
                Tier::Standard => STANDARD_EXPIRY.to_string(),
                Tier::Archive => ARCHIVE_EXPIRY.to_string(),
            },
        }),
    };
    let wanted = match wanted {
        Some(decision) => Some(decision),
        None => match (&point.rehydrated_prefix, point.rehydrated_until) {
            (Some(prefix), Some(until)) if until <= now => Some(Decision::DeleteRehydrated {
                stage: format!("{REHYDRATED_EXPIRY}{prefix}"),
                prefix: prefix.clone(),
            }),
            _ => None,
        },
    };
    let Some(decision) = wanted else {
        return Decision::Nothing;
    };
    let stage = decision.stage().unwrap_or_default().to_string();
    if taken(&stage) {
        return Decision::Nothing;
    }
    if point.restore_active {
        return Decision::Postpone { stage };
    }
    decision
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use uuid::Uuid;

    use super::*;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
    }

    fn point(tier: Tier, archive_duration: &str, archive_datastore: &str) -> DuePoint {
        DuePoint {
            id: Uuid::nil(),
            vault_id: "v".into(),
            backup_instance_id: Uuid::nil(),
            tier,
            expire_time: t0(),
            archive_duration: archive_duration.into(),
            archive_datastore: archive_datastore.into(),
            rehydrated_prefix: None,
            rehydrated_until: None,
            restore_active: false,
            stages_taken: vec![],
            keep_min_held: false,
            soft_deleted_by: None,
            purge_due: false,
        }
    }

    #[test]
    fn expiry_never_deletes_one_of_the_newest_keep_min_points_but_may_archive_it() {
        let mut p = point(Tier::Standard, "", "");
        p.keep_min_held = true;
        assert_eq!(decide(&p, t0() + Duration::days(400)), Decision::Nothing);
        let mut no_archive_store = point(Tier::Standard, "P6M", "");
        no_archive_store.keep_min_held = true;
        assert_eq!(decide(&no_archive_store, t0()), Decision::Nothing);
        let mut archived = point(Tier::Archive, "", "az://archive");
        archived.keep_min_held = true;
        assert_eq!(
            decide(&archived, t0() + Duration::days(400)),
            Decision::Nothing
        );
        let mut moving = point(Tier::Standard, "P6M", "az://archive");
        moving.keep_min_held = true;
        assert!(matches!(decide(&moving, t0()), Decision::TierMove { .. }));
    }

    #[test]
    fn a_soft_deleted_point_does_not_expire_and_is_purged_at_its_purge_time() {
        let mut p = point(Tier::Standard, "P6M", "az://archive");
        p.soft_deleted_by = Some("ops".into());
        assert_eq!(decide(&p, t0() + Duration::days(1)), Decision::Nothing);
        p.purge_due = true;
        assert_eq!(
            decide(&p, t0() - Duration::days(30)),
            Decision::Delete {
                stage: STANDARD_EXPIRY.into()
            }
        );
        p.keep_min_held = true;
        assert!(matches!(decide(&p, t0()), Decision::Delete { .. }));
        p.restore_active = true;
        assert!(matches!(decide(&p, t0()), Decision::Postpone { .. }));
    }

    #[test]
    fn standard_point_is_kept_until_its_expiry_then_deleted() {
        let p = point(Tier::Standard, "", "az://archive");
        assert_eq!(decide(&p, t0() - Duration::seconds(1)), Decision::Nothing);
        assert_eq!(
            decide(&p, t0()),
            Decision::Delete {
                stage: STANDARD_EXPIRY.into()
            }
        );
    }

    #[test]
    fn standard_point_with_archive_rule_moves_to_archive_for_the_archive_period() {
        let p = point(Tier::Standard, "P6M", "az://archive");
        assert_eq!(
            decide(&p, t0() + Duration::hours(1)),
            Decision::TierMove {
                archive_expire_time: Utc.with_ymd_and_hms(2025, 7, 1, 0, 0, 0).unwrap()
            }
        );
    }

    #[test]
    fn archive_rule_without_archive_datastore_deletes_at_standard_expiry() {
        let p = point(Tier::Standard, "P6M", "");
        assert_eq!(
            decide(&p, t0()),
            Decision::Delete {
                stage: STANDARD_EXPIRY.into()
            }
        );
    }

    #[test]
    fn archive_point_is_deleted_at_its_archive_expiry() {
        let p = point(Tier::Archive, "", "az://archive");
        assert_eq!(decide(&p, t0() - Duration::days(1)), Decision::Nothing);
        assert_eq!(
            decide(&p, t0()),
            Decision::Delete {
                stage: ARCHIVE_EXPIRY.into()
            }
        );
    }

    #[test]
    fn a_stage_under_way_is_not_started_twice() {
        let mut p = point(Tier::Standard, "P6M", "az://archive");
        p.stages_taken = vec![STANDARD_EXPIRY.into()];
        assert_eq!(decide(&p, t0() + Duration::days(1)), Decision::Nothing);
    }

    #[test]
    fn a_running_restore_postpones_deletion_and_tier_move() {
        let mut p = point(Tier::Standard, "", "");
        p.restore_active = true;
        assert_eq!(
            decide(&p, t0()),
            Decision::Postpone {
                stage: STANDARD_EXPIRY.into()
            }
        );
        let mut moving = point(Tier::Standard, "P6M", "az://archive");
        moving.restore_active = true;
        assert!(matches!(decide(&moving, t0()), Decision::Postpone { .. }));
    }

    #[test]
    fn rehydrated_copy_is_deleted_when_its_period_ends_and_the_point_stays() {
        let mut p = point(Tier::Archive, "", "az://archive");
        p.expire_time = t0() + Duration::days(365);
        p.rehydrated_prefix = Some("v/i/p-rehydrated-1".into());
        p.rehydrated_until = Some(t0() + Duration::days(15));
        assert_eq!(decide(&p, t0() + Duration::days(14)), Decision::Nothing);
        let stage = format!("{REHYDRATED_EXPIRY}v/i/p-rehydrated-1");
        assert_eq!(
            decide(&p, t0() + Duration::days(15)),
            Decision::DeleteRehydrated {
                stage: stage.clone(),
                prefix: "v/i/p-rehydrated-1".into()
            }
        );
        p.restore_active = true;
        assert_eq!(
            decide(&p, t0() + Duration::days(15)),
            Decision::Postpone {
                stage: stage.clone()
            }
        );
        p.restore_active = false;
        p.stages_taken = vec![stage];
        assert_eq!(decide(&p, t0() + Duration::days(15)), Decision::Nothing);
    }

    #[test]
    fn point_deletion_wins_over_rehydrated_copy_deletion() {
        let mut p = point(Tier::Archive, "", "az://archive");
        p.rehydrated_prefix = Some("x".into());
        p.rehydrated_until = Some(t0() - Duration::days(1));
        assert_eq!(
            decide(&p, t0()),
            Decision::Delete {
                stage: ARCHIVE_EXPIRY.into()
            }
        );
    }
}
