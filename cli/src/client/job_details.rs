//! How a job's attempts and per-table progress read for people: the
//! Attempts and Tables tables of `job show` (tables running or failed
//! first, then the largest), a failed attempt's last log lines, and the
//! one-line table summaries `job watch` shows next to its bar.

use std::cmp::Reverse;

use pgvault_proto::v1::{AttemptOutcome, Job, JobAttempt, TableProgress, TableState};

use super::names;
use super::output::{bytes, duration_between, list_table, local_time, or_dash};

/// Most tables `job show` lists; `--json` has them all.
pub const SHOWN_TABLES: usize = 100;

pub fn outcome_text(outcome: i32) -> &'static str {
    match AttemptOutcome::try_from(outcome) {
        Ok(AttemptOutcome::Running) => "running",
        Ok(AttemptOutcome::Completed) => "completed",
        Ok(AttemptOutcome::Failed) => "failed",
        Ok(AttemptOutcome::LeaseExpired) => "lease expired",
        Ok(AttemptOutcome::Fenced) => "taken over",
        Ok(AttemptOutcome::Cancelled) => "cancelled",
        _ => "unknown",
    }
}

pub fn table_state_text(state: i32) -> &'static str {
    match TableState::try_from(state) {
        Ok(TableState::Queued) => "queued",
        Ok(TableState::Running) => "running",
        Ok(TableState::Done) => "done",
        Ok(TableState::Failed) => "failed",
        _ => "unknown",
    }
}

fn attempt_row(a: &JobAttempt) -> Vec<String> {
    let error = a
        .error
        .as_ref()
        .map(|e| format!("{}: {}", e.code, e.message))
        .unwrap_or_default();
    vec![
        a.attempt.to_string(),
        or_dash(&a.worker),
        or_dash(names::short(&a.agent)),
        local_time(a.start_time.as_ref()),
        or_dash(&duration_between(
            a.start_time.as_ref(),
            a.end_time.as_ref(),
        )),
        outcome_text(a.outcome).to_owned(),
        or_dash(&error),
    ]
}

/// The Attempts table, oldest first; `None` when the job has none.
pub fn attempts_table(job: &Job) -> Option<String> {
    if job.attempts.is_empty() {
        return None;
    }
    Some(list_table(
        &[
            "ATTEMPT", "WORKER", "AGENT", "STARTED", "DURATION", "OUTCOME", "ERROR",
        ],
        job.attempts.iter().map(attempt_row).collect(),
    ))
}

/// The last log lines of each attempt that sent some (failed ones), under
/// a heading naming the attempt and who ran it; `None` when none did.
pub fn log_tails(job: &Job) -> Option<String> {
    let sections: Vec<String> = job
        .attempts
        .iter()
        .filter(|a| !a.log_tail.is_empty())
        .map(|a| {
            let by = match (a.agent.is_empty(), a.worker.is_empty()) {
                (false, _) => format!("agent {} ({})", names::short(&a.agent), or_dash(&a.worker)),
                (true, false) => format!("worker {}", a.worker),
                (true, true) => "an unknown runner".to_owned(),
            };
            let lines: Vec<String> = a.log_tail.iter().map(|l| format!("  {l}")).collect();
            format!(
                "LOG OF ATTEMPT {} (last {} lines, {by})\n{}",
                a.attempt,
                a.log_tail.len(),
                lines.join("\n")
            )
        })
        .collect();
    (!sections.is_empty()).then(|| sections.join("\n\n"))
}

/// Running tables first, then failed ones, then the rest largest first.
pub fn ordered(tables: &[TableProgress]) -> Vec<&TableProgress> {
    let rank = |t: &TableProgress| match TableState::try_from(t.state) {
        Ok(TableState::Running) => 0,
        Ok(TableState::Failed) => 1,
        _ => 2,
    };
    let mut sorted: Vec<&TableProgress> = tables.iter().collect();
    sorted.sort_by(|a, b| {
        (rank(a), Reverse(a.raw_bytes), &a.name).cmp(&(rank(b), Reverse(b.raw_bytes), &b.name))
    });
    sorted
}

fn chunks_text(t: &TableProgress) -> String {
    format!("{}/{}", t.chunks_done, t.chunks_total)
}

fn table_row(t: &TableProgress) -> Vec<String> {
    vec![
        t.name.clone(),
        table_state_text(t.state).to_owned(),
        chunks_text(t),
        t.rows.to_string(),
        bytes(t.raw_bytes),
        or_dash(&duration_between(
            t.start_time.as_ref(),
            t.end_time.as_ref(),
        )),
    ]
}

/// The Tables table (at most [`SHOWN_TABLES`] rows, with a note on the
/// rest); `None` when the job has no tables.
pub fn tables_table(job: &Job) -> Option<String> {
    if job.table_progress.is_empty() {
        return None;
    }
    let sorted = ordered(&job.table_progress);
    let mut text = list_table(
        &["TABLE", "STATE", "CHUNKS", "ROWS", "SIZE", "DURATION"],
        sorted
            .iter()
            .take(SHOWN_TABLES)
            .map(|t| table_row(t))
            .collect(),
    );
    if sorted.len() > SHOWN_TABLES {
        text.push_str(&format!(
            "\n… and {} more tables (all of them with --json)",
            sorted.len() - SHOWN_TABLES
        ));
    }
    Some(text)
}

/// A running table next to the overall bar, e.g.
/// "public.orders 2/5 chunks, 12000 rows, 3.00 MiB".
pub fn table_line(t: &TableProgress) -> String {
    format!(
        "{} {} chunks, {} rows, {}",
        t.name,
        chunks_text(t),
        t.rows,
        bytes(t.raw_bytes)
    )
}

