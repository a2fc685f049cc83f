//! Following a job to its end (`job watch`, `--wait`): the `WatchJob` stream
//! (re-opened after a dropped connection), an indicatif progress bar with a
//! line per table being worked on when stdout is a terminal or plain lines
//! otherwise, the final state, and the exit code that state maps to.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use pgvault_proto::v1::{
    GetJobRequest, Job, JobState, Operation, RestoreKind, TableProgress, TableState,
    WatchJobRequest,
};
use tonic::{Code, Status, Streaming};

use super::connect::{Api, Reply};
use super::job::{operation_text, output_location, state_text};
use super::output::{bytes, details_table, duration_between, print_json};
use super::{job_details, job_fanout, json, names};

/// How often a dropped watch stream is re-opened before giving up.
const MAX_REOPENS: u32 = 5;

/// What `backup now` and `restore` do with the job they started.
pub async fn started(api: &Api, job: Job, wait: bool) -> anyhow::Result<ExitCode> {
    if wait {
        if !api.json() {
            println!("started {} ({})", job.name, operation_text(job.operation));
        }
        return follow(api, job.name).await;
    }
    if api.json() {
        print_json(&json::job(&job));
    } else {
        println!("{}", job.name);
    }
    Ok(ExitCode::SUCCESS)
}

/// Follows a job until it reaches a terminal state; the exit code is the state's.
pub async fn follow(api: &Api, name: String) -> anyhow::Result<ExitCode> {
    let mut display = Display::new(api.json());
    let mut stream = open(api, &name).await?;
    let mut reopens = 0;
    let last = loop {
        let interrupted = match stream.message().await {
            Ok(Some(job)) => {
                reopens = 0;
                display.update(&job);
                if is_terminal(job.state) {
                    break job;
                }
                continue;
            }
            // The stream ended or broke: ask where the job is before re-opening.
            Ok(None) => None,
            Err(status) if retryable(&status) => Some(status),
            Err(status) => {
                display.clear();
                return Err(api.fail(status));
            }
        };
        if let Ok(job) = api
            .jobs()
            .get_job(GetJobRequest { name: name.clone() })
            .await
            .reply(api)
        {
            display.update(&job);
            if is_terminal(job.state) {
                break job;
            }
        }
        reopens += 1;
        if reopens > MAX_REOPENS {
            display.clear();
            return Err(match interrupted {
                Some(status) => api.fail(status),
                None => anyhow::anyhow!(
                    "the job stream keeps ending before {name} finishes; retry: pgvault job watch {name}"
                ),
            });
        }
        tokio::time::sleep(Duration::from_secs(u64::from(reopens))).await;
        stream = open(api, &name).await?;
    };
    display.clear();
    // Watch messages carry only the tables that changed: the JSON
    // document is the whole job, as `job show` returns it.
    let last = if api.json() && last.table_progress_delta {
        api.jobs()
            .get_job(GetJobRequest { name: name.clone() })
            .await
            .reply(api)
            .unwrap_or(last)
    } else {
        last
    };
    print_outcome(api, &last);
    Ok(exit_code(last.state))
}

async fn open(api: &Api, name: &str) -> anyhow::Result<Streaming<Job>> {
    api.jobs()
        .watch_job(WatchJobRequest {
            name: name.to_owned(),
        })
        .await
        .reply(api)
}

/// Broken connections are worth re-opening; refusals from the server are not.
fn retryable(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled
    )
}

pub fn is_terminal(state: i32) -> bool {
    matches!(
        JobState::try_from(state),
        Ok(JobState::Completed
            | JobState::CompletedWithWarnings
            | JobState::Failed
            | JobState::Cancelled)
    )
}

/// 0 for Completed and CompletedWithWarnings, 1 for anything else.
pub fn exit_status(state: i32) -> u8 {
    match JobState::try_from(state) {
        Ok(JobState::Completed | JobState::CompletedWithWarnings) => 0,
        _ => 1,
    }
}

pub fn exit_code(state: i32) -> ExitCode {
    ExitCode::from(exit_status(state))
}

