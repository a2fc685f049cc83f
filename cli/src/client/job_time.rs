//! "Where the time went" of `job show`, for a completed backup or restore:
//! throughput, the phases of the wall clock, what the data connections
//! spent their time on (seconds per connection and share), the side tasks
//! beside them (the schema dump's own connection, large objects), and the
//! CPU time of compression or decompression. Read from the job's stage
//! split. The connections counted and divided by are the data connections.

use pgvault_proto::v1::{Job, StageSplit, StageTime};

use super::output::{bytes, list_table};

/// Bytes per second as "123.4 MiB/s".
fn rate(bytes_moved: u64, seconds: f64) -> String {
    if seconds <= 0.0 {
        return "-".to_owned();
    }
    format!("{}/s", bytes((bytes_moved as f64 / seconds) as u64))
}

fn share(part: f64, whole: f64) -> String {
    if whole <= 0.0 {
        return "-".to_owned();
    }
    format!("{:.0}%", part / whole * 100.0)
}

/// One line of throughput: data moved, wall time, rate, stored, data connections.
pub fn throughput_line(split: &StageSplit) -> String {
    format!(
        "{} of COPY data in {:.1} s ({}), {} stored or read, {} data connections",
        bytes(split.raw_bytes),
        split.wall_seconds,
        rate(split.raw_bytes, split.wall_seconds),
        bytes(split.stored_bytes),
        split.connections
    )
}

fn phases_table(split: &StageSplit) -> String {
    list_table(
        &["PHASE", "SECONDS", "SHARE"],
        split
            .phases
            .iter()
            .filter(|p| p.seconds >= 0.005)
            .map(|p| {
                vec![
                    p.name.clone(),
                    format!("{:.2}", p.seconds),
                    share(p.seconds, split.wall_seconds),
                ]
            })
            .collect(),
    )
}

fn stages_table(split: &StageSplit) -> String {
    let connections = f64::from(split.connections.max(1));
    let total: f64 = split.connection_stages.iter().map(|s| s.seconds).sum();
    let mut stages: Vec<&StageTime> = split.connection_stages.iter().collect();
    stages.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    list_table(
        &["CONNECTIONS WERE", "SECONDS EACH", "SHARE"],
        stages
            .into_iter()
            .map(|s| {
                vec![
                    s.name.replace('_', " "),
                    format!("{:.2}", s.seconds / connections),
                    share(s.seconds, total),
                ]
            })
            .collect(),
    )
}

/// The side tasks, each timed whole (not per connection).
fn side_line(split: &StageSplit) -> Option<String> {
    let parts: Vec<String> = split
        .side_tasks
        .iter()
        .filter(|t| t.seconds >= 0.005)
        .map(|t| format!("{} {:.2} s", t.name.replace('_', " "), t.seconds))
        .collect();
    (!parts.is_empty()).then(|| format!("Beside the data connections: {}", parts.join(", ")))
}

fn cpu_line(split: &StageSplit) -> Option<String> {
    let gb = split.raw_bytes as f64 / 1e9;
    let parts: Vec<String> = split
        .cpu
        .iter()
        .filter(|c| c.seconds > 0.0)
        .map(|c| {
            let per_gb = if gb > 0.0 {
                format!(" ({:.2} s per GB)", c.seconds / gb)
            } else {
                String::new()
            };
            format!("{} {:.2} s{per_gb}", c.name.replace('_', " "), c.seconds)
        })
        .collect();
    (!parts.is_empty()).then(|| format!("CPU: {}", parts.join(", ")))
}

/// The whole section; `None` for jobs without a split.
pub fn section(job: &Job) -> Option<String> {
    let split = job.stage_split.as_ref()?;
    let mut text = throughput_line(split);
    text.push_str("\n\n");
    text.push_str(&phases_table(split));
    if !split.connection_stages.is_empty() {
        text.push_str("\n\n");
        text.push_str(&stages_table(split));
    }
    if let Some(side) = side_line(split) {
        text.push_str("\n\n");
        text.push_str(&side);
    }
    if let Some(cpu) = cpu_line(split) {
        text.push_str("\n\n");
        text.push_str(&cpu);
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(name: &str, seconds: f64) -> StageTime {
        StageTime {
            name: name.into(),
            seconds,
        }
    }

    #[test]
    fn a_split_reads_as_throughput_phases_connection_stages_side_tasks_and_cpu() {
        let job = Job {
            stage_split: Some(StageSplit {
                wall_seconds: 10.0,
                raw_bytes: 2_000_000_000,
                stored_bytes: 500_000_000,
                connections: 2,
                phases: vec![
                    time("connect", 0.5),
                    time("data", 9.0),
                    time("final flush", 0.5),
                    time("done", 0.0),
                ],
                connection_stages: vec![
                    time("compress", 4.0),
                    time("copy_out_wait", 14.0),
                    time("upload_wait", 2.0),
                ],
                cpu: vec![time("compress_hash", 5.0)],
                side_tasks: vec![time("schema_dump", 1.25), time("large_objects", 0.0)],
            }),
            ..Job::default()
        };
        let text = section(&job).unwrap();
        assert!(
            text.starts_with("1.86 GiB of COPY data in 10.0 s (190.73 MiB/s)"),
            "{text}"
        );
        assert!(text.contains("2 data connections"), "{text}");
        assert!(
            text.contains("final flush") && !text.contains("done"),
            "{text}"
        );
        // 14 s of two connections' time: 7 s each, 70% of it, listed first.
        let waits = text.find("copy out wait").unwrap();
        assert!(waits < text.find("compress ").unwrap(), "{text}");
        assert!(text.contains("7.00") && text.contains("70%"), "{text}");
        assert!(
            text.contains("CPU: compress hash 5.00 s (2.50 s per GB)"),
            "{text}"
        );
        // The schema dump is shown apart, whole, and divides nothing.
        assert!(
            text.contains("\n\nBeside the data connections: schema dump 1.25 s\n"),
            "{text}"
        );
        assert!(!text.contains("large objects"), "{text}");
        assert!(section(&Job::default()).is_none());
    }
}