/// Plain-output line of a table that started or finished, e.g.
/// "table public.orders done: 5/5 chunks, 30000 rows, 8.00 MiB".
pub fn table_event_line(t: &TableProgress) -> String {
    format!(
        "table {} {}: {} chunks, {} rows, {}",
        t.name,
        table_state_text(t.state),
        chunks_text(t),
        t.rows,
        bytes(t.raw_bytes)
    )
}

#[cfg(test)]
mod tests {
    use pgvault_proto::v1::JobError;
    use prost_types::Timestamp;

    use super::*;

    fn table(name: &str, state: TableState, raw_bytes: u64) -> TableProgress {
        TableProgress {
            name: name.into(),
            state: state as i32,
            chunks_done: 1,
            chunks_total: 2,
            rows: 10,
            raw_bytes,
            stored_bytes: 0,
            start_time: Some(Timestamp {
                seconds: 100,
                nanos: 0,
            }),
            end_time: Some(Timestamp {
                seconds: 165,
                nanos: 0,
            }),
        }
    }

    #[test]
    fn running_and_failed_tables_come_first_then_the_largest() {
        let tables = vec![
            table("public.small", TableState::Done, 10),
            table("public.big", TableState::Done, 1000),
            table("public.failed", TableState::Failed, 1),
            table("public.running", TableState::Running, 5),
        ];
        let names: Vec<&str> = ordered(&tables).iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "public.running",
                "public.failed",
                "public.big",
                "public.small"
            ]
        );
    }

    #[test]
    fn the_tables_table_shows_state_chunks_rows_size_and_duration() {
        let job = Job {
            table_progress: vec![table("public.orders", TableState::Done, 2048)],
            ..Default::default()
        };
        let text = tables_table(&job).expect("a table");
        let header = text.lines().next().unwrap();
        for column in ["TABLE", "STATE", "CHUNKS", "ROWS", "SIZE", "DURATION"] {
            assert!(header.contains(column), "{header}");
        }
        let row = text.lines().nth(1).unwrap();
        for cell in ["public.orders", "done", "1/2", "10", "2.00 KiB", "1m 05s"] {
            assert!(row.contains(cell), "{row}");
        }
        assert!(tables_table(&Job::default()).is_none());
    }

    #[test]
    fn long_table_lists_are_cut_with_a_note() {
        let job = Job {
            table_progress: (0..SHOWN_TABLES + 3)
                .map(|i| table(&format!("s.t{i}"), TableState::Done, 1))
                .collect(),
            ..Default::default()
        };
        let text = tables_table(&job).unwrap();
        assert!(
            text.ends_with("… and 3 more tables (all of them with --json)"),
            "{text}"
        );
    }

    #[test]
    fn attempts_show_worker_outcome_and_error() {
        let job = Job {
            attempts: vec![
                JobAttempt {
                    attempt: 1,
                    worker: "host-a:7".into(),
                    outcome: AttemptOutcome::LeaseExpired as i32,
                    error: Some(JobError {
                        code: pgvault_errors::ErrorCode::SystemErrorLeaseExpired.to_string(),
                        message: "no heartbeat".into(),
                        recommended_action: String::new(),
                    }),
                    ..Default::default()
                },
                JobAttempt {
                    attempt: 2,
                    worker: "host-b:9".into(),
                    outcome: AttemptOutcome::Completed as i32,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let text = attempts_table(&job).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].contains("host-a:7") && lines[1].contains("lease expired"));
        assert!(lines[1].contains("SystemErrorLeaseExpired: no heartbeat"));
        assert!(lines[2].contains("host-b:9") && lines[2].contains("completed"));
    }

    #[test]
    fn attempts_name_their_agent_and_failed_ones_show_their_last_log_lines() {
        let job = Job {
            attempts: vec![
                JobAttempt {
                    attempt: 1,
                    worker: "gw-1:42".into(),
                    agent: "agents/dc1".into(),
                    outcome: AttemptOutcome::Failed as i32,
                    log_tail: vec![
                        "2026-01-02T03:04:05.000Z  INFO pgvault_worker::runner::execute: task started".into(),
                        "2026-01-02T03:04:09.000Z  WARN pgvault_worker::runner::execute: task failed code=DatastoreFull".into(),
                    ],
                    ..Default::default()
                },
                JobAttempt {
                    attempt: 2,
                    worker: "host-b:9".into(),
                    outcome: AttemptOutcome::Completed as i32,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let table = attempts_table(&job).unwrap();
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].contains("AGENT"), "{table}");
        assert!(
            lines[1].contains("gw-1:42") && lines[1].contains("dc1"),
            "{table}"
        );
        assert!(
            lines[2].contains("host-b:9") && lines[2].contains(" - "),
            "{table}"
        );
        let tails = log_tails(&job).unwrap();
        assert_eq!(
            tails.lines().collect::<Vec<_>>(),
            vec![
                "LOG OF ATTEMPT 1 (last 2 lines, agent dc1 (gw-1:42))",
                "  2026-01-02T03:04:05.000Z  INFO pgvault_worker::runner::execute: task started",
                "  2026-01-02T03:04:09.000Z  WARN pgvault_worker::runner::execute: task failed code=DatastoreFull",
            ]
        );
        assert!(log_tails(&Job::default()).is_none());
    }

    #[test]
    fn watch_lines_name_the_table_and_its_progress() {
        let t = table("public.orders", TableState::Running, 3 * 1024 * 1024);
        assert_eq!(
            table_line(&t),
            "public.orders 1/2 chunks, 10 rows, 3.00 MiB"
        );
        assert_eq!(
            table_event_line(&t),
            "table public.orders running: 1/2 chunks, 10 rows, 3.00 MiB"
        );
    }
}
