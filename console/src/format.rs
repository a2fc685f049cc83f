//! How values read on the pages: sizes and durations humanised, times as
//! UTC in a `<time datetime>` that the script shows in the browser's zone,
//! and every state as a word plus a colour class ([`Badge`]), never colour
//! alone. API enums arrive as `i32`; unknown values read as "Unknown".

use chrono::{DateTime, Utc};
use pgvault_proto::v1 as pb;

/// A state as text with its colour class (`ok`, `warn`, `bad`, `run`, `idle`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Badge {
    pub text: &'static str,
    pub class: &'static str,
}

const fn badge(text: &'static str, class: &'static str) -> Badge {
    Badge { text, class }
}

/// An instant: ISO 8601 UTC for `<time datetime>`, and readable UTC text
/// shown until (or without) the script localising it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeView {
    pub iso: String,
    pub text: String,
}

pub fn to_utc(ts: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    let nanos = u32::try_from(ts.nanos).ok()?;
    DateTime::from_timestamp(ts.seconds, nanos)
}

pub fn time(ts: Option<&prost_types::Timestamp>) -> Option<TimeView> {
    ts.and_then(to_utc).map(time_of)
}

pub fn time_of(at: DateTime<Utc>) -> TimeView {
    TimeView {
        iso: at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        text: at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    }
}

/// `1.5 GiB`, `312 KiB`, `12 B`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value >= 100.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `42 s`, `3 min 07 s`, `2 h 05 min`, `3 d 4 h`.
pub fn duration(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {:02} s", s / 60, s % 60),
        3600..=86_399 => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// How long from `start` to `end` (or to now while running).
pub fn elapsed(
    start: Option<&prost_types::Timestamp>,
    end: Option<&prost_types::Timestamp>,
) -> Option<String> {
    let start = start.and_then(to_utc)?;
    let end = end.and_then(to_utc).unwrap_or_else(Utc::now);
    Some(duration((end - start).num_seconds()))
}

/// `1,234,567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut groups = Vec::new();
    let mut rest = digits.as_str();
    while rest.len() > 3 {
        let (head, tail) = rest.split_at(rest.len() - 3);
        groups.push(tail);
        rest = head;
    }
    groups.push(rest);
    groups.reverse();
    groups.join(",")
}

/// The last segment of a resource name (`jobs/abc` → `abc`).
pub fn id_of(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// The first 8 characters of a name's id, as the CLI prints them.
pub fn short(name: &str) -> String {
    id_of(name).chars().take(8).collect()
}

pub fn job_state(state: i32) -> Badge {
    use pb::JobState::*;
    match pb::JobState::try_from(state).unwrap_or(Unspecified) {
        Queued => badge("Queued", "idle"),
        InProgress => badge("In progress", "run"),
        Completed => badge("Completed", "ok"),
        CompletedWithWarnings => badge("Completed with warnings", "warn"),
        Failed => badge("Failed", "bad"),
        Cancelling => badge("Cancelling", "run"),
        Cancelled => badge("Cancelled", "idle"),
        Unspecified => badge("Unknown", "idle"),
    }
}

/// Whether a job state is final (no more changes will come).
pub fn job_ended(state: i32) -> bool {
    use pb::JobState::*;
    matches!(
        pb::JobState::try_from(state).unwrap_or(Unspecified),
        Completed | CompletedWithWarnings | Failed | Cancelled
    )
}

pub fn operation(op: i32) -> &'static str {
    use pb::Operation::*;
    match pb::Operation::try_from(op).unwrap_or(Unspecified) {
        ScheduledBackup => "Scheduled backup",
        OnDemandBackup => "On-demand backup",
        Restore => "Restore",
        TierMove => "Tier move",
        Rehydrate => "Rehydrate",
        Delete => "Delete",
        Copy => "Copy",
        Verify => "Verify",
        Drill => "Restore drill",
        Unspecified => "Unknown",
    }
}

pub fn protection(state: i32) -> Badge {
    use pb::ProtectionState::*;
    match pb::ProtectionState::try_from(state).unwrap_or(Unspecified) {
        Configured => badge("Protected", "ok"),
        Stopped => badge("Stopped", "idle"),
        Validating => badge("Validating", "run"),
        ValidationFailed => badge("Validation failed", "bad"),
        Unspecified => badge("Unknown", "idle"),
    }
}

pub fn readiness(value: i32) -> Badge {
    use pb::Readiness::*;
    match pb::Readiness::try_from(value).unwrap_or(Unspecified) {
        Validating => badge("Validating", "run"),
        Success => badge("Success", "ok"),
        FailedValidation => badge("Failed validation", "bad"),
        Unspecified => badge("Unknown", "idle"),
    }
}

pub fn attempt_outcome(value: i32) -> Badge {
    use pb::AttemptOutcome::*;
    match pb::AttemptOutcome::try_from(value).unwrap_or(Unspecified) {
        Running => badge("Running", "run"),
        Completed => badge("Completed", "ok"),
        Failed => badge("Failed", "bad"),
        LeaseExpired => badge("Lease expired", "bad"),
        Fenced => badge("Taken over", "warn"),
        Cancelled => badge("Cancelled", "idle"),
        Unspecified => badge("Unknown", "idle"),
    }
}

