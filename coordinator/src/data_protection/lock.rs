//! What a locked (immutable) vault refuses. A lock is set once
//! (`pgvault vault lock`, Owner only) and never removed. In a locked vault:
//! - no recovery point can be deleted (soft delete, stop with delete) and
//!   the vault itself cannot be deleted;
//! - no point can expire earlier: an instance may only move to a policy
//!   whose every rule keeps points at least as long (standard and archive
//!   periods, rule by rule, a missing rule counting as the DEFAULT one) and
//!   whose `keep_min` is not lower, and that keeps copying to a second
//!   datastore at least as long; re-applied retention only extends
//!   expiries (copies already made keep their own expiry);
//! - the soft-delete window cannot shrink (so soft delete, which has no
//!   off switch, cannot be weakened either);
//! - unlocking is refused.
//!
//! Every refusal carries `UserErrorVaultLocked` and says what was refused.

use pgvault_errors::ErrorCode;

use crate::error::{CoordinatorError, Result};
use crate::model::{Policy, RuleKind, Vault};
use crate::retention::{IsoDuration, RetentionRule};

/// The refusal of `what` in the locked `vault`.
pub fn refusal(vault: &Vault, what: &str) -> CoordinatorError {
    let since = vault
        .lock_time
        .map(|t| format!(" since {}", t.format("%Y-%m-%d %H:%M UTC")))
        .unwrap_or_default();
    CoordinatorError::refused(
        ErrorCode::UserErrorVaultLocked,
        format!("vault \"{}\" is locked{since}: {what}", vault.id),
    )
}

/// Refuses `what` when `vault` is locked.
pub fn ensure_unlocked(vault: &Vault, what: &str) -> Result<()> {
    if vault.is_locked() {
        return Err(refusal(vault, what));
    }
    Ok(())
}

/// Refuses moving an instance of a locked vault from `old` to `new` when
/// `new` would keep any point for less time.
pub fn check_policy_change(vault: &Vault, old: &Policy, new: &Policy) -> Result<()> {
    if !vault.is_locked() {
        return Ok(());
    }
    match shortening(old, new) {
        Some(why) => Err(refusal(
            vault,
            &format!(
                "policy \"{}\" would shorten retention ({why}); a locked vault's retention can only be kept or lengthened",
                new.id
            ),
        )),
        None => Ok(()),
    }
}

/// Refuses shrinking the soft-delete window of a locked vault.
pub fn check_window_change(vault: &Vault, days: u32) -> Result<()> {
    if vault.is_locked() && days < vault.soft_delete_days {
        return Err(refusal(
            vault,
            &format!(
                "its soft-delete window cannot shrink from {} to {days} days",
                vault.soft_delete_days
            ),
        ));
    }
    Ok(())
}

/// The rule through which `policy` keeps points tagged `kind`.
fn effective(policy: &Policy, kind: RuleKind) -> Option<&RetentionRule> {
    policy.rule(kind).or_else(|| policy.rule(RuleKind::Default))
}

fn days(text: &str) -> f64 {
    IsoDuration::parse(text).map_or(0.0, IsoDuration::approx_days)
}

