//! Time arguments of the client verbs (`--since`, `--until`): an age such as
//! `30m`, `36h`, `2d` or `3w` (that long before now), a date `2026-11-01`
//! (midnight UTC) or an RFC 3339 instant `2026-11-01T08:00:00+01:00`.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

/// Parses `text` relative to `now`, with an error saying which forms work.
pub fn parse(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Ok(instant.with_timezone(&Utc));
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    let unit_at = text.len().saturating_sub(1);
    if let (Ok(count), Some(unit)) = (text[..unit_at].parse::<i64>(), text.get(unit_at..)) {
        let age = match unit {
            "m" => TimeDelta::try_minutes(count),
            "h" => TimeDelta::try_hours(count),
            "d" => TimeDelta::try_days(count),
            "w" => TimeDelta::try_weeks(count),
            _ => None,
        };
        if let Some(age) = age.filter(|_| count >= 0)
            && let Some(at) = now.checked_sub_signed(age)
        {
            return Ok(at);
        }
    }
    Err(format!(
        "`{text}` is not a time: give an age (30m, 36h, 2d, 3w), a date (2026-11-01) or an RFC 3339 instant (2026-11-01T08:00:00Z)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_dates_and_instants_parse_and_anything_else_names_the_forms() {
        let now = DateTime::parse_from_rfc3339("2026-11-24T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |s: &str| parse(s, now).map(|t| t.to_rfc3339());
        assert_eq!(at("36h").unwrap(), "2026-11-23T00:00:00+00:00");
        assert_eq!(at("2d").unwrap(), "2026-11-22T12:00:00+00:00");
        assert_eq!(at("1w").unwrap(), "2026-11-17T12:00:00+00:00");
        assert_eq!(at("30m").unwrap(), "2026-11-24T11:30:00+00:00");
        assert_eq!(at("2026-11-01").unwrap(), "2026-11-01T00:00:00+00:00");
        assert_eq!(
            at("2026-11-01T08:00:00+01:00").unwrap(),
            "2026-11-01T07:00:00+00:00"
        );
        for bad in [
            "",
            "yesterday",
            "5y",
            "-3d",
            "d",
            "99999999999999w",
            "2026-13-01",
        ] {
            let error = at(bad).unwrap_err();
            assert!(error.contains("36h"), "{bad}: {error}");
        }
    }
}
