//! `pgvault policy create|get|show|list`: weekly schedules and retention
//! rules, from flags or a JSON/TOML file (`policy_file`), with parsers for
//! weekdays (`mon,thu`), times of day (`02:30`) and ISO 8601 durations (`P3M`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use pgvault_proto::v1::{
    CreatePolicyRequest, GetPolicyRequest, ListPoliciesRequest, Policy, RetentionRule,
    RetentionRuleKind, Schedule, Weekday,
};

use super::connect::{Api, Reply};
use super::enum_names::short_name;
use super::output::{local_time, or_dash, print_details, print_json, print_list};
use super::policy_file::{self, FileFormat};
use super::{json, names, paging};

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Create a policy: when backups run and how long recovery points are kept.
    #[command(after_help = "Examples:\n  \
        pgvault policy create nightly --vault prod --weekdays mon,thu --at 02:30\n  \
        pgvault policy create weekly --vault prod --weekdays sun --at 23:00 \\\n      \
        --time-zone Europe/Berlin --retain P3M --monthly P12M --yearly P10Y\n  \
        pgvault policy create archived --vault prod --file archived.toml\n  \
        pgvault policy create nightly --vault prod --weekdays mon,wed,fri --at 02:30 --verify weekly:sun@03:00\n  \
        pgvault policy create drilled --vault prod --weekdays mon,thu --at 02:30 \\\n      \
        --drill-server db-drill --drill-secret drill --drill weekly:sun@04:00")]
    Create {
        /// Short id of the new policy.
        name: String,
        /// Vault the policy belongs to.
        #[arg(long)]
        vault: String,
        /// The whole policy from a JSON (.json) or TOML file, in the form
        /// `pgvault policy show` prints.
        #[arg(long, value_name = "PATH", conflicts_with_all = ["weekdays", "at", "time_zone", "verify", "retain", "weekly", "monthly", "yearly", "keep_min", "retain_archive", "weekly_archive", "monthly_archive", "yearly_archive", "copy_to", "copy_retention", "drill_server", "drill_secret", "drill_every", "drill"])]
        file: Option<PathBuf>,
        /// Days backups run on, comma-separated: mon,tue,wed,thu,fri,sat,sun.
        #[arg(long, required_unless_present = "file", value_delimiter = ',', value_parser = parse_weekday)]
        weekdays: Vec<Weekday>,
        /// Local time of day backups start, HH:MM (24 h).
        #[arg(long, value_name = "HH:MM", required_unless_present = "file", value_parser = parse_time_of_day)]
        at: Option<String>,
        /// IANA time zone of --at, --verify and --drill, e.g. Europe/Berlin (default UTC).
        #[arg(long)]
        time_zone: Option<String>,
        /// How long every recovery point is kept (the Default rule), ISO 8601, e.g. P3M (the default).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        retain: Option<String>,
        /// Keep the first recovery point of each week this long, e.g. P12W.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        weekly: Option<String>,
        /// Keep the first recovery point of each month this long, e.g. P12M.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        monthly: Option<String>,
        /// Keep the first recovery point of each year this long, e.g. P10Y.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        yearly: Option<String>,
        #[command(flatten)]
        archive: Box<ArchiveArgs>,
    },
    /// Show one policy.
    Get {
        /// Policy id (or "vaults/{vault}/policies/{policy}").
        name: String,
        /// Vault the policy belongs to.
        #[arg(long)]
        vault: Option<String>,
    },
    /// Print one policy as a file `policy create --file` reads back.
    Show {
        /// Policy id (or "vaults/{vault}/policies/{policy}").
        name: String,
        /// Vault the policy belongs to.
        #[arg(long)]
        vault: Option<String>,
        /// File format.
        #[arg(long, value_enum, default_value = "toml")]
        format: FileFormat,
    },
    /// List the policies of a vault.
    List {
        /// Vault whose policies are listed.
        #[arg(long)]
        vault: String,
    },
}

