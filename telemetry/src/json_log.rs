//! The JSON log line of every pgvault process (`log.format = "json"`): one
//! object per event with `timestamp`, `level`, `target`, `span` (the
//! innermost span's name), the fields of every enclosing span (outermost
//! first, inner ones win) and the event's own fields, all at the top level.
//! A task's span carries `job_id`, `attempt`, `instance_id` and `trace_id`
//! ([`crate::fields`]), so every line logged inside it does, whichever
//! process (coordinator, worker, agent) wrote it.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The event formatter; pair it with [`JsonFields`] as the field formatter
/// (`fmt::layer().fmt_fields(JsonFields::new()).event_format(JsonLines)`),
/// which keeps each span's fields as a JSON object.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonLines;

impl<S> FormatEvent<S, JsonFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = Map::new();
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        line.insert("timestamp".into(), Value::String(timestamp));
        let meta = event.metadata();
        line.insert("level".into(), Value::String(meta.level().to_string()));
        line.insert("target".into(), Value::String(meta.target().to_string()));
        if let Some(scope) = ctx.event_scope() {
            let mut innermost = None;
            for span in scope.from_root() {
                innermost = Some(span.name());
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<JsonFields>>() else {
                    continue;
                };
                if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields) {
                    line.extend(fields);
                }
            }
            if let Some(name) = innermost {
                line.insert("span".into(), Value::String(name.to_string()));
            }
        }
        event.record(&mut EventFields(&mut line));
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// Collects an event's fields into the line.
struct EventFields<'a>(&'a mut Map<String, Value>);

impl Visit for EventFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().into(), Value::String(value.into()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().into(), Value::String(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::String(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logged(body: impl FnOnce()) -> Vec<Value> {
        crate::capture::logged_json(body)
    }

    #[test]
    fn every_line_inside_a_task_carries_the_task_fields_at_the_top_level() {
        let lines = logged(|| {
            let task = tracing::error_span!(
                "task",
                job_id = "j1",
                attempt = 2u32,
                instance_id = "i1",
                trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
            );
            let _task = task.enter();
            tracing::info!("task started");
            let table = tracing::info_span!("table", table = "public.t");
            let _table = table.enter();
            tracing::info!(rows = 5u64, "table done");
        });
        assert_eq!(lines.len(), 2);
        for line in &lines {
            assert_eq!(line["job_id"], "j1");
            assert_eq!(line["attempt"], 2);
            assert_eq!(line["instance_id"], "i1");
            assert_eq!(line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
            assert_eq!(line["level"], "INFO");
        }
        assert_eq!(lines[0]["message"], "task started");
        assert_eq!(lines[0]["span"], "task");
        assert_eq!(lines[1]["span"], "table");
        assert_eq!(lines[1]["table"], "public.t");
        assert_eq!(lines[1]["rows"], 5);
    }

    #[test]
    fn a_line_outside_any_span_has_only_its_own_fields() {
        let lines = logged(|| tracing::warn!(error = "boom", "no task"));
        assert_eq!(lines[0]["message"], "no task");
        assert_eq!(lines[0]["error"], "boom");
        assert!(lines[0].get("job_id").is_none());
        assert!(lines[0].get("span").is_none());
    }
}
