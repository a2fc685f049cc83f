//! The names the CLI gives proto enum values in `--output json`, policy
//! files and tables: the proto value name without its type's prefix
//! (`JOB_STATE_COMPLETED` → `COMPLETED`, `WEEKDAY_MONDAY` → `MONDAY`).
//!
//! The contract's values carry their type's prefix (AIP-126); the CLI's
//! output predates that and scripts read it, so this is the one place that
//! turns one into the other. Four types were printed with a shorter prefix
//! of their own before (`PROTECTION_CONFIGURED`, `ATTEMPT_COMPLETED`,
//! `SUB_TASK_DONE`, `RESTORE_AS_DATABASE`): they keep it. Unspecified
//! values keep their full proto name (`JOB_STATE_UNSPECIFIED`), as before.

use pgvault_proto::v1::{
    AttemptOutcome, DatastoreTier, JobState, Operation, ProtectionState, Readiness, RestoreKind,
    RetentionRuleKind, StopMode, TableState, Weekday,
};

/// A proto enum the CLI names by its short name.
pub trait ShortNamed: Copy + PartialEq + TryFrom<i32> {
    /// The prefix every value name of the type carries (`"JOB_STATE_"`).
    const PREFIX: &'static str;
    /// What stands in its place in the short name (`""` for most types).
    const SHOWN_PREFIX: &'static str;
    /// The value 0.
    const UNSPECIFIED: Self;
    /// The full proto value name.
    fn proto_name(self) -> &'static str;
    /// The value with this full proto name.
    fn from_proto_name(name: &str) -> Option<Self>;
}

macro_rules! short_named {
    ($ty:ty, $prefix:literal, $shown:literal) => {
        impl ShortNamed for $ty {
            const PREFIX: &'static str = $prefix;
            const SHOWN_PREFIX: &'static str = $shown;
            const UNSPECIFIED: Self = <$ty>::Unspecified;
            fn proto_name(self) -> &'static str {
                self.as_str_name()
            }
            fn from_proto_name(name: &str) -> Option<Self> {
                <$ty>::from_str_name(name)
            }
        }
    };
}

short_named!(Operation, "OPERATION_", "");
short_named!(JobState, "JOB_STATE_", "");
short_named!(AttemptOutcome, "ATTEMPT_OUTCOME_", "ATTEMPT_");
short_named!(TableState, "TABLE_STATE_", "SUB_TASK_");
short_named!(RestoreKind, "RESTORE_KIND_", "RESTORE_AS_");
short_named!(Weekday, "WEEKDAY_", "");
short_named!(RetentionRuleKind, "RETENTION_RULE_KIND_", "");
short_named!(ProtectionState, "PROTECTION_STATE_", "PROTECTION_");
short_named!(DatastoreTier, "DATASTORE_TIER_", "");
short_named!(Readiness, "READINESS_", "");
short_named!(StopMode, "STOP_MODE_", "");

/// The value's short name (`COMPLETED`); unspecified: its full proto name.
pub fn short_name<T: ShortNamed>(value: T) -> String {
    let full = value.proto_name();
    if value == T::UNSPECIFIED {
        return full.to_owned();
    }
    match full.strip_prefix(T::PREFIX) {
        Some(rest) => format!("{}{rest}", T::SHOWN_PREFIX),
        None => full.to_owned(),
    }
}

/// The value a short name (any case) names; `None` for anything else,
/// including full proto names and the unspecified value.
pub fn from_short_name<T: ShortNamed>(text: &str) -> Option<T> {
    let upper = text.to_ascii_uppercase();
    let rest = upper.strip_prefix(T::SHOWN_PREFIX)?;
    T::from_proto_name(&format!("{}{rest}", T::PREFIX)).filter(|v| *v != T::UNSPECIFIED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_what_the_cli_printed_before_the_prefixes() {
        assert_eq!(short_name(JobState::Completed), "COMPLETED");
        assert_eq!(short_name(Operation::ScheduledBackup), "SCHEDULED_BACKUP");
        assert_eq!(short_name(DatastoreTier::Standard), "STANDARD");
        assert_eq!(short_name(Weekday::Monday), "MONDAY");
        assert_eq!(short_name(RetentionRuleKind::Default), "DEFAULT");
        assert_eq!(short_name(Readiness::FailedValidation), "FAILED_VALIDATION");
        assert_eq!(short_name(StopMode::KeepAllForever), "KEEP_ALL_FOREVER");
        assert_eq!(
            short_name(ProtectionState::ValidationFailed),
            "PROTECTION_VALIDATION_FAILED"
        );
        assert_eq!(short_name(AttemptOutcome::Completed), "ATTEMPT_COMPLETED");
        assert_eq!(short_name(TableState::Done), "SUB_TASK_DONE");
        assert_eq!(short_name(RestoreKind::Files), "RESTORE_AS_FILES");
    }

    #[test]
    fn unspecified_values_keep_their_full_name() {
        assert_eq!(short_name(JobState::Unspecified), "JOB_STATE_UNSPECIFIED");
        assert_eq!(
            short_name(RetentionRuleKind::Unspecified),
            "RETENTION_RULE_KIND_UNSPECIFIED"
        );
    }

    #[test]
    fn short_names_parse_in_any_case_and_nothing_else_does() {
        assert_eq!(from_short_name("monthly"), Some(RetentionRuleKind::Monthly));
        assert_eq!(from_short_name("Sunday"), Some(Weekday::Sunday));
        assert_eq!(
            from_short_name("protection_stopped"),
            Some(ProtectionState::Stopped)
        );
        assert_eq!(from_short_name::<Weekday>("WEEKDAY_MONDAY"), None);
        assert_eq!(from_short_name::<Weekday>("UNSPECIFIED"), None);
        assert_eq!(from_short_name::<RetentionRuleKind>("hourly"), None);
        assert_eq!(from_short_name::<ProtectionState>("STOPPED"), None);
    }

    #[test]
    fn every_value_round_trips_through_its_short_name() {
        fn round_trip<T: ShortNamed + std::fmt::Debug>() {
            for n in 1..32 {
                if let Ok(value) = T::try_from(n) {
                    assert_eq!(from_short_name::<T>(&short_name(value)), Some(value));
                }
            }
        }
        round_trip::<Operation>();
        round_trip::<JobState>();
        round_trip::<AttemptOutcome>();
        round_trip::<TableState>();
        round_trip::<RestoreKind>();
        round_trip::<Weekday>();
        round_trip::<RetentionRuleKind>();
        round_trip::<ProtectionState>();
        round_trip::<DatastoreTier>();
        round_trip::<Readiness>();
        round_trip::<StopMode>();
    }
}
