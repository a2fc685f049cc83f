//! Times `ListJobs` through the real gRPC API (a tonic client, one
//! connection, calls one after another) for the shapes `pgvault job list`
//! sends: the default 7-day window, each filter, a time range, `--all`, and
//! pages 2–10 followed by page token. A few unmeasured calls warm each
//! shape up first.

use std::time::{Duration, Instant, SystemTime};

use pgvault_proto::v1::job_service_client::JobServiceClient;
use pgvault_proto::v1::{JobState, ListJobsRequest, Operation};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::transport::Channel;

const WARM_UP: usize = 5;
const DEEP_PAGES: usize = 10;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    endpoint: String,
    /// A vault to filter by, `vaults/{vault}`.
    #[arg(long)]
    vault: String,
    /// A backup instance to filter by, `vaults/{vault}/backupInstances/{id}`.
    #[arg(long)]
    instance: String,
    /// Measured calls per shape.
    #[arg(long, default_value_t = 300)]
    calls: usize,
}

/// Latencies of one shape.
pub struct Shape {
    name: String,
    millis: Vec<f64>,
    rows: usize,
}

impl Shape {
    fn percentile(&self, p: f64) -> f64 {
        let mut sorted = self.millis.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }

    /// `name  calls  p50  p95  p99  rows-per-page`.
    pub fn tsv(&self) -> String {
        format!(
            "{}\t{}\t{:.2}\t{:.2}\t{:.2}\t{:.1}",
            self.name,
            self.millis.len(),
            self.percentile(50.0),
            self.percentile(95.0),
            self.percentile(99.0),
            self.rows as f64 / self.millis.len().max(1) as f64
        )
    }
}

#[derive(Clone)]
struct Bearer(MetadataValue<Ascii>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

type Client = JobServiceClient<tonic::service::interceptor::InterceptedService<Channel, Bearer>>;

fn timestamp(at: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(at)
}

fn days_ago(days: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(days * 86_400)
}

/// The shapes, as the CLI would send them (page size 0: the default 50).
fn shapes(args: &Args) -> Vec<(&'static str, ListJobsRequest)> {
    let base = ListJobsRequest::default();
    let all = ListJobsRequest {
        all: true,
        ..Default::default()
    };
    vec![
        ("default (last 7 days)", base.clone()),
        (
            "--vault (7 d)",
            ListJobsRequest {
                vault: args.vault.clone(),
                ..base.clone()
            },
        ),
        (
            "--instance (7 d)",
            ListJobsRequest {
                backup_instance: args.instance.clone(),
                ..base.clone()
            },
        ),
        (
            "--state FAILED (7 d)",
            ListJobsRequest {
                state: JobState::Failed as i32,
                ..base.clone()
            },
        ),
        (
            "--operation RESTORE (7 d)",
            ListJobsRequest {
                operation: Operation::Restore as i32,
                ..base.clone()
            },
        ),
        (
            "time range (30 d, a year ago)",
            ListJobsRequest {
                created_after: Some(timestamp(days_ago(395))),
                created_before: Some(timestamp(days_ago(365))),
                ..base.clone()
            },
        ),
        ("--all", all.clone()),
        (
            "--all --vault",
            ListJobsRequest {
                vault: args.vault.clone(),
                ..all.clone()
            },
        ),
        (
            "--all --instance",
            ListJobsRequest {
                backup_instance: args.instance.clone(),
                ..all.clone()
            },
        ),
        (
            "--all --state FAILED",
            ListJobsRequest {
                state: JobState::Failed as i32,
                ..all.clone()
            },
        ),
        (
            "--all --operation REHYDRATE",
            ListJobsRequest {
                operation: Operation::Rehydrate as i32,
                ..all.clone()
            },
        ),
    ]
}

async fn call(
    client: &mut Client,
    request: ListJobsRequest,
) -> anyhow::Result<(f64, usize, String)> {
    let start = Instant::now();
    let response = client.list_jobs(request).await?.into_inner();
    let millis = start.elapsed().as_secs_f64() * 1000.0;
    Ok((millis, response.jobs.len(), response.next_page_token))
}

pub async fn run(args: &Args, token: &str) -> anyhow::Result<Vec<Shape>> {
    let channel = Channel::from_shared(args.endpoint.clone())?
        .connect()
        .await?;
    let bearer = Bearer(format!("Bearer {token}").parse()?);
    let mut client = JobServiceClient::with_interceptor(channel, bearer);
    let mut out = Vec::new();
    for (name, request) in shapes(args) {
        for _ in 0..WARM_UP {
            call(&mut client, request.clone()).await?;
        }
        let mut shape = Shape {
            name: name.to_string(),
            millis: Vec::with_capacity(args.calls),
            rows: 0,
        };
        for _ in 0..args.calls {
            let (millis, rows, _) = call(&mut client, request.clone()).await?;
            shape.millis.push(millis);
            shape.rows += rows;
        }
        out.push(shape);
    }
    out.push(deep_pages(&mut client, args.calls).await?);
    Ok(out)
}

/// `--all`, following page tokens: pages 2..=10 are measured, chains are
/// repeated until `calls` pages were timed.
async fn deep_pages(client: &mut Client, calls: usize) -> anyhow::Result<Shape> {
    let mut shape = Shape {
        name: format!("--all, pages 2-{DEEP_PAGES} by page token"),
        millis: Vec::with_capacity(calls),
        rows: 0,
    };
    let mut warmed = false;
    while shape.millis.len() < calls {
        let first = ListJobsRequest {
            all: true,
            ..Default::default()
        };
        let (_, _, mut token) = call(client, first).await?;
        for _ in 2..=DEEP_PAGES {
            anyhow::ensure!(!token.is_empty(), "history ended before page {DEEP_PAGES}");
            let request = ListJobsRequest {
                all: true,
                page_token: token.clone(),
                ..Default::default()
            };
            let (millis, rows, next) = call(client, request).await?;
            if warmed {
                shape.millis.push(millis);
                shape.rows += rows;
            }
            token = next;
        }
        warmed = true;
    }
    Ok(shape)
}
