//! The last log lines of each running task, sent with its failure so an
//! operator reads them in `pgvault job show` instead of fetching the
//! worker's or agent's logs.
//!
//! [`LogTailLayer`] is a `tracing` layer: for every span named [`TASK_SPAN`]
//! with a `job_id` field (the runner opens one around each claimed task) it
//! keeps the last [`LINES`] events written inside that span, each formatted
//! as one line of at most [`LINE_CHARS`] characters. The runner reads them
//! with [`LogTail::of`] and sends them in `FailTaskRequest.log_tail`.
//!
//! Whoever sets up tracing installs the layer (`pgvault worker` and `up`,
//! the agent); without it the tail is simply empty. While no task runs an
//! event costs one atomic load here. The layer sits under the process's
//! filter, so it keeps what the log shows and nothing more; the engine and
//! the runner never log secrets, and neither does this.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Span, Subscriber};
use tracing_subscriber::Registry;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// Lines kept per task.
pub const LINES: usize = 50;
/// Longest line kept, in characters; longer ones are cut with "…".
pub const LINE_CHARS: usize = 500;
/// Name of the runner's span around one claimed task.
pub const TASK_SPAN: &str = "task";

/// Task spans open now, in this process: zero makes every event free.
static OPEN_TASKS: AtomicUsize = AtomicUsize::new(0);

/// The lines kept for one task. Cheap to clone; clones share the lines.
#[derive(Clone, Default)]
pub struct LogTail(Arc<Mutex<VecDeque<String>>>);

impl LogTail {
    /// The tail the installed [`LogTailLayer`] keeps for `span` (a task
    /// span); an empty one that stays empty when the layer is not installed
    /// or `span` is no task span.
    pub fn of(span: &Span) -> LogTail {
        span.with_subscriber(|(id, dispatch)| {
            let registry = dispatch.downcast_ref::<Registry>()?;
            let span = registry.span(id)?;
            let extensions = span.extensions();
            extensions.get::<Recording>().map(|r| r.tail.clone())
        })
        .flatten()
        .unwrap_or_default()
    }

    /// The lines kept so far, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|lines| lines.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn push(&self, line: String) {
        if let Ok(mut lines) = self.0.lock() {
            if lines.len() == LINES {
                lines.pop_front();
            }
            lines.push_back(line);
        }
    }
}

/// Kept in a task span's extensions while it is open.
struct Recording {
    tail: LogTail,
}

impl Recording {
    fn open() -> Recording {
        OPEN_TASKS.fetch_add(1, Ordering::Relaxed);
        Recording {
            tail: LogTail::default(),
        }
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        OPEN_TASKS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Keeps the last log lines of every task span; see the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogTailLayer;

impl<S> Layer<S> for LogTailLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let metadata = attrs.metadata();
        if metadata.name() != TASK_SPAN || metadata.fields().field("job_id").is_none() {
            return;
        }
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Recording::open());
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if OPEN_TASKS.load(Ordering::Relaxed) == 0 {
            return;
        }
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        for span in scope {
            if let Some(recording) = span.extensions().get::<Recording>() {
                recording.tail.push(format_line(event));
                return;
            }
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(&id) {
            span.extensions_mut().remove::<Recording>();
        }
    }
}

/// `2025-01-02T03:04:05.678Z  WARN pgvault_engine::backup: message key=value`,
/// cut to [`LINE_CHARS`] characters.
fn format_line(event: &Event<'_>) -> String {
    let metadata = event.metadata();
    let mut fields = Fields::default();
    event.record(&mut fields);
    let mut line = format!(
        "{} {:>5} {}: {}",
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ"),
        metadata.level(),
        metadata.target(),
        fields.message
    );
    line.push_str(&fields.rest);
    cut(line)
}

fn cut(line: String) -> String {
    if line.chars().count() <= LINE_CHARS {
        return line;
    }
    let mut cut: String = line.chars().take(LINE_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// The message, and the other fields as ` key=value`.
#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.rest, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    fn with_layer<T>(f: impl FnOnce() -> T) -> T {
        let subscriber = tracing_subscriber::registry().with(LogTailLayer);
        pgvault_telemetry::capture::keep_interest_shared();
        tracing::subscriber::with_default(subscriber, f)
    }

    #[test]
    fn events_inside_a_task_span_are_kept_as_lines_and_others_are_not() {
        let lines = with_layer(|| {
            tracing::info!("before the task");
            let span = tracing::error_span!("task", job_id = "j1");
            let tail = LogTail::of(&span);
            span.in_scope(|| {
                tracing::warn!(table = "public.t", rows = 3, "copy slowed down");
                let inner = tracing::info_span!("chunk");
                inner.in_scope(|| tracing::info!("inside a child span"));
            });
            tracing::info!("after the task");
            tail.lines()
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].ends_with(
                " WARN pgvault_worker::runner::log_tail::tests: copy slowed down table=public.t rows=3"
            ),
            "{lines:?}"
        );
        assert!(lines[1].ends_with("inside a child span"), "{lines:?}");
    }

    #[test]
    fn only_the_last_lines_are_kept_each_cut_to_the_limit() {
        let lines = with_layer(|| {
            let span = tracing::error_span!("task", job_id = "j1");
            let tail = LogTail::of(&span);
            span.in_scope(|| {
                for i in 0..LINES + 30 {
                    tracing::info!(i, "line");
                }
                tracing::info!("{}", "é".repeat(2 * LINE_CHARS));
            });
            tail.lines()
        });
        assert_eq!(lines.len(), LINES);
        assert!(lines[0].ends_with("line i=31"), "{}", lines[0]);
        let last = lines.last().unwrap();
        assert_eq!(last.chars().count(), LINE_CHARS);
        assert!(last.ends_with("é…"), "{last}");
    }

    #[test]
    fn a_line_at_the_limit_is_kept_whole() {
        let exact = "x".repeat(LINE_CHARS);
        assert_eq!(cut(exact.clone()), exact);
        assert_eq!(cut("short".into()), "short");
        let long = cut("y".repeat(LINE_CHARS + 1));
        assert_eq!(long.chars().count(), LINE_CHARS);
        assert!(long.ends_with("y…"));
    }

    #[test]
    fn spans_of_other_names_and_a_missing_layer_give_an_empty_tail() {
        let lines = with_layer(|| {
            let span = tracing::error_span!("claim", job_id = "j1");
            let tail = LogTail::of(&span);
            span.in_scope(|| tracing::info!("not a task"));
            tail.lines()
        });
        assert!(lines.is_empty(), "{lines:?}");
        let span = tracing::error_span!("task", job_id = "j1");
        assert!(LogTail::of(&span).lines().is_empty());
    }

    #[test]
    fn two_tasks_keep_their_own_lines() {
        let (a, b) = with_layer(|| {
            let first = tracing::error_span!("task", job_id = "a");
            let second = tracing::error_span!("task", job_id = "b");
            let (a, b) = (LogTail::of(&first), LogTail::of(&second));
            first.in_scope(|| tracing::info!("from a"));
            second.in_scope(|| tracing::info!("from b"));
            first.in_scope(|| tracing::info!("again a"));
            (a.lines(), b.lines())
        });
        assert_eq!(a.len(), 2, "{a:?}");
        assert!(a[1].ends_with("again a"));
        assert_eq!(b.len(), 1, "{b:?}");
        assert!(b[0].ends_with("from b"));
    }
}