/// Archive periods of `policy create`'s rules, its keep-min floor and its
/// copy datastore and verify schedule (kept apart, boxed, so the command
/// enum stays small).
#[derive(Debug, Args)]
pub struct ArchiveArgs {
    /// Restore drills: the server scratch databases are restored into
    /// (a registered server; the newest point of an instance is restored
    /// there, checked table by table against the manifest, then dropped).
    /// Needs --drill-secret and --drill-every, --drill or both.
    #[arg(long, value_name = "SERVER", requires = "drill_secret")]
    drill_server: Option<String>,
    /// The secret the drill connects to --drill-server with (may create databases).
    #[arg(long, value_name = "SECRET", requires = "drill_server")]
    drill_secret: Option<String>,
    /// Drill after every Nth completed backup of an instance (1: every backup).
    #[arg(long, value_name = "N", requires = "drill_server", value_parser = clap::value_parser!(u32).range(1..))]
    drill_every: Option<u32>,
    /// Drill every instance's newest recovery point on these days at this
    /// time: `weekly:sun@04:00` or `sun,wed@04:00`.
    #[arg(long, value_name = "[weekly:]DAYS@HH:MM", value_parser = parse_verify_schedule, requires = "drill_server")]
    drill: Option<VerifyAt>,
    /// Verify every recovery point of the policy's instances on these
    /// days at this time: `weekly:sun@03:00` or `mon,thu@03:00`.
    #[arg(long, value_name = "[weekly:]DAYS@HH:MM", value_parser = parse_verify_schedule)]
    verify: Option<VerifyAt>,
    /// Expiry never deletes an instance's newest N recovery points, even
    /// while backups fail for longer than the retention period (at least 1; default 3).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    keep_min: Option<u32>,
    /// Move Default-rule points to the archive datastore at expiry and
    /// keep them there this long, e.g. P6M (6 months - 10 years).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    retain_archive: Option<String>,
    /// Archive period of the Weekly rule's points, e.g. P1Y.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "weekly")]
    weekly_archive: Option<String>,
    /// Archive period of the Monthly rule's points, e.g. P5Y.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "monthly")]
    monthly_archive: Option<String>,
    /// Archive period of the Yearly rule's points, e.g. P10Y.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "yearly")]
    yearly_archive: Option<String>,
    /// Copy every completed recovery point to this second datastore
    /// (another region or provider: file://, s3://, az://), verified; each
    /// copy can be restored on its own (3-2-1).
    #[arg(long, value_name = "URL", requires = "copy_retention")]
    copy_to: Option<String>,
    /// How long each copy is kept after its snapshot, e.g. 30d or P30D
    /// (7 days - 10 years), independently of the point itself.
    #[arg(long, value_name = "DURATION", value_parser = parse_copy_retention, requires = "copy_to")]
    copy_retention: Option<String>,
}

