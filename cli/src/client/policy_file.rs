//! Policies as files: `pgvault policy create --file p.toml|p.json` reads one,
//! `pgvault policy show` prints one back in the same form, so a shown policy
//! can be edited and created again. Field names are the proto's:
//!
//! ```toml
//! keep_min = 3
//! copy_datastore = "az://copies/pgvault"
//! copy_retention = "P30D"
//!
//! [schedule]
//! weekdays = ["MONDAY", "THURSDAY"]
//! time_of_day = "02:30"
//! time_zone = "Europe/Berlin"
//!
//! [[retention_rules]]
//! kind = "MONTHLY"
//! standard_duration = "P12M"
//! archive_duration = "P5Y"
//! ```
//!
//! An optional `[verify_schedule]` (same fields as `[schedule]`) verifies
//! every recovery point of the policy's instances at those times; an
//! optional `[drill_schedule]` (with `drill_server` and `drill_secret`)
//! drills every instance's newest point at those times.
//!
//! Weekdays and rule kinds accept any case and short weekday names (`mon`).
//! `keep_min` (at least 1; default 3) is how many of an instance's newest
//! recovery points expiry never deletes. `copy_datastore` and `copy_retention`
//! (together or neither) copy every completed point to a second datastore,
//! each copy kept that long.

use std::path::Path;

use anyhow::{Context, bail};
use pgvault_proto::v1::{Policy, RetentionRule, RetentionRuleKind, Schedule, Weekday};
use serde::{Deserialize, Serialize};

use super::enum_names::{from_short_name, short_name};
use super::policy::{parse_copy_retention, parse_duration, parse_time_of_day, parse_weekday};

/// The file form of a policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Ignored on create (the id comes from the command line); shown by `show`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Expiry never deletes the instance's newest this many points (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_min: Option<u32>,
    /// Second datastore every completed point is copied to (3-2-1).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub copy_datastore: String,
    /// How long each copy is kept (ISO 8601 or short, e.g. 30d).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub copy_retention: String,
    /// Restore drills: the server, its secret, and after every how many
    /// completed backups of an instance and/or `drill_schedule`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub drill_server: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub drill_secret: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub drill_every: u32,
    pub schedule: ScheduleFile,
    #[serde(default)]
    pub retention_rules: Vec<RuleFile>,
    /// When every recovery point of the policy's instances is verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_schedule: Option<ScheduleFile>,
    /// When every instance's newest recovery point is drilled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill_schedule: Option<ScheduleFile>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleFile {
    pub weekdays: Vec<String>,
    pub time_of_day: String,
    #[serde(default)]
    pub time_zone: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    pub kind: String,
    #[serde(default)]
    pub standard_duration: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub archive_duration: String,
}

/// How a policy file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FileFormat {
    Toml,
    Json,
}

/// Reads a policy file; the format follows the extension (`.json`, else TOML).
pub fn read(path: &Path) -> anyhow::Result<Policy> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read policy file {}", path.display()))?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let file: PolicyFile = if is_json {
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a policy in JSON", path.display()))?
    } else {
        toml::from_str(&text)
            .with_context(|| format!("{} is not a policy in TOML", path.display()))?
    };
    to_policy(file).with_context(|| format!("in policy file {}", path.display()))
}

/// Checks and converts the file form into the API's policy.
pub fn to_policy(file: PolicyFile) -> anyhow::Result<Policy> {
    let schedule = to_schedule(&file.schedule, "schedule")?;
    let verify_schedule = file
        .verify_schedule
        .as_ref()
        .map(|s| to_schedule(s, "verify_schedule"))
        .transpose()?;
    let drill_schedule = file
        .drill_schedule
        .as_ref()
        .map(|s| to_schedule(s, "drill_schedule"))
        .transpose()?;
    let mut retention_rules = Vec::new();
    for (i, rule) in file.retention_rules.iter().enumerate() {
        let Some(kind) = from_short_name::<RetentionRuleKind>(&rule.kind) else {
            bail!(
                "retention_rules[{i}].kind: \"{}\" is not DEFAULT, WEEKLY, MONTHLY or YEARLY",
                rule.kind
            );
        };
        let duration = |text: &str, field: &str| -> anyhow::Result<String> {
            if text.trim().is_empty() {
                return Ok(String::new());
            }
            parse_duration(text)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("retention_rules[{i}].{field}"))
        };
        retention_rules.push(RetentionRule {
            kind: kind as i32,
            standard_duration: duration(&rule.standard_duration, "standard_duration")?,
            archive_duration: duration(&rule.archive_duration, "archive_duration")?,
        });
    }
    if file.keep_min == Some(0) {
        bail!("keep_min: must be at least 1 (expiry never deletes the newest N points; default 3)");
    }
    if file.copy_datastore.trim().is_empty() != file.copy_retention.trim().is_empty() {
        bail!(
            "copy_datastore and copy_retention go together: name the copy datastore and how long copies are kept (e.g. P30D)"
        );
    }
    let copy_retention = if file.copy_retention.trim().is_empty() {
        String::new()
    } else {
        parse_copy_retention(&file.copy_retention)
            .map_err(anyhow::Error::msg)
            .context("copy_retention")?
    };
    Ok(Policy {
        schedule: Some(schedule),
        verify_schedule,
        retention_rules,
        keep_min: file.keep_min.unwrap_or_default(),
        copy_datastore: file.copy_datastore.trim().to_owned(),
        copy_retention,
        drill_server: file.drill_server.trim().to_owned(),
        drill_secret: file.drill_secret.trim().to_owned(),
        drill_every: file.drill_every,
        drill_schedule,
        ..Policy::default()
    })
}

