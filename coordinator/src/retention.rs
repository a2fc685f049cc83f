//! Retention rules: ISO 8601 durations (`P7D`, `P3M`, `P1Y`, `P12W`), their
//! allowed ranges (standard datastore 7 days – 10 years, archive 6 months –
//! 10 years), each rule's default, and the expiry of a recovery point.

use std::fmt;

use chrono::{DateTime, Days, Months, Utc};
use serde::{Deserialize, Serialize};

use crate::model::RuleKind;

/// Average days per month, used only to compare mixed durations with a range.
const DAYS_PER_MONTH: f64 = 365.2425 / 12.0;

/// A calendar duration: whole years/months plus whole weeks/days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsoDuration {
    pub months: u32,
    pub days: u32,
}

impl IsoDuration {
    pub const fn months(months: u32) -> Self {
        IsoDuration { months, days: 0 }
    }

    pub const fn days(days: u32) -> Self {
        IsoDuration { months: 0, days }
    }

    /// Parses `PnYnMnWnD` (any non-empty subset, in that order). Time parts
    /// (`T…`) are refused: retention is counted in days.
    pub fn parse(text: &str) -> Result<IsoDuration, String> {
        let bad = || format!("\"{text}\" is not an ISO 8601 duration like P7D, P12W, P3M or P1Y");
        let body = text.strip_prefix('P').ok_or_else(bad)?;
        if body.is_empty() || body.contains('T') {
            return Err(bad());
        }
        let (mut months, mut days) = (0u64, 0u64);
        let mut number = String::new();
        let mut last_rank = 0;
        for c in body.chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let n: u64 = number.parse().map_err(|_| bad())?;
            number.clear();
            let rank = match c {
                'Y' => 1,
                'M' => 2,
                'W' => 3,
                'D' => 4,
                _ => return Err(bad()),
            };
            if rank <= last_rank {
                return Err(bad());
            }
            last_rank = rank;
            match c {
                'Y' => months += n.saturating_mul(12),
                'M' => months += n,
                'W' => days += n.saturating_mul(7),
                _ => days += n,
            }
        }
        if !number.is_empty() {
            return Err(bad());
        }
        let months = u32::try_from(months).map_err(|_| bad())?;
        let days = u32::try_from(days).map_err(|_| bad())?;
        Ok(IsoDuration { months, days })
    }

    /// Length in days, months counted as average months (for comparisons).
    pub fn approx_days(self) -> f64 {
        f64::from(self.months) * DAYS_PER_MONTH + f64::from(self.days)
    }

    /// `time + self`, calendar-aware (P1M from Jan 31 is the last of February).
    pub fn after(self, time: DateTime<Utc>) -> Option<DateTime<Utc>> {
        time.checked_add_months(Months::new(self.months))?
            .checked_add_days(Days::new(u64::from(self.days)))
    }
}

impl fmt::Display for IsoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("P")?;
        let (years, months) = (self.months / 12, self.months % 12);
        if years > 0 {
            write!(f, "{years}Y")?;
        }
        if months > 0 {
            write!(f, "{months}M")?;
        }
        if self.days > 0 || self.months == 0 {
            write!(f, "{}D", self.days)?;
        }
        Ok(())
    }
}

/// An allowed range of durations, with its wording for error messages.
struct Range {
    min: IsoDuration,
    max: IsoDuration,
    text: &'static str,
}

const STANDARD_RANGE: Range = Range {
    min: IsoDuration::days(7),
    max: IsoDuration::months(120),
    text: "7 days (P7D) to 10 years (P10Y)",
};
const ARCHIVE_RANGE: Range = Range {
    min: IsoDuration::months(6),
    max: IsoDuration::months(120),
    text: "6 months (P6M) to 10 years (P10Y)",
};

impl Range {
    fn contains(&self, d: IsoDuration) -> bool {
        let eps = 1e-9;
        d.approx_days() + eps >= self.min.approx_days()
            && d.approx_days() <= self.max.approx_days() + eps
    }
}

/// Validates how long copies in a policy's copy datastore are kept (the
/// standard range); the normalised duration.
pub fn copy_retention(text: &str) -> Result<IsoDuration, String> {
    let duration = IsoDuration::parse(text.trim())?;
    if !STANDARD_RANGE.contains(duration) {
        return Err(format!(
            "{} is outside the allowed range {}",
            text.trim(),
            STANDARD_RANGE.text
        ));
    }
    Ok(duration)
}