pub async fn run(api: &Api, command: PolicyCommand) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::Create {
            name,
            vault,
            file,
            weekdays,
            at,
            time_zone,
            retain,
            weekly,
            monthly,
            yearly,
            archive,
        } => {
            let ArchiveArgs {
                drill_server,
                drill_secret,
                drill_every,
                drill,
                verify,
                keep_min,
                retain_archive,
                weekly_archive,
                monthly_archive,
                yearly_archive,
                copy_to,
                copy_retention,
            } = *archive;
            let parent = names::vault(&vault)?;
            let policy_id = names::short(&names::policy(Some(&vault), &name)?).to_owned();
            if let Some(path) = file {
                let request = CreatePolicyRequest {
                    parent,
                    policy_id,
                    policy: Some(policy_file::read(&path)?),
                };
                let policy = api.policies().create_policy(request).await.reply(api)?;
                show(api, &policy);
                return Ok(ExitCode::SUCCESS);
            }
            let rules = [
                (RetentionRuleKind::Default, retain, retain_archive),
                (RetentionRuleKind::Weekly, weekly, weekly_archive),
                (RetentionRuleKind::Monthly, monthly, monthly_archive),
                (RetentionRuleKind::Yearly, yearly, yearly_archive),
            ];
            let retention_rules = rules
                .into_iter()
                .filter_map(|(kind, duration, archive)| {
                    // The Default rule may archive with its default duration.
                    let standard = match (duration, &archive, kind) {
                        (Some(d), _, _) => d,
                        (None, Some(_), RetentionRuleKind::Default) => String::new(),
                        (None, _, _) => return None,
                    };
                    Some(RetentionRule {
                        kind: kind as i32,
                        standard_duration: standard,
                        archive_duration: archive.unwrap_or_default(),
                    })
                })
                .collect();
            let policy = Policy {
                verify_schedule: verify.map(|v| v.schedule(time_zone.as_deref())),
                drill_schedule: drill.map(|v| v.schedule(time_zone.as_deref())),
                schedule: Some(Schedule {
                    weekdays: weekdays.into_iter().map(|d| d as i32).collect(),
                    time_of_day: at.unwrap_or_default(),
                    time_zone: time_zone.unwrap_or_default(),
                }),
                retention_rules,
                keep_min: keep_min.unwrap_or_default(),
                copy_datastore: copy_to.unwrap_or_default(),
                copy_retention: copy_retention.unwrap_or_default(),
                drill_server: drill_server.unwrap_or_default(),
                drill_secret: drill_secret.unwrap_or_default(),
                drill_every: drill_every.unwrap_or_default(),
                ..Policy::default()
            };
            let request = CreatePolicyRequest {
                parent,
                policy_id,
                policy: Some(policy),
            };
            let policy = api.policies().create_policy(request).await.reply(api)?;
            show(api, &policy);
        }
        PolicyCommand::Get { name, vault } => {
            let request = GetPolicyRequest {
                name: names::policy(vault.as_deref(), &name)?,
            };
            let policy = api.policies().get_policy(request).await.reply(api)?;
            show(api, &policy);
        }
        PolicyCommand::Show {
            name,
            vault,
            format,
        } => {
            let request = GetPolicyRequest {
                name: names::policy(vault.as_deref(), &name)?,
            };
            let policy = api.policies().get_policy(request).await.reply(api)?;
            print!("{}", policy_file::render(&policy, format)?);
        }
        PolicyCommand::List { vault } => list(api, names::vault(&vault)?).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(api: &Api, parent: String) -> anyhow::Result<()> {
    let policies = paging::all_pages(|page_token| {
        let request = ListPoliciesRequest {
            parent: parent.clone(),
            page_size: 0,
            page_token,
        };
        async move {
            let page = api.policies().list_policies(request).await.reply(api)?;
            Ok((page.policies, page.next_page_token))
        }
    })
    .await?;
    if api.json() {
        print_json(&json::page(
            "policies",
            policies.iter().map(json::policy).collect(),
            "",
        ));
        return Ok(());
    }
    let rows = policies
        .iter()
        .map(|p| {
            let schedule = p.schedule.clone().unwrap_or_default();
            vec![
                names::short(&p.name).to_owned(),
                weekdays_text(&schedule.weekdays),
                schedule.time_of_day.clone(),
                time_zone_text(&schedule.time_zone),
                retention_text(&p.retention_rules),
                local_time(p.create_time.as_ref()),
            ]
        })
        .collect();
    print_list(
        &[
            "NAME",
            "WEEKDAYS",
            "AT",
            "TIME ZONE",
            "RETENTION",
            "CREATED",
        ],
        rows,
        &format!("no policies in {parent}"),
    );
    Ok(())
}

fn show(api: &Api, policy: &Policy) {
    if api.json() {
        print_json(&json::policy(policy));
        return;
    }
    let schedule = policy.schedule.clone().unwrap_or_default();
    print_details(&[
        ("NAME", names::short(&policy.name).to_owned()),
        ("VAULT", names::vault_of(&policy.name).to_owned()),
        ("WEEKDAYS", weekdays_text(&schedule.weekdays)),
        ("AT", schedule.time_of_day.clone()),
        ("TIME ZONE", time_zone_text(&schedule.time_zone)),
        ("RETENTION", retention_text(&policy.retention_rules)),
        ("KEEP MIN", policy.keep_min.to_string()),
        ("COPY TO", or_dash(&policy.copy_datastore)),
        ("COPY RETENTION", or_dash(&policy.copy_retention)),
        ("VERIFY", verify_text(policy.verify_schedule.as_ref())),
        ("DRILL", drill_text(policy)),
        ("CREATED", local_time(policy.create_time.as_ref())),
    ]);
}

/// "sun at 03:00 (UTC)"; "-" when the policy verifies on no schedule.
fn verify_text(schedule: Option<&Schedule>) -> String {
    match schedule {
        Some(s) => format!(
            "{} at {} ({})",
            weekdays_text(&s.weekdays),
            s.time_of_day,
            time_zone_text(&s.time_zone)
        ),
        None => "-".to_owned(),
    }
}

/// "on db-drill (secrets/drill) after every 2 backups, sun at 04:00 (UTC)";
/// "-" when none.
fn drill_text(policy: &Policy) -> String {
    if policy.drill_server.is_empty() {
        return "-".to_owned();
    }
    let mut when = Vec::new();
    match policy.drill_every {
        0 => {}
        1 => when.push("after every backup".to_owned()),
        n => when.push(format!("after every {n} backups")),
    }
    if policy.drill_schedule.is_some() {
        when.push(verify_text(policy.drill_schedule.as_ref()));
    }
    format!(
        "on {} ({}) {}",
        policy.drill_server,
        policy.drill_secret,
        when.join(", ")
    )
}