/// Checks and converts a schedule's file form (`field` names it in errors).
fn to_schedule(file: &ScheduleFile, field: &str) -> anyhow::Result<Schedule> {
    let weekdays = file
        .weekdays
        .iter()
        .map(|d| {
            from_short_name::<Weekday>(d)
                .map_or_else(|| parse_weekday(d), Ok)
                .map(|w| w as i32)
                .map_err(anyhow::Error::msg)
        })
        .collect::<anyhow::Result<Vec<i32>>>()
        .with_context(|| format!("{field}.weekdays"))?;
    let time_of_day = parse_time_of_day(&file.time_of_day)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("{field}.time_of_day"))?;
    Ok(Schedule {
        weekdays,
        time_of_day,
        time_zone: file.time_zone.trim().to_owned(),
    })
}

/// The file form of a schedule.
fn schedule_file(schedule: Schedule) -> ScheduleFile {
    ScheduleFile {
        weekdays: schedule
            .weekdays
            .iter()
            .map(|d| {
                Weekday::try_from(*d)
                    .map(short_name)
                    .unwrap_or_else(|_| d.to_string())
            })
            .collect(),
        time_of_day: schedule.time_of_day,
        time_zone: if schedule.time_zone.is_empty() {
            "UTC".into()
        } else {
            schedule.time_zone
        },
    }
}

/// The file form of a stored policy.
pub fn from_policy(policy: &Policy) -> PolicyFile {
    let schedule = policy.schedule.clone().unwrap_or_default();
    PolicyFile {
        name: policy.name.clone(),
        keep_min: (policy.keep_min > 0).then_some(policy.keep_min),
        copy_datastore: policy.copy_datastore.clone(),
        copy_retention: policy.copy_retention.clone(),
        schedule: schedule_file(schedule),
        verify_schedule: policy.verify_schedule.clone().map(schedule_file),
        drill_server: policy.drill_server.clone(),
        drill_secret: policy.drill_secret.clone(),
        drill_every: policy.drill_every,
        drill_schedule: policy.drill_schedule.clone().map(schedule_file),
        retention_rules: policy
            .retention_rules
            .iter()
            .map(|r| RuleFile {
                kind: RetentionRuleKind::try_from(r.kind)
                    .map(short_name)
                    .unwrap_or_else(|_| r.kind.to_string()),
                standard_duration: r.standard_duration.clone(),
                archive_duration: r.archive_duration.clone(),
            })
            .collect(),
    }
}

