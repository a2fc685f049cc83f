//! Input rules that are not about one field's shape: a policy's weekly
//! schedule and rule list, which databases may be protected, and database
//! names. Errors name the request field they are about.

use std::collections::HashSet;
use std::str::FromStr;

use crate::error::{CoordinatorError, Result};
use crate::model::{RuleKind, Schedule};
use crate::retention::{RetentionRule, build_rule};

/// A schedule as it arrives: ISO weekday numbers (0 = unspecified).
pub struct ScheduleInput<'a> {
    pub weekdays: &'a [i32],
    pub time_of_day: &'a str,
    pub time_zone: &'a str,
}

/// Validates a weekly schedule: at least one weekday, "HH:MM", an IANA zone.
pub fn schedule(field: &str, input: ScheduleInput<'_>) -> Result<Schedule> {
    if input.weekdays.is_empty() {
        return Err(CoordinatorError::invalid(
            format!("{field}.weekdays"),
            "at least one weekday is required (MONDAY..SUNDAY)",
        ));
    }
    let mut weekdays = Vec::new();
    for (i, day) in input.weekdays.iter().enumerate() {
        let day = u8::try_from(*day)
            .ok()
            .filter(|d| (1..=7).contains(d))
            .ok_or_else(|| {
                CoordinatorError::invalid(
                    format!("{field}.weekdays[{i}]"),
                    "must be MONDAY..SUNDAY",
                )
            })?;
        if !weekdays.contains(&day) {
            weekdays.push(day);
        }
    }
    weekdays.sort_unstable();
    let time_of_day = input.time_of_day.trim();
    if !valid_time_of_day(time_of_day) {
        return Err(CoordinatorError::invalid(
            format!("{field}.time_of_day"),
            format!("\"{time_of_day}\" is not a 24-hour time \"HH:MM\" (00:00 to 23:59)"),
        ));
    }
    let time_zone = match input.time_zone.trim() {
        "" => "UTC".to_string(),
        zone => {
            chrono_tz::Tz::from_str(zone).map_err(|_| {
                CoordinatorError::invalid(
                    format!("{field}.time_zone"),
                    format!(
                        "\"{zone}\" is not an IANA time zone such as \"Europe/Berlin\" or \"UTC\""
                    ),
                )
            })?;
            zone.to_string()
        }
    };
    Ok(Schedule {
        weekdays,
        time_of_day: time_of_day.to_string(),
        time_zone,
    })
}

fn valid_time_of_day(text: &str) -> bool {
    let Some((h, m)) = text.split_once(':') else {
        return false;
    };
    let two_digits = |s: &str| s.len() == 2 && s.chars().all(|c| c.is_ascii_digit());
    two_digits(h)
        && two_digits(m)
        && h.parse::<u8>().is_ok_and(|h| h < 24)
        && m.parse::<u8>().is_ok_and(|m| m < 60)
}

/// A retention rule as it arrives (kind already decoded; `None` = unspecified).
pub struct RuleInput<'a> {
    pub kind: Option<RuleKind>,
    pub standard_duration: &'a str,
    pub archive_duration: &'a str,
}

/// Validates the rule list: known kinds, each at most once, durations in
/// range; adds the DEFAULT rule when missing.
pub fn retention_rules(field: &str, inputs: &[RuleInput<'_>]) -> Result<Vec<RetentionRule>> {
    let mut seen = HashSet::new();
    let mut rules = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let kind = input.kind.ok_or_else(|| {
            CoordinatorError::invalid(
                format!("{field}[{i}].kind"),
                "must be DEFAULT, WEEKLY, MONTHLY or YEARLY",
            )
        })?;
        if !seen.insert(kind) {
            return Err(CoordinatorError::invalid(
                format!("{field}[{i}].kind"),
                format!("retention rule {kind} is given more than once"),
            ));
        }
        let rule =
            build_rule(kind, input.standard_duration, input.archive_duration).map_err(|e| {
                CoordinatorError::invalid(format!("{field}[{i}].{}", e.part), e.message)
            })?;
        rules.push(rule);
    }
    if !seen.contains(&RuleKind::Default) {
        let default = build_rule(RuleKind::Default, "", "")
            .map_err(|e| CoordinatorError::internal(format!("default rule: {}", e.message)))?;
        rules.insert(0, default);
    }
    Ok(rules)
}