/// `--verify` and `--drill`: the weekdays and time of day of a policy's
/// verify or drill schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyAt {
    pub weekdays: Vec<Weekday>,
    pub at: String,
}

impl VerifyAt {
    /// The API's schedule in `time_zone` (the policy's; `None`: UTC).
    fn schedule(self, time_zone: Option<&str>) -> Schedule {
        Schedule {
            weekdays: self.weekdays.into_iter().map(|d| d as i32).collect(),
            time_of_day: self.at,
            time_zone: time_zone.unwrap_or_default().to_owned(),
        }
    }
}

/// `weekly:sun@03:00` or `mon,thu@03:00` → [`VerifyAt`].
pub fn parse_verify_schedule(input: &str) -> Result<VerifyAt, String> {
    let text = input.trim();
    let text = text.strip_prefix("weekly:").unwrap_or(text);
    let (days, at) = text.split_once('@').ok_or_else(|| {
        format!("\"{input}\" is not a weekly schedule; use DAYS@HH:MM, e.g. weekly:sun@03:00 or mon,thu@03:00")
    })?;
    let weekdays = days
        .split(',')
        .map(parse_weekday)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(VerifyAt {
        weekdays,
        at: parse_time_of_day(at)?,
    })
}

fn time_zone_text(zone: &str) -> String {
    if zone.is_empty() {
        "UTC".to_owned()
    } else {
        zone.to_owned()
    }
}

/// "mon,thu".
fn weekdays_text(days: &[i32]) -> String {
    let names: Vec<&str> = days
        .iter()
        .map(|d| match Weekday::try_from(*d) {
            Ok(Weekday::Monday) => "mon",
            Ok(Weekday::Tuesday) => "tue",
            Ok(Weekday::Wednesday) => "wed",
            Ok(Weekday::Thursday) => "thu",
            Ok(Weekday::Friday) => "fri",
            Ok(Weekday::Saturday) => "sat",
            Ok(Weekday::Sunday) => "sun",
            _ => "?",
        })
        .collect();
    or_dash(&names.join(","))
}

/// "default P3M, monthly P12M (archive P5Y)".
fn retention_text(rules: &[RetentionRule]) -> String {
    let parts: Vec<String> = rules
        .iter()
        .map(|rule| {
            let kind = RetentionRuleKind::try_from(rule.kind)
                .map(|k| short_name(k).to_lowercase())
                .unwrap_or_else(|_| rule.kind.to_string());
            let standard = if rule.standard_duration.is_empty() {
                "default"
            } else {
                &rule.standard_duration
            };
            if rule.archive_duration.is_empty() {
                format!("{kind} {standard}")
            } else {
                format!("{kind} {standard} (archive {})", rule.archive_duration)
            }
        })
        .collect();
    or_dash(&parts.join(", "))
}

/// `mon`, `monday` or `Mon` → [`Weekday::Monday`].
pub fn parse_weekday(input: &str) -> Result<Weekday, String> {
    let day = match input.trim().to_ascii_lowercase().as_str() {
        "mon" | "monday" => Weekday::Monday,
        "tue" | "tuesday" => Weekday::Tuesday,
        "wed" | "wednesday" => Weekday::Wednesday,
        "thu" | "thursday" => Weekday::Thursday,
        "fri" | "friday" => Weekday::Friday,
        "sat" | "saturday" => Weekday::Saturday,
        "sun" | "sunday" => Weekday::Sunday,
        _ => {
            return Err(format!(
                "\"{input}\" is not a weekday; use mon, tue, wed, thu, fri, sat or sun"
            ));
        }
    };
    Ok(day)
}

/// `2:30` or `02:30` → `"02:30"`.
pub fn parse_time_of_day(input: &str) -> Result<String, String> {
    chrono::NaiveTime::parse_from_str(input.trim(), "%H:%M")
        .map(|t| t.format("%H:%M").to_string())
        .map_err(|_| format!("\"{input}\" is not a time of day; use HH:MM (24 h), e.g. 02:30"))
}

/// An ISO 8601 date duration: `P` followed by numbers with `Y`, `M`, `W` or `D`.
/// A copy retention: an ISO 8601 duration, or its short form without the
/// leading P (`30d`, `12w`).
pub fn parse_copy_retention(input: &str) -> Result<String, String> {
    let trimmed = input.trim();
    if trimmed.starts_with(|c: char| c.is_ascii_digit()) {
        return parse_duration(&format!("P{trimmed}"));
    }
    parse_duration(trimmed)
}