/// Renders the file form as TOML or JSON.
pub fn render(policy: &Policy, format: FileFormat) -> anyhow::Result<String> {
    let file = from_policy(policy);
    Ok(match format {
        FileFormat::Toml => toml::to_string(&file).context("render policy as TOML")?,
        FileFormat::Json => {
            serde_json::to_string_pretty(&file).context("render policy as JSON")? + "\n"
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> Policy {
        Policy {
            name: "vaults/prod/policies/nightly".into(),
            schedule: Some(Schedule {
                weekdays: vec![Weekday::Monday as i32, Weekday::Thursday as i32],
                time_of_day: "02:30".into(),
                time_zone: "Europe/Berlin".into(),
            }),
            retention_rules: vec![
                RetentionRule {
                    kind: RetentionRuleKind::Default as i32,
                    standard_duration: "P3M".into(),
                    archive_duration: String::new(),
                },
                RetentionRule {
                    kind: RetentionRuleKind::Monthly as i32,
                    standard_duration: "P1Y".into(),
                    archive_duration: "P5Y".into(),
                },
            ],
            create_time: None,
            next_run_time: None,
            keep_min: 5,
            copy_datastore: "az://copies/pgvault".into(),
            copy_retention: "P30D".into(),
            verify_schedule: Some(Schedule {
                weekdays: vec![Weekday::Sunday as i32],
                time_of_day: "03:00".into(),
                time_zone: "Europe/Berlin".into(),
            }),
            drill_server: "drill-db".into(),
            drill_secret: "secrets/drill".into(),
            drill_every: 7,
            drill_schedule: Some(Schedule {
                weekdays: vec![Weekday::Sunday as i32, Weekday::Wednesday as i32],
                time_of_day: "04:00".into(),
                time_zone: "Europe/Berlin".into(),
            }),
        }
    }

    #[test]
    fn a_drill_schedule_reads_back_and_its_errors_name_it() {
        let toml = render(&stored(), FileFormat::Toml).unwrap();
        assert!(toml.contains("[drill_schedule]"), "{toml}");
        let back = to_policy(toml::from_str(&toml).unwrap()).unwrap();
        assert_eq!(back.drill_schedule, stored().drill_schedule);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(
            &path,
            "drill_server = \"drill-db\"\ndrill_secret = \"drill\"\n\n[schedule]\nweekdays = [\"mon\"]\ntime_of_day = \"02:30\"\n\n[drill_schedule]\nweekdays = [\"someday\"]\ntime_of_day = \"04:00\"\n",
        )
        .unwrap();
        let err = format!("{:#}", read(&path).unwrap_err());
        assert!(err.contains("drill_schedule.weekdays"), "{err}");
    }

    #[test]
    fn a_verify_schedule_reads_back_and_its_errors_name_it() {
        let toml = render(&stored(), FileFormat::Toml).unwrap();
        assert!(toml.contains("[verify_schedule]"), "{toml}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(
            &path,
            "[schedule]\nweekdays = [\"mon\"]\ntime_of_day = \"02:30\"\n\n[verify_schedule]\nweekdays = [\"sun\"]\ntime_of_day = \"3am\"\n",
        )
        .unwrap();
        let err = format!("{:#}", read(&path).unwrap_err());
        assert!(err.contains("verify_schedule.time_of_day"), "{err}");
    }

    #[test]
    fn keep_min_reads_back_and_zero_is_refused() {
        let toml = render(&stored(), FileFormat::Toml).unwrap();
        assert!(
            toml.starts_with("name = ") && toml.contains("keep_min = 5"),
            "{toml}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(
            &path,
            "keep_min = 0\n[schedule]\nweekdays = [\"mon\"]\ntime_of_day = \"02:30\"\n",
        )
        .unwrap();
        let err = format!("{:#}", read(&path).unwrap_err());
        assert!(err.contains("keep_min: must be at least 1"), "{err}");
    }

    #[test]
    fn a_copy_datastore_needs_its_retention_and_the_short_form_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        let schedule = "[schedule]\nweekdays = [\"mon\"]\ntime_of_day = \"02:30\"\n";
        std::fs::write(&path, format!("copy_datastore = \"file:///c\"\n{schedule}")).unwrap();
        let err = format!("{:#}", read(&path).unwrap_err());
        assert!(
            err.contains("copy_datastore and copy_retention go together"),
            "{err}"
        );
        std::fs::write(
            &path,
            format!("copy_datastore = \"file:///c\"\ncopy_retention = \"30d\"\n{schedule}"),
        )
        .unwrap();
        let policy = read(&path).unwrap();
        assert_eq!(
            (
                policy.copy_datastore.as_str(),
                policy.copy_retention.as_str()
            ),
            ("file:///c", "P30D")
        );
    }

    #[test]
    fn shown_policies_read_back_the_same_in_toml_and_json() {
        let dir = tempfile::tempdir().unwrap();
        for (format, file) in [(FileFormat::Toml, "p.toml"), (FileFormat::Json, "p.json")] {
            let path = dir.path().join(file);
            std::fs::write(&path, render(&stored(), format).unwrap()).unwrap();
            let read_back = read(&path).unwrap();
            let mut expected = stored();
            expected.name = String::new();
            assert_eq!(read_back, expected, "{format:?}");
        }
    }

    #[test]
    fn friendly_spellings_and_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(
            &path,
            "[schedule]\nweekdays = [\"mon\", \"Thursday\"]\ntime_of_day = \"2:30\"\n\n[[retention_rules]]\nkind = \"yearly\"\nstandard_duration = \"p10y\"\n",
        )
        .unwrap();
        let policy = read(&path).unwrap();
        let schedule = policy.schedule.unwrap();
        assert_eq!(schedule.weekdays, vec![1, 4]);
        assert_eq!(schedule.time_of_day, "02:30");
        assert_eq!(policy.retention_rules[0].standard_duration, "P10Y");

        std::fs::write(
            &path,
            "[schedule]\nweekdays = [\"mon\"]\ntime_of_day = \"02:30\"\n\n[[retention_rules]]\nkind = \"hourly\"\n",
        )
        .unwrap();
        let err = format!("{:#}", read(&path).unwrap_err());
        assert!(err.contains("retention_rules[0].kind"), "{err}");
        std::fs::write(&path, "[schedule]\nweekdays = [\"mon\"]\nat = \"02:30\"\n").unwrap();
        assert!(read(&path).is_err(), "unknown fields are refused");
    }
}
