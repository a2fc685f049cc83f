//! Tagging and expiry of a completed backup, and what retention does with a
//! recovery point at a given time. Pure functions, property-tested.
//!
//! A point is tagged with the highest-priority rule that exists in the policy
//! and matches: `Yearly` if it is the first successful backup of its year,
//! else `Monthly` if first of its month, else `Weekly` if first of its week
//! (weeks start on Monday), else `Default`. Periods are local to the policy's
//! time zone. Because periods are intervals, "the first of its period" only
//! needs the latest earlier successful snapshot: if any earlier success lies
//! in the period, so does the latest one.
//!
//! A point stays in the standard datastore until `snapshot + standard`; then
//! it moves to archive for `archive` more (when the rule has an archive
//! duration) or is deleted. An archive point is deleted at its expiry.

use chrono::{DateTime, Datelike, Utc};
use chrono_tz::Tz;

use crate::model::{RuleKind, Tier};
use crate::retention::{IsoDuration, RetentionRule};

/// Which periods the latest earlier success shares with the new snapshot.
fn shared_periods(zone: Tz, snapshot: DateTime<Utc>, previous: DateTime<Utc>) -> [bool; 3] {
    let a = snapshot.with_timezone(&zone).date_naive();
    let b = previous.with_timezone(&zone).date_naive();
    let same_year = a.year() == b.year();
    let same_month = same_year && a.month() == b.month();
    let same_week = a.iso_week() == b.iso_week();
    [same_year, same_month, same_week]
}

/// The tag of a backup taken at `snapshot`, given the kinds of rule the
/// policy has and the latest successful snapshot before it (of any tag).
pub fn tag(
    kinds: &[RuleKind],
    zone: Tz,
    snapshot: DateTime<Utc>,
    previous: Option<DateTime<Utc>>,
) -> RuleKind {
    let [same_year, same_month, same_week] = match previous {
        Some(previous) if previous < snapshot => shared_periods(zone, snapshot, previous),
        _ => [false, false, false],
    };
    let has = |kind| kinds.contains(&kind);
    if has(RuleKind::Yearly) && !same_year {
        RuleKind::Yearly
    } else if has(RuleKind::Monthly) && !same_month {
        RuleKind::Monthly
    } else if has(RuleKind::Weekly) && !same_week {
        RuleKind::Weekly
    } else {
        RuleKind::Default
    }
}

/// Where a point is kept and until when, as decided at completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Keeping {
    pub tag: RuleKind,
    /// End of the standard-datastore period.
    pub expire_time: DateTime<Utc>,
    /// Archive period after `expire_time`; empty: deleted at `expire_time`.
    pub archive_duration: String,
}

/// Applies `rule` to a point taken at `snapshot`. `None` only for a rule
/// whose stored duration is corrupt or whose expiry overflows the calendar.
pub fn keeping(rule: &RetentionRule, snapshot: DateTime<Utc>) -> Option<Keeping> {
    let expire_time = rule.standard()?.after(snapshot)?;
    Some(Keeping {
        tag: rule.kind,
        expire_time,
        archive_duration: rule.archive_duration.clone(),
    })
}

/// What retention does to a point at a given time.
#[derive(Debug, Clone, PartialEq)]
pub enum Due {
    /// Not expired yet.
    Keep,
    /// The standard copy expired and the rule archives: copy to archive,
    /// kept there until `archive_expire_time`.
    MoveToArchive { archive_expire_time: DateTime<Utc> },
    /// Expired with nowhere further to go.
    Delete,
}

/// The retention decision for a point in `tier` expiring at `expire_time`,
/// with its rule's `archive_duration` (empty: none), at `now`.
pub fn due(
    tier: Tier,
    expire_time: DateTime<Utc>,
    archive_duration: &str,
    now: DateTime<Utc>,
) -> Due {
    if now < expire_time {
        return Due::Keep;
    }
    if tier == Tier::Archive || archive_duration.is_empty() {
        return Due::Delete;
    }
    // A corrupt archive duration keeps the point: never delete early.
    match IsoDuration::parse(archive_duration)
        .ok()
        .and_then(|d| d.after(expire_time))
    {
        Some(end) => Due::MoveToArchive {
            archive_expire_time: end,
        },
        None => Due::Keep,
    }
}

#[cfg(test)]
#[path = "tagging_tests.rs"]
mod tests;