/// A validated retention rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionRule {
    #[serde(with = "kind_text")]
    pub kind: RuleKind,
    /// Normalised ISO 8601 duration in the standard datastore.
    pub standard_duration: String,
    /// ISO 8601 duration in the archive datastore; empty: deleted at standard expiry.
    #[serde(default)]
    pub archive_duration: String,
}

impl RetentionRule {
    /// The standard duration (validated when the rule was built).
    pub fn standard(&self) -> Option<IsoDuration> {
        IsoDuration::parse(&self.standard_duration).ok()
    }
}

/// The standard duration a rule gets when none is given.
pub fn default_standard_duration(kind: RuleKind) -> IsoDuration {
    match kind {
        RuleKind::Default => IsoDuration::months(3),
        RuleKind::Weekly => IsoDuration::days(12 * 7),
        RuleKind::Monthly => IsoDuration::months(12),
        RuleKind::Yearly => IsoDuration::months(120),
    }
}

/// A rule validation failure: which part of the rule and why.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleError {
    /// `standard_duration` or `archive_duration`.
    pub part: &'static str,
    pub message: String,
}

/// Validates one rule's durations; empty standard means the rule's default.
pub fn build_rule(
    kind: RuleKind,
    standard: &str,
    archive: &str,
) -> Result<RetentionRule, RuleError> {
    let standard = if standard.trim().is_empty() {
        default_standard_duration(kind)
    } else {
        checked(kind, "standard_duration", standard.trim(), &STANDARD_RANGE)?
    };
    let archive = if archive.trim().is_empty() {
        String::new()
    } else {
        checked(kind, "archive_duration", archive.trim(), &ARCHIVE_RANGE)?.to_string()
    };
    Ok(RetentionRule {
        kind,
        standard_duration: standard.to_string(),
        archive_duration: archive,
    })
}

fn checked(
    kind: RuleKind,
    part: &'static str,
    text: &str,
    range: &Range,
) -> Result<IsoDuration, RuleError> {
    let duration = IsoDuration::parse(text).map_err(|message| RuleError {
        part,
        message: format!("retention rule {kind}: {part} {message}"),
    })?;
    if !range.contains(duration) {
        return Err(RuleError {
            part,
            message: format!(
                "retention rule {kind}: {part} \"{text}\" is out of range; allowed: {}",
                range.text
            ),
        });
    }
    Ok(duration)
}

mod kind_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::model::RuleKind;

    pub fn serialize<S: Serializer>(kind: &RuleKind, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(kind.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<RuleKind, D::Error> {
        let text = String::deserialize(d)?;
        RuleKind::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown rule kind {text}")))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(IsoDuration::parse("P7D").unwrap(), IsoDuration::days(7));
        assert_eq!(IsoDuration::parse("P3M").unwrap(), IsoDuration::months(3));
        assert_eq!(
            IsoDuration::parse("P1Y6M").unwrap(),
            IsoDuration::months(18)
        );
        assert_eq!(IsoDuration::parse("P2W").unwrap(), IsoDuration::days(14));
        for bad in ["", "P", "7D", "P1H", "PT1H", "P1D1Y", "P1", "P-1D", "P1.5Y"] {
            assert!(IsoDuration::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges_are_enforced_with_the_range_in_the_message() {
        assert!(build_rule(RuleKind::Default, "P7D", "").is_ok());
        assert!(build_rule(RuleKind::Default, "P10Y", "P10Y").is_ok());
        let err = build_rule(RuleKind::Weekly, "P6D", "").unwrap_err();
        assert_eq!(err.part, "standard_duration");
        assert!(
            err.message.contains("WEEKLY")
                && err.message.contains("7 days (P7D) to 10 years (P10Y)"),
            "{}",
            err.message
        );
        let err = build_rule(RuleKind::Monthly, "P1Y", "P5M").unwrap_err();
        assert_eq!(err.part, "archive_duration");
        assert!(err.message.contains("6 months"), "{}", err.message);
        assert!(build_rule(RuleKind::Yearly, "P11Y", "").is_err());
    }

    #[test]
    fn defaults_and_expiry() {
        let rule = build_rule(RuleKind::Default, "", "").unwrap();
        assert_eq!(rule.standard_duration, "P3M");
        let snapshot = Utc.with_ymd_and_hms(2024, 11, 30, 12, 0, 0).unwrap();
        assert_eq!(
            crate::tagging::keeping(&rule, snapshot).map(|k| k.expire_time),
            Some(Utc.with_ymd_and_hms(2025, 2, 28, 12, 0, 0).unwrap())
        );
    }
}
