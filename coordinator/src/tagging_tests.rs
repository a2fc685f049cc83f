//! Property tests of tagging and expiry over random backup histories: random
//! successes and failures across years, random time zones, random rule sets.

use chrono::{Datelike, Duration, TimeZone};
use proptest::prelude::*;

use super::*;
use crate::retention::build_rule;

fn zones() -> impl Strategy<Value = Tz> {
    proptest::sample::select(vec![
        Tz::UTC,
        Tz::Europe__Berlin,
        Tz::America__Los_Angeles,
        Tz::Pacific__Auckland,
        Tz::Asia__Kathmandu,
        Tz::Pacific__Apia,
        Tz::America__Santiago,
    ])
}

/// Rule kinds of a policy: DEFAULT always, the others at random.
fn kinds() -> impl Strategy<Value = Vec<RuleKind>> {
    (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(w, m, y)| {
        let mut kinds = vec![RuleKind::Default];
        for (on, kind) in [
            (w, RuleKind::Weekly),
            (m, RuleKind::Monthly),
            (y, RuleKind::Yearly),
        ] {
            if on {
                kinds.push(kind);
            }
        }
        kinds
    })
}

/// Attempts: (minutes since the previous attempt, succeeded).
fn history() -> impl Strategy<Value = Vec<(i64, bool)>> {
    proptest::collection::vec(
        (
            prop_oneof![
                1i64..600,
                600i64..(3 * 24 * 60),
                (3i64 * 24 * 60)..(45 * 24 * 60)
            ],
            proptest::bool::weighted(0.8),
        ),
        1..250,
    )
}

/// The tag by definition: scan every earlier success.
fn brute_force(
    kinds: &[RuleKind],
    zone: Tz,
    earlier: &[DateTime<Utc>],
    t: DateTime<Utc>,
) -> RuleKind {
    let local = |x: DateTime<Utc>| x.with_timezone(&zone).date_naive();
    let first = |same: &dyn Fn(chrono::NaiveDate, chrono::NaiveDate) -> bool| {
        !earlier.iter().any(|e| *e < t && same(local(*e), local(t)))
    };
    let year = |a: chrono::NaiveDate, b: chrono::NaiveDate| a.year() == b.year();
    let month =
        |a: chrono::NaiveDate, b: chrono::NaiveDate| a.year() == b.year() && a.month() == b.month();
    let week = |a: chrono::NaiveDate, b: chrono::NaiveDate| a.iso_week() == b.iso_week();
    [
        (RuleKind::Yearly, first(&year)),
        (RuleKind::Monthly, first(&month)),
        (RuleKind::Weekly, first(&week)),
    ]
    .into_iter()
    .find(|(kind, is_first)| kinds.contains(kind) && *is_first)
    .map_or(RuleKind::Default, |(kind, _)| kind)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Each success gets the highest-priority existing rule it matches; per
    /// local year / month / week, exactly one point carries that period's
    /// rule (or a higher one), and failures never count.
    #[test]
    fn tagging_priority_over_random_histories(
        zone in zones(),
        kinds in kinds(),
        start_days in 0i64..(365 * 15),
        attempts in history(),
    ) {
        let mut t = Utc.with_ymd_and_hms(2012, 1, 1, 0, 0, 0).unwrap() + Duration::days(start_days);
        let mut successes: Vec<(DateTime<Utc>, RuleKind)> = Vec::new();
        for (gap, ok) in attempts {
            t += Duration::minutes(gap);
            if !ok {
                continue;
            }
            let previous = successes.last().map(|(s, _)| *s);
            let tagged = tag(&kinds, zone, t, previous);
            let earlier: Vec<_> = successes.iter().map(|(s, _)| *s).collect();
            prop_assert_eq!(tagged, brute_force(&kinds, zone, &earlier, t), "at {}", t);
            prop_assert!(kinds.contains(&tagged));
            successes.push((t, tagged));
        }
        let local = |x: DateTime<Utc>| x.with_timezone(&zone).date_naive();
        if kinds.contains(&RuleKind::Yearly) {
            let mut years = std::collections::HashMap::new();
            for (s, tag) in &successes {
                *years.entry(local(*s).year()).or_insert(0) += usize::from(*tag == RuleKind::Yearly);
            }
            prop_assert!(years.values().all(|n| *n == 1), "{:?}", years);
        }
        if kinds.contains(&RuleKind::Monthly) {
            let mut months = std::collections::HashMap::new();
            for (s, tag) in &successes {
                let high = matches!(tag, RuleKind::Yearly | RuleKind::Monthly);
                *months.entry((local(*s).year(), local(*s).month())).or_insert(0) += usize::from(high);
            }
            prop_assert!(months.values().all(|n| *n == 1), "{:?}", months);
        }
        if kinds.contains(&RuleKind::Weekly) {
            // Every week has at least one point kept at Weekly or above; the
            // first of the week is always one of them.
            let mut weeks = std::collections::HashMap::new();
            for (s, tag) in &successes {
                weeks.entry(local(*s).iso_week()).or_insert(*tag);
            }
            prop_assert!(weeks.values().all(|first| *first != RuleKind::Default));
        }
    }

    /// A point lives exactly as long as its rule says: kept (never deleted
    /// nor moved) before its standard expiry, moved to archive or deleted at
    /// it, and an archived point deleted exactly at the end of its archive
    /// period; the standard period is never a day short of the duration.
    #[test]
    fn no_point_outlives_or_undershoots_its_rule(
        kind in proptest::sample::select(vec![RuleKind::Default, RuleKind::Weekly, RuleKind::Monthly, RuleKind::Yearly]),
        standard in prop_oneof![(7u32..3650).prop_map(|d| format!("P{d}D")), (1u32..=120).prop_map(|m| format!("P{m}M")), (1u32..=10).prop_map(|y| format!("P{y}Y"))],
        archive in prop_oneof![Just(String::new()), (6u32..=120).prop_map(|m| format!("P{m}M")), (183u32..3650).prop_map(|d| format!("P{d}D"))],
        snapshot_secs in 0i64..(20 * 365 * 86_400),
        steps in proptest::collection::vec(1i64..(40 * 86_400), 1..400),
    ) {
        let rule = build_rule(kind, &standard, &archive).expect("in range");
        let snapshot = Utc.with_ymd_and_hms(2010, 1, 1, 0, 0, 0).unwrap() + Duration::seconds(snapshot_secs);
        let kept = keeping(&rule, snapshot).expect("expiry");
        prop_assert_eq!(kept.tag, kind);
        let d = IsoDuration::parse(&rule.standard_duration).unwrap();
        let shortest = Duration::days(i64::from(d.months) * 28 + i64::from(d.days));
        let longest = Duration::days(i64::from(d.months) * 31 + i64::from(d.days));
        prop_assert!(kept.expire_time - snapshot >= shortest && kept.expire_time - snapshot <= longest);

        // Walk time forward, applying retention like the sweeper does.
        let (mut tier, mut expire) = (Tier::Standard, kept.expire_time);
        let archive_end = (!archive.is_empty()).then(|| {
            IsoDuration::parse(&rule.archive_duration).unwrap().after(kept.expire_time).unwrap()
        });
        let mut now = snapshot;
        let mut deleted_at = None;
        for step in steps {
            now += Duration::seconds(step);
            match due(tier, expire, &kept.archive_duration, now) {
                Due::Keep => prop_assert!(now < expire),
                Due::MoveToArchive { archive_expire_time } => {
                    prop_assert!(tier == Tier::Standard && now >= kept.expire_time);
                    prop_assert_eq!(Some(archive_expire_time), archive_end);
                    tier = Tier::Archive;
                    expire = archive_expire_time;
                    // The same sweep may find the archive copy expired too.
                    if due(tier, expire, &kept.archive_duration, now) == Due::Delete {
                        deleted_at = Some(now);
                        break;
                    }
                }
                Due::Delete => {
                    deleted_at = Some(now);
                    break;
                }
            }
        }
        let end_of_life = archive_end.unwrap_or(kept.expire_time);
        match deleted_at {
            Some(at) => prop_assert!(at >= end_of_life, "deleted at {} before {}", at, end_of_life),
            None => prop_assert!(now < end_of_life, "still kept at {} after {}", now, end_of_life),
        }
    }
}