/// The final state: the job JSON, or a summary with the error and what to do.
fn print_outcome(api: &Api, job: &Job) {
    if api.json() {
        print_json(&json::job(job));
        return;
    }
    let took = duration_between(job.start_time.as_ref(), job.end_time.as_ref());
    let took = if took.is_empty() {
        String::new()
    } else {
        format!(" in {took}")
    };
    println!("{} {}{took}", job.name, state_text(job.state));
    let mut fields: Vec<(&str, String)> = Vec::new();
    match Operation::try_from(job.operation) {
        Ok(Operation::Restore)
            if exit_status(job.state) == 0 && job.restore_kind == RestoreKind::Files as i32 =>
        {
            fields.push(("WRITTEN TO", output_location(job)));
            fields.push(("SIZE", bytes(job.output_size)));
        }
        Ok(Operation::Restore) if exit_status(job.state) == 0 => {
            let server = if job.target_server.is_empty() {
                "the instance's server"
            } else {
                names::short(&job.target_server)
            };
            fields.push((
                "RESTORED TO",
                format!("database {} on {server}", job.target_database),
            ));
        }
        Ok(Operation::ScheduledBackup | Operation::OnDemandBackup)
            if exit_status(job.state) == 0 =>
        {
            fields.push(("RECOVERY POINT", job.recovery_point.clone()));
        }
        _ => {}
    }
    if let Some(progress) = &job.progress {
        if progress.bytes_done > 0 {
            fields.push(("BYTES", bytes(progress.bytes_done)));
        }
        if progress.rows_done > 0 {
            fields.push(("ROWS", progress.rows_done.to_string()));
        }
    }
    if let Some(fleet) = job_fanout::throughput_line(job) {
        fields.push(("THROUGHPUT", fleet));
    }
    if !job.warnings.is_empty() {
        fields.push(("WARNINGS", job.warnings.join("\n")));
    }
    if let Some(error) = &job.error {
        fields.push(("ERROR CODE", error.code.clone()));
        fields.push(("MESSAGE", error.message.clone()));
        fields.push(("RECOMMENDED ACTION", error.recommended_action.clone()));
    }
    if fields.iter().any(|(_, value)| !value.is_empty()) {
        println!("{}", details_table(&fields));
    }
}

/// One line describing where a job is, e.g.
/// "in progress: loading data, 3/10 chunks, 12.50 MiB, 4567 rows".
pub fn progress_line(job: &Job) -> String {
    describe_progress(job, true)
}

/// Like [`progress_line`]; without chunk counts next to a bar that shows
/// them. A fanned-out backup shows the fleet's throughput instead of the
/// leader's own bytes and chunks.
fn describe_progress(job: &Job, with_chunks: bool) -> String {
    let mut parts: Vec<String> = Vec::new();
    // A fanned-out backup: the fleet's numbers, not the leader's alone.
    let fleet = job_fanout::throughput_line(job);
    if let Some(p) = &job.progress {
        if !p.phase.is_empty() {
            parts.push(p.phase.clone());
        }
        if let Some(fleet) = &fleet {
            parts.push(fleet.clone());
        } else if with_chunks && p.chunks_total > 0 {
            parts.push(format!("{}/{} chunks", p.chunks_done, p.chunks_total));
        } else if with_chunks && p.chunks_done > 0 {
            parts.push(format!("{} chunks", p.chunks_done));
        }
        if fleet.is_none() && p.bytes_done > 0 {
            parts.push(bytes(p.bytes_done));
        }
        if fleet.is_none() && p.rows_done > 0 {
            parts.push(format!("{} rows", p.rows_done));
        }
    }
    if parts.is_empty() && !job.queued_reason.is_empty() {
        // "queued: waiting for agent dc1, last seen …"
        parts.push(job.queued_reason.clone());
    }
    let state = state_text(job.state);
    if parts.is_empty() {
        state.to_owned()
    } else {
        format!("{state}: {}", parts.join(", "))
    }
}

/// Progress as the terminal allows it.
enum Display {
    /// Interactive: a bar over chunks, or a spinner until the total is known,
    /// and under it one line per table being worked on.
    Bar {
        multi: MultiProgress,
        bar: ProgressBar,
        tables: TableView,
        running: HashMap<String, ProgressBar>,
    },
    /// Logs and pipes: a timestamped line whenever the description changes,
    /// and (without JSON) when a table starts or ends.
    Lines {
        to_stderr: bool,
        last: String,
        tables: TableView,
    },
}

/// Most table lines under the overall bar (one per busy connection).
const MAX_TABLE_BARS: usize = 8;

/// The tables known so far: `WatchJob` sends only changes
/// (`table_progress_delta`), `GetJob` everything; either way what arrives
/// replaces what was known of those tables. A new attempt starts over.
#[derive(Default)]
struct TableView {
    attempt: u32,
    known: HashMap<String, TableProgress>,
}