/// Refuses rules that move points to an archive the vault does not have.
pub fn archive_available(
    field: &str,
    rules: &[RetentionRule],
    vault_has_archive: bool,
) -> Result<()> {
    match rules.iter().position(|r| !r.archive_duration.is_empty()) {
        Some(i) if !vault_has_archive => Err(CoordinatorError::invalid(
            format!("{field}[{i}].archive_duration"),
            format!(
                "retention rule {} moves points to archive, but the vault has no archive datastore; \
                 remove archive_duration or create the vault with an archive datastore",
                rules[i].kind
            ),
        )),
        _ => Ok(()),
    }
}

/// Databases that are never offered nor protected.
pub const TEMPLATE_DATABASES: [&str; 2] = ["template0", "template1"];

/// Why `database` cannot be protected, if it cannot.
pub fn unprotectable_reason(database: &str, maintenance: &[String]) -> Option<String> {
    if TEMPLATE_DATABASES.contains(&database) {
        return Some(format!(
            "\"{database}\" is a template database and cannot be protected"
        ));
    }
    if maintenance.iter().any(|m| m == database) {
        return Some(format!(
            "\"{database}\" is a provider maintenance database and cannot be protected"
        ));
    }
    None
}

/// Checks a PostgreSQL database name: 1–63 bytes, no NUL.
pub fn database_name(field: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(CoordinatorError::invalid(
            field,
            "a database name is required",
        ));
    }
    if name.len() > 63 || name.contains('\0') {
        return Err(CoordinatorError::invalid(
            field,
            "a database name is 1-63 bytes without NUL characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(days: &'a [i32], time: &'a str, zone: &'a str) -> ScheduleInput<'a> {
        ScheduleInput {
            weekdays: days,
            time_of_day: time,
            time_zone: zone,
        }
    }

    #[test]
    fn schedules() {
        let s = schedule(
            "policy.schedule",
            input(&[5, 1, 1], "02:30", "Europe/Berlin"),
        )
        .unwrap();
        assert_eq!(s.weekdays, vec![1, 5]);
        assert_eq!(
            schedule("s", input(&[1], "00:00", "")).unwrap().time_zone,
            "UTC"
        );
        let err = schedule("policy.schedule", input(&[], "02:30", "")).unwrap_err();
        assert!(
            err.to_string().starts_with("policy.schedule.weekdays"),
            "{err}"
        );
        for time in ["24:00", "2:30", "02:60", "0230", ""] {
            assert!(schedule("s", input(&[1], time, "")).is_err(), "{time}");
        }
        let err = schedule("policy.schedule", input(&[1], "02:30", "Mars/Olympus")).unwrap_err();
        assert!(err.to_string().contains("time_zone"), "{err}");
        assert!(schedule("s", input(&[0], "02:30", "")).is_err());
    }

    #[test]
    fn rules_get_a_default_and_refuse_duplicates() {
        let rules = retention_rules(
            "policy.retention_rules",
            &[RuleInput {
                kind: Some(RuleKind::Weekly),
                standard_duration: "P8W",
                archive_duration: "",
            }],
        )
        .unwrap();
        assert_eq!(rules[0].kind, RuleKind::Default);
        assert_eq!(rules[0].standard_duration, "P3M");
        let dup = [
            RuleInput {
                kind: Some(RuleKind::Default),
                standard_duration: "",
                archive_duration: "",
            },
            RuleInput {
                kind: Some(RuleKind::Default),
                standard_duration: "",
                archive_duration: "",
            },
        ];
        assert!(retention_rules("r", &dup).is_err());
        let bad = [RuleInput {
            kind: Some(RuleKind::Yearly),
            standard_duration: "P20Y",
            archive_duration: "",
        }];
        let err = retention_rules("policy.retention_rules", &bad).unwrap_err();
        assert!(
            err.to_string()
                .contains("policy.retention_rules[0].standard_duration"),
            "{err}"
        );
        assert!(err.to_string().contains("YEARLY"), "{err}");
    }

    #[test]
    fn archiving_needs_an_archive_datastore() {
        let rules = retention_rules(
            "policy.retention_rules",
            &[RuleInput {
                kind: Some(RuleKind::Monthly),
                standard_duration: "P1Y",
                archive_duration: "P5Y",
            }],
        )
        .unwrap();
        assert!(archive_available("policy.retention_rules", &rules, true).is_ok());
        let err = archive_available("policy.retention_rules", &rules, false).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("policy.retention_rules[1].archive_duration") && text.contains("MONTHLY"),
            "{text}"
        );
    }

    #[test]
    fn unprotectable_databases() {
        let maintenance = vec!["rdsadmin".to_string()];
        assert!(unprotectable_reason("template1", &maintenance).is_some());
        assert!(unprotectable_reason("rdsadmin", &maintenance).is_some());
        assert!(unprotectable_reason("postgres", &maintenance).is_none());
    }
}