/// What in `new` keeps points for less time than `old`, if anything.
pub fn shortening(old: &Policy, new: &Policy) -> Option<String> {
    if new.keep_min < old.keep_min {
        return Some(format!(
            "keep-min {} is lower than {}",
            new.keep_min, old.keep_min
        ));
    }
    if let Some(before) = &old.copy {
        match &new.copy {
            None => return Some(format!("it makes no copies to {}", before.datastore_url)),
            Some(after) if days(&after.retention) < days(&before.retention) => {
                return Some(format!(
                    "it keeps copies {} instead of {}",
                    after.retention, before.retention
                ));
            }
            Some(_) => {}
        }
    }
    for &kind in RuleKind::ALL {
        let (Some(before), Some(after)) = (effective(old, kind), effective(new, kind)) else {
            continue;
        };
        if days(&after.standard_duration) < days(&before.standard_duration) {
            return Some(format!(
                "rule {kind} keeps points {} instead of {}",
                after.standard_duration, before.standard_duration
            ));
        }
        if days(&after.archive_duration) < days(&before.archive_duration) {
            let archive = |d: &str| {
                if d.is_empty() {
                    "no archive period".to_string()
                } else {
                    format!("archive period {d}")
                }
            };
            return Some(format!(
                "rule {kind} has {} instead of {}",
                archive(&after.archive_duration),
                archive(&before.archive_duration)
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::model::Schedule;
    use crate::retention::build_rule;

    fn policy(id: &str, rules: &[(RuleKind, &str, &str)], keep_min: u32) -> Policy {
        Policy {
            verify_schedule: None,
            drill: None,
            vault_id: "v".into(),
            id: id.into(),
            schedule: Schedule {
                weekdays: vec![1],
                time_of_day: "02:00".into(),
                time_zone: "UTC".into(),
            },
            retention_rules: rules
                .iter()
                .map(|(k, s, a)| build_rule(*k, s, a).unwrap())
                .collect(),
            keep_min,
            copy: None,
            create_time: Utc::now(),
        }
    }

    fn vault(locked: bool) -> Vault {
        Vault {
            id: "v".into(),
            region: String::new(),
            standard_datastore: "file:///x".into(),
            archive_datastore: String::new(),
            description: String::new(),
            create_time: Utc::now(),
            soft_delete_days: 14,
            lock_time: locked.then(|| Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 0).unwrap()),
            encryption: crate::model::Encryption::None,
            key_version: 0,
        }
    }

    #[test]
    fn a_shorter_rule_a_lost_archive_period_or_a_lower_floor_is_a_shortening() {
        let old = policy(
            "old",
            &[
                (RuleKind::Default, "P30D", "P6M"),
                (RuleKind::Weekly, "P12W", ""),
            ],
            3,
        );
        let same = policy("same", &[(RuleKind::Default, "P30D", "P6M")], 3);
        // WEEKLY falls back to the 30-day DEFAULT: shorter than 12 weeks.
        assert!(shortening(&old, &same).unwrap().contains("WEEKLY"));
        let longer = policy(
            "longer",
            &[
                (RuleKind::Default, "P2M", "P1Y"),
                (RuleKind::Weekly, "P1Y", ""),
            ],
            5,
        );
        assert_eq!(shortening(&old, &longer), None);
        let no_archive = policy(
            "na",
            &[
                (RuleKind::Default, "P30D", ""),
                (RuleKind::Weekly, "P12W", ""),
            ],
            3,
        );
        assert!(
            shortening(&old, &no_archive)
                .unwrap()
                .contains("no archive period")
        );
        let lower = policy(
            "low",
            &[
                (RuleKind::Default, "P30D", "P6M"),
                (RuleKind::Weekly, "P12W", ""),
            ],
            1,
        );
        assert!(shortening(&old, &lower).unwrap().contains("keep-min 1"));
    }

    #[test]
    fn dropping_copies_or_keeping_them_for_less_time_is_a_shortening() {
        let copy = |retention: &str| {
            Some(crate::model::CopyRule {
                datastore_url: "az://copies".into(),
                retention: retention.into(),
            })
        };
        let mut old = policy("old", &[(RuleKind::Default, "P30D", "")], 3);
        old.copy = copy("P30D");
        let mut none = policy("none", &[(RuleKind::Default, "P30D", "")], 3);
        none.copy = None;
        assert!(shortening(&old, &none).unwrap().contains("no copies"));
        let mut short = none.clone();
        short.copy = copy("P7D");
        assert!(
            shortening(&old, &short)
                .unwrap()
                .contains("copies P7D instead of P30D")
        );
        let mut long = none.clone();
        long.copy = copy("P90D");
        assert_eq!(shortening(&old, &long), None);
        assert_eq!(shortening(&none, &old), None);
    }

    #[test]
    fn a_locked_vault_refuses_with_the_stable_code_and_says_why() {
        let old = policy("old", &[(RuleKind::Default, "P30D", "")], 3);
        let short = policy("short", &[(RuleKind::Default, "P7D", "")], 3);
        assert!(check_policy_change(&vault(false), &old, &short).is_ok());
        let error = check_policy_change(&vault(true), &old, &short)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("UserErrorVaultLocked: vault \"v\" is locked since 2026-01-02 03:04 UTC: policy \"short\" would shorten retention"),
            "{error}"
        );
        assert!(check_window_change(&vault(true), 30).is_ok());
        let error = check_window_change(&vault(true), 7)
            .unwrap_err()
            .to_string();
        assert!(error.contains("cannot shrink from 14 to 7 days"), "{error}");
        assert!(ensure_unlocked(&vault(false), "x").is_ok());
        assert!(ensure_unlocked(&vault(true), "x").is_err());
    }
}