pub fn table_state(value: i32) -> Badge {
    use pb::TableState::*;
    match pb::TableState::try_from(value).unwrap_or(Unspecified) {
        Queued => badge("Queued", "idle"),
        Running => badge("Running", "run"),
        Done => badge("Done", "ok"),
        Failed => badge("Failed", "bad"),
        Unspecified => badge("Unknown", "idle"),
    }
}

/// How a point's last verify or drill ended (`result` as the API gives
/// it: "", "ok" or "failed").
pub fn check(result: &str) -> Badge {
    match result {
        "" => badge("Never", "idle"),
        "ok" => badge("Passed", "ok"),
        _ => badge("Failed", "bad"),
    }
}

/// A point's restorable copies (state COPIED; expired ones are DELETED).
pub fn live_copies(
    copies: &[pb::RecoveryPointCopy],
) -> impl Iterator<Item = &pb::RecoveryPointCopy> {
    copies.iter().filter(|c| c.state == "COPIED")
}

/// A point's restorable copies in other datastores: "—", "1 copy", "2 copies".
pub fn copies(copies: &[pb::RecoveryPointCopy]) -> String {
    match live_copies(copies).count() {
        0 => "—".to_string(),
        1 => "1 copy".to_string(),
        n => format!("{n} copies"),
    }
}

pub fn tier(value: i32) -> &'static str {
    match pb::DatastoreTier::try_from(value).unwrap_or(pb::DatastoreTier::Unspecified) {
        pb::DatastoreTier::Standard => "Standard",
        pb::DatastoreTier::Archive => "Archive",
        pb::DatastoreTier::Unspecified => "—",
    }
}

/// A retention rule as users name it (`Default`, `Weekly`, …).
pub fn rule(value: i32) -> &'static str {
    use pb::RetentionRuleKind::*;
    match pb::RetentionRuleKind::try_from(value).unwrap_or(Unspecified) {
        Default => "Default",
        Weekly => "Weekly",
        Monthly => "Monthly",
        Yearly => "Yearly",
        Unspecified => "—",
    }
}

/// The weekday names of a schedule, `Mon, Thu`.
pub fn weekdays(days: &[i32]) -> String {
    const NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    days.iter()
        .filter_map(|d| {
            usize::try_from(*d)
                .ok()
                .and_then(|d| NAMES.get(d.wrapping_sub(1)))
        })
        .copied()
        .collect::<Vec<_>>()
        .join(", ")
}

/// `s` for a URL query value: everything but unreserved characters
/// percent-encoded.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_and_copies_read_as_words_not_colour_alone() {
        assert_eq!(check("").text, "Never");
        assert_eq!(check("ok").text, "Passed");
        assert_eq!(check("failed").text, "Failed");
        let copy = |state: &str| pb::RecoveryPointCopy {
            state: state.into(),
            ..Default::default()
        };
        assert_eq!(copies(&[]), "—");
        assert_eq!(copies(&[copy("COPIED"), copy("DELETED")]), "1 copy");
        assert_eq!(copies(&[copy("COPIED"), copy("COPIED")]), "2 copies");
    }

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 * 1024 * 1024), "5.0 MiB");
        assert_eq!(bytes(300 * 1024 * 1024 * 1024), "300 GiB");
        assert_eq!(bytes(u64::MAX), "16384 PiB");
    }

    #[test]
    fn durations_read_in_the_two_largest_units() {
        assert_eq!(duration(-3), "0 s");
        assert_eq!(duration(42), "42 s");
        assert_eq!(duration(187), "3 min 07 s");
        assert_eq!(duration(7500), "2 h 05 min");
        assert_eq!(duration(3 * 86_400 + 4 * 3600 + 59), "3 d 4 h");
    }

    #[test]
    fn times_are_utc_until_the_browser_localises_them() {
        let t = time(Some(&prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }))
        .expect("valid");
        assert_eq!(t.iso, "2023-11-14T22:13:20Z");
        assert_eq!(t.text, "2023-11-14 22:13:20 UTC");
        assert_eq!(time(None), None);
    }

    #[test]
    fn every_state_has_words_not_only_a_colour() {
        for s in 0..=8 {
            assert!(!job_state(s).text.is_empty());
        }
        assert_eq!(
            job_state(pb::JobState::Failed as i32),
            badge("Failed", "bad")
        );
        assert_eq!(job_state(99).text, "Unknown");
        assert_eq!(
            protection(pb::ProtectionState::Configured as i32).text,
            "Protected"
        );
        assert!(job_ended(pb::JobState::Completed as i32));
        assert!(!job_ended(pb::JobState::InProgress as i32));
    }

    #[test]
    fn names_shorten_to_their_ids() {
        assert_eq!(id_of("vaults/v/backupInstances/abc"), "abc");
        assert_eq!(short("jobs/0123456789abcdef"), "01234567");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(12), "12");
        assert_eq!(weekdays(&[1, 4, 9]), "Mon, Thu");
        assert_eq!(query_escape("vaults/a b&c=d"), "vaults%2Fa%20b%26c%3Dd");
    }
}