#[test]
fn first_of_the_year_wins_over_first_of_month_and_week() {
    let all = [
        RuleKind::Default,
        RuleKind::Weekly,
        RuleKind::Monthly,
        RuleKind::Yearly,
    ];
    let berlin = Tz::Europe__Berlin;
    // 2024-12-31 23:30 UTC is already 2025-01-01 in Berlin.
    let new_year = Utc.with_ymd_and_hms(2024, 12, 31, 23, 30, 0).unwrap();
    let before = Utc.with_ymd_and_hms(2024, 12, 31, 12, 0, 0).unwrap();
    assert_eq!(tag(&all, berlin, new_year, Some(before)), RuleKind::Yearly);
    assert_eq!(
        tag(&all, Tz::UTC, new_year, Some(before)),
        RuleKind::Default
    );
    // Without a Yearly rule the first of the year is the first of its month.
    let no_yearly = [RuleKind::Default, RuleKind::Weekly, RuleKind::Monthly];
    assert_eq!(
        tag(&no_yearly, berlin, new_year, Some(before)),
        RuleKind::Monthly
    );
    // Only DEFAULT: always DEFAULT.
    assert_eq!(
        tag(&[RuleKind::Default], berlin, new_year, None),
        RuleKind::Default
    );
}

#[test]
fn weeks_start_on_monday() {
    let kinds = [RuleKind::Default, RuleKind::Weekly];
    let sunday = Utc.with_ymd_and_hms(2025, 1, 12, 10, 0, 0).unwrap();
    let monday = Utc.with_ymd_and_hms(2025, 1, 13, 10, 0, 0).unwrap();
    let tuesday = Utc.with_ymd_and_hms(2025, 1, 14, 10, 0, 0).unwrap();
    assert_eq!(tag(&kinds, Tz::UTC, monday, Some(sunday)), RuleKind::Weekly);
    assert_eq!(
        tag(&kinds, Tz::UTC, tuesday, Some(monday)),
        RuleKind::Default
    );
}
