//! The contract's `StageSplit` to and from [`StageSplit`]: what a worker
//! reports is checked once here (finite, non-negative seconds; short
//! snake_case names; a bounded number of entries) before it is stored.

use pgvault_proto::v1 as pb;

use crate::error::{CoordinatorError, Result};
use crate::model::{StageSplit, StageTime};

/// Most entries of one list of a split (the engine reports about a dozen).
const MAX_ENTRIES: usize = 64;
/// Longest stage or phase name.
const MAX_NAME: usize = 40;

fn seconds(value: f64, field: &str) -> Result<f64> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(CoordinatorError::invalid(
            field,
            format!("{value} is not a number of seconds; send finite, non-negative seconds"),
        ))
    }
}

fn times(given: Vec<pb::StageTime>, field: &str) -> Result<Vec<StageTime>> {
    if given.len() > MAX_ENTRIES {
        return Err(CoordinatorError::invalid(
            field,
            format!("{} entries; send at most {MAX_ENTRIES}", given.len()),
        ));
    }
    given
        .into_iter()
        .map(|t| {
            let named = !t.name.is_empty()
                && t.name.len() <= MAX_NAME
                && t.name.chars().all(|c| c.is_ascii_lowercase() || c == '_' || c == ' ' || c == '-');
            if !named {
                return Err(CoordinatorError::invalid(
                    field,
                    format!(
                        "{:?} is not a stage name; use up to {MAX_NAME} lowercase letters, spaces, '-' or '_'",
                        t.name.chars().take(MAX_NAME + 1).collect::<String>()
                    ),
                ));
            }
            Ok(StageTime {
                seconds: seconds(t.seconds, field)?,
                name: t.name,
            })
        })
        .collect()
}

impl TryFrom<pb::StageSplit> for StageSplit {
    type Error = CoordinatorError;

    fn try_from(s: pb::StageSplit) -> Result<Self> {
        Ok(StageSplit {
            wall_seconds: seconds(s.wall_seconds, "stage_split.wall_seconds")?,
            raw_bytes: s.raw_bytes,
            stored_bytes: s.stored_bytes,
            connections: s.connections,
            phases: times(s.phases, "stage_split.phases")?,
            connection_stages: times(s.connection_stages, "stage_split.connection_stages")?,
            cpu: times(s.cpu, "stage_split.cpu")?,
            side_tasks: times(s.side_tasks, "stage_split.side_tasks")?,
        }
        .without_legacy_schema_lane())
    }
}

fn to_pb(times: Vec<StageTime>) -> Vec<pb::StageTime> {
    times
        .into_iter()
        .map(|t| pb::StageTime {
            name: t.name,
            seconds: t.seconds,
        })
        .collect()
}

impl From<StageSplit> for pb::StageSplit {
    fn from(s: StageSplit) -> Self {
        pb::StageSplit {
            wall_seconds: s.wall_seconds,
            raw_bytes: s.raw_bytes,
            stored_bytes: s.stored_bytes,
            connections: s.connections,
            phases: to_pb(s.phases),
            connection_stages: to_pb(s.connection_stages),
            cpu: to_pb(s.cpu),
            side_tasks: to_pb(s.side_tasks),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split() -> pb::StageSplit {
        pb::StageSplit {
            wall_seconds: 12.5,
            raw_bytes: 1 << 30,
            stored_bytes: 1 << 28,
            connections: 4,
            phases: vec![pb::StageTime {
                name: "final flush".into(),
                seconds: 0.25,
            }],
            connection_stages: vec![pb::StageTime {
                name: "copy_out_wait".into(),
                seconds: 30.0,
            }],
            cpu: vec![],
            side_tasks: vec![pb::StageTime {
                name: "schema_dump".into(),
                seconds: 1.5,
            }],
        }
    }

    #[test]
    fn a_reported_split_round_trips_and_bad_values_are_refused_by_field() {
        let domain = StageSplit::try_from(split()).unwrap();
        assert_eq!(pb::StageSplit::from(domain), split());

        let mut nan = split();
        nan.connection_stages[0].seconds = f64::NAN;
        let err = StageSplit::try_from(nan).unwrap_err();
        assert!(
            err.to_string().contains("stage_split.connection_stages"),
            "{err}"
        );

        let mut negative = split();
        negative.wall_seconds = -1.0;
        assert!(StageSplit::try_from(negative).is_err());

        let mut odd = split();
        odd.phases[0].name = "DROP TABLE x;".into();
        let err = StageSplit::try_from(odd).unwrap_err();
        assert!(err.to_string().contains("stage name"), "{err}");

        let mut many = split();
        many.cpu = (0..65)
            .map(|_| pb::StageTime {
                name: "x".into(),
                seconds: 1.0,
            })
            .collect();
        assert!(StageSplit::try_from(many).is_err());
    }
}
