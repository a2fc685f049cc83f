//! How results reach the user: the `--output` choice, comfy-table tables in
//! the user's vocabulary, detail views for single resources, pretty JSON, and
//! the small formatters (local timestamps, byte sizes) tables share.

use chrono::{DateTime, Local, Utc};
use comfy_table::{ContentArrangement, Table, presets};
use prost_types::Timestamp;

/// `--output` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people.
    Table,
    /// JSON with the API's (snake_case) field names, for scripts.
    Json,
}

/// Columns separated by two spaces, no borders, no trailing blanks. Long
/// cells wrap only on a terminal wide enough for it (pseudo-terminals without
/// a size would otherwise squeeze every column to one character).
fn render(mut table: Table) -> String {
    let wide_terminal = table.width().is_some_and(|width| width >= MIN_WRAP_WIDTH);
    if !wide_terminal {
        table.set_content_arrangement(ContentArrangement::Disabled);
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table.trim_fmt()
}

/// Narrowest terminal on which tables wrap long cells.
const MIN_WRAP_WIDTH: u16 = 60;

/// A table with a header row and one row per resource.
pub fn list_table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(headers.iter().copied());
    for row in rows {
        table.add_row(row);
    }
    render(table)
}

/// Prints a list, or a one-line note when it is empty.
pub fn print_list(headers: &[&str], rows: Vec<Vec<String>>, empty_note: &str) {
    if rows.is_empty() {
        println!("{empty_note}");
    } else {
        println!("{}", list_table(headers, rows));
    }
}

/// A two-column "FIELD value" view of one resource; empty values are skipped.
pub fn details_table(fields: &[(&str, String)]) -> String {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic);
    for (label, value) in fields {
        if !value.is_empty() {
            table.add_row(vec![label.to_string(), value.clone()]);
        }
    }
    render(table)
}

pub fn print_details(fields: &[(&str, String)]) {
    println!("{}", details_table(fields));
}

pub fn print_json(value: &serde_json::Value) {
    // Serializing a `Value` cannot fail; fall back to the compact form anyway.
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(_) => println!("{value}"),
    }
}

/// A timestamp as UTC, or `None` when unset or out of range.
pub fn to_utc(timestamp: Option<&Timestamp>) -> Option<DateTime<Utc>> {
    let ts = timestamp?;
    let nanos = u32::try_from(ts.nanos).ok()?;
    DateTime::from_timestamp(ts.seconds, nanos)
}

/// A timestamp for tables: local time to the second, "-" when unset.
pub fn local_time(timestamp: Option<&Timestamp>) -> String {
    match to_utc(timestamp) {
        Some(utc) => utc
            .with_timezone(&Local)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string(),
        None => "-".to_owned(),
    }
}

/// Elapsed time between two timestamps, e.g. "2m 05s"; empty when either is unset.
pub fn duration_between(start: Option<&Timestamp>, end: Option<&Timestamp>) -> String {
    match (to_utc(start), to_utc(end)) {
        (Some(start), Some(end)) if end >= start => human_duration((end - start).num_seconds()),
        _ => String::new(),
    }
}

pub fn human_duration(total_seconds: i64) -> String {
    let (hours, minutes, seconds) = (
        total_seconds / 3600,
        (total_seconds % 3600) / 60,
        total_seconds % 60,
    );
    if hours > 0 {
        format!("{hours}h {minutes:02}m {seconds:02}s")
    } else if minutes > 0 {
        format!("{minutes}m {seconds:02}s")
    } else {
        format!("{seconds}s")
    }
}

/// Byte counts in binary units, e.g. "12.50 MiB".
pub fn bytes(count: u64) -> String {
    indicatif::HumanBytes(count).to_string()
}

/// "-" for empty cells, so columns stay readable.
pub fn or_dash(value: &str) -> String {
    if value.is_empty() {
        "-".to_owned()
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_and_invalid_timestamps_render_as_dash() {
        assert_eq!(local_time(None), "-");
        assert_eq!(
            local_time(Some(&Timestamp {
                seconds: 0,
                nanos: -1
            })),
            "-"
        );
    }

    #[test]
    fn durations_are_short_and_readable() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(125), "2m 05s");
        assert_eq!(human_duration(3725), "1h 02m 05s");
        let start = Timestamp {
            seconds: 100,
            nanos: 0,
        };
        let end = Timestamp {
            seconds: 190,
            nanos: 0,
        };
        assert_eq!(duration_between(Some(&start), Some(&end)), "1m 30s");
        assert_eq!(duration_between(Some(&start), None), "");
    }

    #[test]
    fn details_skip_empty_fields() {
        let rendered =
            details_table(&[("NAME", "prod".into()), ("DESCRIPTION", String::new())]).to_string();
        assert!(rendered.contains("NAME") && rendered.contains("prod"));
        assert!(!rendered.contains("DESCRIPTION"));
    }
}