pub fn parse_duration(input: &str) -> Result<String, String> {
    let duration = input.trim().to_ascii_uppercase();
    let invalid =
        || format!("\"{input}\" is not an ISO 8601 duration; use e.g. P7D, P12W, P3M or P10Y");
    let body = duration.strip_prefix('P').ok_or_else(invalid)?;
    if body.is_empty() {
        return Err(invalid());
    }
    let mut digits = 0;
    for c in body.chars() {
        match c {
            '0'..='9' => digits += 1,
            'Y' | 'M' | 'W' | 'D' if digits > 0 => digits = 0,
            _ => return Err(invalid()),
        }
    }
    if digits > 0 {
        return Err(invalid());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_retention_reads_iso_and_short_forms() {
        assert_eq!(parse_copy_retention("30d"), Ok("P30D".into()));
        assert_eq!(parse_copy_retention("P12W"), Ok("P12W".into()));
        assert!(parse_copy_retention("soon").is_err());
    }

    #[test]
    fn weekdays_parse_short_and_long_names() {
        assert_eq!(parse_weekday("mon"), Ok(Weekday::Monday));
        assert_eq!(parse_weekday("Thursday"), Ok(Weekday::Thursday));
        assert!(
            parse_weekday("funday")
                .unwrap_err()
                .contains("not a weekday")
        );
        assert_eq!(
            weekdays_text(&[Weekday::Monday as i32, Weekday::Thursday as i32]),
            "mon,thu"
        );
    }

    #[test]
    fn policy_show_prints_the_drill_frequency_and_schedule() {
        let mut policy = Policy {
            drill_server: "drill-db".into(),
            drill_secret: "secrets/drill".into(),
            drill_every: 7,
            ..Policy::default()
        };
        assert_eq!(
            drill_text(&policy),
            "on drill-db (secrets/drill) after every 7 backups"
        );
        policy.drill_schedule = Some(
            parse_verify_schedule("weekly:sun@04:00")
                .unwrap()
                .schedule(None),
        );
        assert_eq!(
            drill_text(&policy),
            "on drill-db (secrets/drill) after every 7 backups, sun at 04:00 (UTC)"
        );
        policy.drill_every = 0;
        assert_eq!(
            drill_text(&policy),
            "on drill-db (secrets/drill) sun at 04:00 (UTC)"
        );
        assert_eq!(drill_text(&Policy::default()), "-");
    }

    #[test]
    fn verify_schedules_read_days_and_a_time() {
        let weekly = parse_verify_schedule("weekly:sun@3:00").unwrap();
        assert_eq!(weekly.weekdays, vec![Weekday::Sunday]);
        assert_eq!(weekly.at, "03:00");
        let two = parse_verify_schedule("mon,thu@23:15").unwrap();
        assert_eq!(two.weekdays, vec![Weekday::Monday, Weekday::Thursday]);
        let error = parse_verify_schedule("sunday 03:00").unwrap_err();
        assert!(error.contains("weekly:sun@03:00"), "{error}");
        assert!(parse_verify_schedule("sun@25:00").is_err());
    }

    #[test]
    fn times_of_day_are_normalized() {
        assert_eq!(parse_time_of_day("2:30").as_deref(), Ok("02:30"));
        assert_eq!(parse_time_of_day("23:59").as_deref(), Ok("23:59"));
        assert!(parse_time_of_day("24:00").is_err());
        assert!(parse_time_of_day("2pm").is_err());
    }

    #[test]
    fn durations_are_iso_8601_date_durations() {
        assert_eq!(parse_duration("p3m").as_deref(), Ok("P3M"));
        assert_eq!(parse_duration("P1Y6M").as_deref(), Ok("P1Y6M"));
        for bad in ["3M", "P", "PM", "P3", "P3H", "P1.5Y"] {
            assert!(parse_duration(bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn retention_reads_naturally() {
        let rules = [
            RetentionRule {
                kind: RetentionRuleKind::Default as i32,
                standard_duration: "P3M".into(),
                ..Default::default()
            },
            RetentionRule {
                kind: RetentionRuleKind::Monthly as i32,
                standard_duration: "P12M".into(),
                archive_duration: "P5Y".into(),
            },
        ];
        assert_eq!(
            retention_text(&rules),
            "default P3M, monthly P12M (archive P5Y)"
        );
        assert_eq!(retention_text(&[]), "-");
    }
}