impl TableView {
    /// Takes in the job's tables; returns (previous state, table) of each
    /// one it carried.
    fn apply(&mut self, job: &Job) -> Vec<(Option<i32>, TableProgress)> {
        if job.attempt != self.attempt {
            self.known.clear();
            self.attempt = job.attempt;
        }
        job.table_progress
            .iter()
            .map(|t| {
                let before = self.known.insert(t.name.clone(), t.clone());
                (before.map(|b| b.state), t.clone())
            })
            .collect()
    }
}

fn is_running(t: &TableProgress) -> bool {
    t.state == TableState::Running as i32
}

impl Display {
    fn new(json: bool) -> Self {
        if json || !std::io::stdout().is_terminal() {
            // With JSON output stdout carries only the final job document.
            return Self::Lines {
                to_stderr: json,
                last: String::new(),
                tables: TableView::default(),
            };
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        let bar = multi.add(ProgressBar::new_spinner());
        bar.set_style(spinner_style());
        bar.enable_steady_tick(Duration::from_millis(120));
        Self::Bar {
            multi,
            bar,
            tables: TableView::default(),
            running: HashMap::new(),
        }
    }

    fn update(&mut self, job: &Job) {
        match self {
            Self::Bar {
                multi,
                bar,
                tables,
                running,
            } => {
                for (_, table) in tables.apply(job) {
                    match running.get(&table.name) {
                        Some(line) if is_running(&table) => show_table(line, &table),
                        Some(_) => {
                            if let Some(line) = running.remove(&table.name) {
                                line.finish_and_clear();
                                multi.remove(&line);
                            }
                        }
                        None if is_running(&table) && running.len() < MAX_TABLE_BARS => {
                            let line = multi.add(ProgressBar::new(0));
                            line.set_style(table_style());
                            show_table(&line, &table);
                            running.insert(table.name.clone(), line);
                        }
                        None => {}
                    }
                }
                let progress = job.progress.clone().unwrap_or_default();
                if progress.chunks_total > 0 {
                    if bar.length() != Some(u64::from(progress.chunks_total)) {
                        bar.set_style(bar_style());
                        bar.set_length(u64::from(progress.chunks_total));
                    }
                    bar.set_position(u64::from(progress.chunks_done));
                }
                bar.set_message(describe_progress(job, progress.chunks_total == 0));
            }
            Self::Lines {
                to_stderr,
                last,
                tables,
            } => {
                for (before, table) in tables.apply(job) {
                    // Tables are extra lines for people; JSON output has none.
                    if !*to_stderr && before != Some(table.state) {
                        let stamped = chrono::Local::now().format("%H:%M:%S");
                        println!("{stamped} {}", job_details::table_event_line(&table));
                    }
                }
                let line = progress_line(job);
                if line != *last {
                    let stamped = format!("{} {line}", chrono::Local::now().format("%H:%M:%S"));
                    if *to_stderr {
                        eprintln!("{stamped}");
                    } else {
                        println!("{stamped}");
                    }
                    *last = line;
                }
            }
        }
    }

    fn clear(&self) {
        if let Self::Bar {
            multi,
            bar,
            running,
            ..
        } = self
        {
            for line in running.values() {
                line.finish_and_clear();
            }
            bar.finish_and_clear();
            let _ = multi.clear();
        }
    }
}

fn show_table(line: &ProgressBar, table: &TableProgress) {
    line.set_length(u64::from(table.chunks_total.max(1)));
    line.set_position(u64::from(table.chunks_done));
    line.set_message(job_details::table_line(table));
}

fn table_style() -> ProgressStyle {
    ProgressStyle::with_template("    [{bar:20}] {wide_msg}")
        .map(|style| style.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {elapsed_precise} {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{spinner} {elapsed_precise} [{bar:30}] {pos}/{len} chunks  {wide_msg}",
    )
    .map(|style| style.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar())
}

#[cfg(test)]
mod tests {
    use pgvault_proto::v1::Progress;

    use super::*;

    #[test]
    fn exit_status_follows_the_final_state() {
        assert_eq!(exit_status(JobState::Completed as i32), 0);
        assert_eq!(exit_status(JobState::CompletedWithWarnings as i32), 0);
        assert_eq!(exit_status(JobState::Failed as i32), 1);
        assert_eq!(exit_status(JobState::Cancelled as i32), 1);
        assert_eq!(exit_status(99), 1);
    }

    #[test]
    fn terminal_states() {
        for state in [
            JobState::Completed,
            JobState::CompletedWithWarnings,
            JobState::Failed,
            JobState::Cancelled,
        ] {
            assert!(is_terminal(state as i32), "{state:?}");
        }
        for state in [
            JobState::Unspecified,
            JobState::Queued,
            JobState::InProgress,
            JobState::Cancelling,
        ] {
            assert!(!is_terminal(state as i32), "{state:?}");
        }
    }

    #[test]
    fn progress_lines_read_naturally() {
        let queued = Job {
            state: JobState::Queued as i32,
            ..Default::default()
        };
        assert_eq!(progress_line(&queued), "queued");
        let waiting = Job {
            state: JobState::Queued as i32,
            queued_reason: "waiting for agent dc1, never connected".into(),
            ..Default::default()
        };
        assert_eq!(
            progress_line(&waiting),
            "queued: waiting for agent dc1, never connected"
        );
        let running = Job {
            state: JobState::InProgress as i32,
            progress: Some(Progress {
                bytes_done: 3 * 1024 * 1024,
                rows_done: 4567,
                chunks_done: 3,
                chunks_total: 10,
                phase: "loading data".into(),
            }),
            ..Default::default()
        };
        assert_eq!(
            progress_line(&running),
            "in progress: loading data, 3/10 chunks, 3.00 MiB, 4567 rows"
        );
    }

    #[test]
    fn a_fanned_out_backup_shows_the_fleets_throughput() {
        use pgvault_proto::v1::{FanoutThroughput, WorkerThroughput};
        let job = Job {
            state: JobState::InProgress as i32,
            progress: Some(Progress {
                bytes_done: 3 * 1024 * 1024,
                chunks_done: 1,
                chunks_total: 10,
                phase: "dumping data".into(),
                ..Default::default()
            }),
            throughput: Some(FanoutThroughput {
                bytes_done: 9_000_000,
                bytes_per_second: 3e6,
                chunks_done: 4,
                chunks_total: 10,
                workers: vec![
                    WorkerThroughput {
                        worker_id: "w1".into(),
                        bytes_per_second: 2e6,
                        ..Default::default()
                    },
                    WorkerThroughput {
                        worker_id: "w2".into(),
                        bytes_per_second: 1e6,
                        ..Default::default()
                    },
                ],
            }),
            ..Default::default()
        };
        assert_eq!(
            progress_line(&job),
            "in progress: dumping data, 2 workers · 3 MB/s combined (w1 2, w2 1) · 4/10 chunks"
        );
    }

    #[test]
    fn progress_templates_are_valid() {
        assert!(ProgressStyle::with_template("{spinner} {elapsed_precise} {wide_msg}").is_ok());
        assert!(
            ProgressStyle::with_template(
                "{spinner} {elapsed_precise} [{bar:30}] {pos}/{len} chunks  {wide_msg}"
            )
            .is_ok()
        );
    }

    #[test]
    fn table_deltas_accumulate_and_a_new_attempt_starts_over() {
        let table = |name: &str, state: TableState| TableProgress {
            name: name.into(),
            state: state as i32,
            ..Default::default()
        };
        let mut view = TableView::default();
        let first = Job {
            attempt: 1,
            table_progress: vec![table("a", TableState::Running)],
            table_progress_delta: true,
            ..Default::default()
        };
        let changed = view.apply(&first);
        assert_eq!(changed[0].0, None);
        let later = Job {
            attempt: 1,
            table_progress: vec![table("a", TableState::Done)],
            table_progress_delta: true,
            ..Default::default()
        };
        let changed = view.apply(&later);
        assert_eq!(changed[0].0, Some(TableState::Running as i32));
        assert_eq!(view.known.len(), 1);
        let retried = Job {
            attempt: 2,
            table_progress_delta: true,
            ..Default::default()
        };
        view.apply(&retried);
        assert!(view.known.is_empty());
        assert!(ProgressStyle::with_template("    [{bar:20}] {wide_msg}").is_ok());
    }

    #[test]
    fn server_refusals_are_not_retried() {
        assert!(retryable(&Status::unavailable("connection reset")));
        assert!(!retryable(&Status::not_found("job not found")));
        assert!(!retryable(&Status::permission_denied("no")));
    }
}
