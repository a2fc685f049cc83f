//! Waits for a burst of scheduled jobs: polls the state database until
//! `--expect` scheduled backup jobs exist and the outbox is empty, then the
//! RabbitMQ task queue until it holds them all (no worker consumes during
//! the benchmark). Times are seconds after the slot instant.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use pgvault_queue::amqp::AmqpQueue;
use serde::Serialize;
use sqlx::postgres::PgPoolOptions;

#[derive(clap::Args)]
pub struct Args {
    /// State database URL of the coordinator.
    #[arg(long)]
    database_url: String,
    #[arg(long)]
    amqp_url: String,
    #[arg(long, default_value = "pgvault.tasks")]
    queue: String,
    /// Scheduled jobs the slot creates.
    #[arg(long)]
    expect: i64,
    /// The slot instant on the machine's clock, Unix seconds.
    #[arg(long)]
    slot_unix: f64,
    /// Give up after this many seconds past the slot.
    #[arg(long, default_value_t = 300.0)]
    timeout: f64,
}

#[derive(Serialize)]
pub struct Report {
    /// All jobs (and their schedule runs and outbox rows) committed.
    pub jobs_created_s: f64,
    /// Outbox empty: every task confirmed by the broker.
    pub outbox_empty_s: f64,
    /// The queue holds every task.
    pub queued_s: f64,
    pub jobs: i64,
    pub queue_depth: u32,
}

fn since(slot_unix: f64) -> f64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    now - slot_unix
}

pub async fn wait(args: &Args) -> anyhow::Result<Report> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&args.database_url)
        .await?;
    let queue = AmqpQueue::connect(&args.amqp_url, &args.queue).await?;
    let poll = Duration::from_millis(50);
    let mut jobs_created = None;
    let mut outbox_empty = None;
    loop {
        let elapsed = since(args.slot_unix);
        if elapsed > args.timeout {
            bail!("timed out {elapsed:.0} s after the slot");
        }
        let (jobs, outbox): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM jobs WHERE operation = 'SCHEDULED_BACKUP'),
                    (SELECT count(*) FROM outbox)",
        )
        .fetch_one(&pool)
        .await?;
        if jobs_created.is_none() && jobs >= args.expect {
            jobs_created = Some(elapsed);
        }
        if let Some(created) = jobs_created
            && outbox == 0
        {
            outbox_empty.get_or_insert(elapsed);
            let depth = queue.message_count().await?;
            if i64::from(depth) >= args.expect {
                return Ok(Report {
                    jobs_created_s: created,
                    outbox_empty_s: outbox_empty.unwrap_or(elapsed),
                    queued_s: since(args.slot_unix),
                    jobs,
                    queue_depth: depth,
                });
            }
        }
        tokio::time::sleep(poll).await;
    }
}
