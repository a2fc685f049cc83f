//! One backup is one trace across processes: a coordinator and a worker
//! over RabbitMQ export to an OTLP/gRPC receiver run by this test (tonic,
//! from `opentelemetry-proto`'s TraceService). After one backup, the spans
//! of both processes share the job's trace id (the one `pgvault job show`
//! prints) and form the tree job.create → dispatch → claim (→ the
//! coordinator's ClaimTask) → task → backup → schema / data → table,
//! manifest, and complete (→ CompleteTask); no span, event or resource
//! attribute carries the source's password; and every JSON log line the
//! worker wrote inside the task names the job, attempt, instance and trace.
//! A restore of that point is one trace with the engine's restore phases
//! (pre-data, a span per load, post-data entries and index builds, each
//! table's ANALYZE, …).
//!
//! A backup fanned out over two workers (`--workers 2`, chunks of 1 MiB) is
//! one trace too: the helper's `chunks` span continues the invitation's
//! dispatch, its `ClaimChunk`/`CompleteChunk` calls join the trace on the
//! coordinator's side, spans come from both workers, and the helper's JSON
//! lines name the job, attempt, instance and trace. The coordinator logs at
//! `warn` there: its spans are exported all the same.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span};
use pgvault_e2e::fixtures;
use pgvault_e2e::pgvault::PgvaultCluster;
use pgvault_e2e::rabbitmq::RabbitMq;
use pgvault_e2e::scenario::{JOB_TIMEOUT, SOURCE_PASSWORD, protect, setup_vault};
use pgvault_localpg::TempCluster;
use pgvault_proto::v1::{BackupNowRequest, JobState, RestoreAsDatabaseRequest, RetentionRuleKind};
use serde_json::Value;
use tonic::{Request, Response, Status};

/// Everything exported to the receiver.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<ResourceSpans>>>);

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.0
            .lock()
            .expect("lock")
            .extend(request.into_inner().resource_spans);
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Received {
    fn all(&self) -> Vec<ResourceSpans> {
        self.0.lock().expect("lock").clone()
    }

    /// (service name, span) of every span of `trace_id`.
    fn trace(&self, trace_id: &str) -> Vec<(String, Span)> {
        let mut spans = Vec::new();
        for resource_spans in self.all() {
            let service = resource_spans
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
                .and_then(|a| a.value.as_ref()?.value.clone())
                .map(|v| match v {
                    AnyValue::StringValue(s) => s,
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    if hex(&span.trace_id) == trace_id {
                        spans.push((service.clone(), span));
                    }
                }
            }
        }
        spans
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Starts the receiver on a loopback port; returns its endpoint. The port
/// is bound here and handed to the server, so no one can take it between.
async fn start_receiver(received: Received) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the OTLP receiver");
    let address: SocketAddr = listener.local_addr().expect("receiver address");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(received))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    format!("http://{address}")
}

/// The spans of `trace_id` once both processes exported the ones asked
/// for (the batch exporters send every 200 ms here).
async fn wait_for_spans(
    received: &Received,
    trace_id: &str,
    names: &[&str],
) -> Vec<(String, Span)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let spans = received.trace(trace_id);
        if names
            .iter()
            .all(|n| spans.iter().any(|(_, s)| s.name == *n))
        {
            return spans;
        }
        let seen: Vec<&str> = spans.iter().map(|(_, s)| s.name.as_str()).collect();
        assert!(
            Instant::now() < deadline,
            "spans {names:?} of trace {trace_id} never all arrived; got {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The one span named `name`, and which service sent it.
fn one<'a>(spans: &'a [(String, Span)], name: &str) -> &'a (String, Span) {
    let found: Vec<&(String, Span)> = spans.iter().filter(|(_, s)| s.name == name).collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {name} span, got {}",
        found.len()
    );
    found[0]
}

fn assert_child(parent: &Span, child: &Span) {
    assert_eq!(
        hex(&child.parent_span_id),
        hex(&parent.span_id),
        "{} is not a child of {}",
        child.name,
        parent.name
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_backup_is_one_trace_across_coordinator_and_worker_without_secrets() {
    let received = Received::default();
    let endpoint = start_receiver(received.clone()).await;
    let otlp = [
        ("PGVAULT_TELEMETRY__OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
    ];

    let broker = tokio::task::spawn_blocking(RabbitMq::start)
        .await
        .expect("join")
        .expect("start RabbitMQ (installed in /usr/lib/rabbitmq/bin)");
    let source = TempCluster::start(SOURCE_PASSWORD).expect("start source PostgreSQL");
    fixtures::pgbench(&source, "shop", 1)
        .await
        .expect("pgbench data");
    let url = broker.url();
    let coordinator_endpoint = endpoint.clone();
    let mut cluster = tokio::task::spawn_blocking(move || {
        PgvaultCluster::start_with_coordinator_env(
            &url,
            0,
            std::net::Ipv4Addr::LOCALHOST.into(),
            &[
                ("PGVAULT_TELEMETRY__OTLP_ENDPOINT", &coordinator_endpoint),
                ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ],
        )
    })
    .await
    .expect("join")
    .expect("start the coordinator");
    let mut worker_env = otlp.to_vec();
    worker_env.push(("PGVAULT_LOG__FORMAT", "json"));
    cluster
        .add_worker_with_env(&worker_env)
        .expect("start a worker");

    let datastore = tempfile::tempdir().expect("datastore dir");
    let mut api = cluster.api().await.expect("connect to the coordinator");
    setup_vault(
        &mut api,
        &format!("file://{}", datastore.path().display()),
        &source,
    )
    .await
    .expect("vault, policy, server, secret");
    let instance = protect(&mut api, "shop").await.expect("protect shop");
    let job = api
        .instances
        .backup_now(BackupNowRequest {
            name: instance.clone(),
            rule: RetentionRuleKind::Default as i32,
            workers: 0,
        })
        .await
        .expect("backup now")
        .into_inner();
    let job = api
        .wait_for_job(&job.name, JOB_TIMEOUT)
        .await
        .expect("the backup ends");
    assert_eq!(
        job.state,
        JobState::Completed as i32,
        "backup failed: {:?}\n{}",
        job.error,
        cluster.logs()
    );
    let trace_id = job.trace_id.clone();
    assert_eq!(trace_id.len(), 32, "GetJob carries the trace id: {job:?}");

    // `pgvault job show` prints it; so does its JSON.
    let shown = cluster
        .cli(&["job", "show", &job.name], None)
        .expect("job show");
    let shown_text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.status.success() && shown_text.contains(&trace_id),
        "job show prints the trace id {trace_id}:\n{shown_text}"
    );
    let json = cluster
        .cli(&["--output", "json", "job", "show", &job.name], None)
        .expect("job show json");
    let json: Value = serde_json::from_slice(&json.stdout).expect("job show --output json");
    assert_eq!(json["trace_id"], trace_id.as_str(), "{json}");

    let spans = wait_for_spans(
        &received,
        &trace_id,
        &[
            "job.create",
            "dispatch",
            "claim",
            "task",
            "heartbeats",
            "backup",
            "schema",
            "data",
            "table",
            "manifest",
            "complete",
            "ClaimTask",
            "CompleteTask",
        ],
    )
    .await;
    let by_name = |name: &str| one(&spans, name);
    let (created_by, create) = by_name("job.create");
    let (dispatched_by, dispatch) = by_name("dispatch");
    let (claimed_by, claim) = by_name("claim");
    let (_, task) = by_name("task");
    let (_, backup) = by_name("backup");
    assert_eq!(created_by, "pgvault-coordinator");
    assert_eq!(dispatched_by, "pgvault-coordinator");
    assert_eq!(claimed_by, "pgvault-worker");
    assert!(create.parent_span_id.is_empty(), "job.create is the root");
    assert_child(create, dispatch);
    assert_child(dispatch, claim);
    assert_child(claim, task);
    assert_child(task, &by_name("heartbeats").1);
    assert_child(task, backup);
    let complete = &by_name("complete").1;
    assert_child(task, complete);
    // The coordinator's side of the worker's calls joins the trace too.
    assert_child(claim, &by_name("ClaimTask").1);
    assert_child(complete, &by_name("CompleteTask").1);
    assert_child(backup, &by_name("schema").1);
    assert_child(backup, &by_name("manifest").1);
    let data = &by_name("data").1;
    assert_child(backup, data);
    let tables: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.name == "table")
        .collect();
    assert!(tables.len() >= 2, "one span per stored object: {tables:?}");
    for table in tables {
        assert_child(data, table);
    }
    // The API's queueing of the job is in its trace, with its log fields.
    let (_, queued) = by_name("backup.queued");
    assert_eq!(
        attribute(queued, "trace_id").as_deref(),
        Some(trace_id.as_str())
    );
    assert_eq!(attribute(queued, "attempt").as_deref(), Some("1"));
    for (service, span) in &spans {
        let coordinator = [
            "job.create",
            "backup.queued",
            "dispatch",
            "ClaimTask",
            "CompleteTask",
        ];
        let expected = if coordinator.contains(&span.name.as_str()) {
            "pgvault-coordinator"
        } else {
            "pgvault-worker"
        };
        assert_eq!(service, expected, "span {} came from {service}", span.name);
    }

    // No attribute anywhere (spans, their events, resources) carries the
    // password, in any trace.
    let everything = format!("{:?}", received.all());
    assert!(
        !everything.contains(SOURCE_PASSWORD),
        "an exported span carries the source's password"
    );

    // Every JSON line the worker logged inside the task names the task.
    let worker_log = cluster.workers[0].log_text();
    let task_lines: Vec<Value> = worker_log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["job_id"] == job.name.trim_start_matches("jobs/"))
        .collect();
    assert!(
        task_lines.iter().any(|l| l["message"] == "task started"),
        "the worker logged its task as JSON:\n{worker_log}"
    );
    let instance_id = instance.rsplit('/').next().expect("instance id");
    let in_spans: Vec<&Value> = task_lines
        .iter()
        .filter(|l| l.get("span").is_some())
        .collect();
    assert!(
        in_spans.iter().any(|l| l["span"] == "backup"),
        "the engine's lines inside its own spans are the task's too:\n{worker_log}"
    );
    for line in in_spans {
        assert_eq!(line["trace_id"], trace_id.as_str(), "{line}");
        assert_eq!(line["attempt"], 1, "{line}");
        if line["span"] != "claim" {
            assert_eq!(line["instance_id"], instance_id, "{line}");
        }
    }

    // A restore of the point is one trace too, with the engine's phases:
    // pre-data, each load, the post-data entries (the primary keys' index
    // builds among them), each table's ANALYZE, then the rest.
    let restore = api
        .restores
        .restore_as_database(RestoreAsDatabaseRequest {
            recovery_point: job.recovery_point.clone(),
            target_database: "shop_restored".into(),
            ..Default::default()
        })
        .await
        .expect("restore as database")
        .into_inner();
    let restore = api
        .wait_for_job(&restore.name, JOB_TIMEOUT)
        .await
        .expect("the restore ends");
    assert_eq!(
        restore.state,
        JobState::Completed as i32,
        "restore failed: {:?}\n{}",
        restore.error,
        cluster.logs()
    );
    let spans = wait_for_spans(
        &received,
        &restore.trace_id,
        &[
            "task",
            "restore",
            "schema",
            "load",
            "pre-data",
            "data",
            "table",
            "post",
            "analyze",
            "sequences",
            "grants",
            "flush",
        ],
    )
    .await;
    let (_, task) = one(&spans, "task");
    let (_, restore_span) = one(&spans, "restore");
    let (_, load) = one(&spans, "load");
    let data = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| s.name == "data")
        .expect("a data span");
    assert_child(task, restore_span);
    assert_child(restore_span, &one(&spans, "schema").1);
    assert_child(restore_span, load);
    for phase in ["pre-data", "sequences", "grants", "flush"] {
        assert_child(load, &one(&spans, phase).1);
    }
    assert_child(load, data);
    let under_data = |name: &str| -> Vec<&Span> {
        spans
            .iter()
            .map(|(_, s)| s)
            .filter(|s| s.name == name && s.parent_span_id == data.span_id)
            .collect()
    };
    assert!(
        under_data("table").len() >= 2,
        "one span per load under data: {:?}",
        spans.iter().map(|(_, s)| &s.name).collect::<Vec<_>>()
    );
    assert!(
        under_data("post")
            .iter()
            .any(|s| attribute(s, "build").as_deref() == Some("true")),
        "an index build span under data"
    );
    assert!(
        !under_data("analyze").is_empty(),
        "an ANALYZE span under data"
    );
}

/// A span's attribute `key` as text (`1`, `true`, the string itself).
fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| {
        match a.value.as_ref()?.value.as_ref()? {
            AnyValue::StringValue(s) => Some(s.clone()),
            AnyValue::IntValue(i) => Some(i.to_string()),
            AnyValue::BoolValue(b) => Some(b.to_string()),
            other => Some(format!("{other:?}")),
        }
    })
}

/// The span of `spans` whose id is `child`'s parent.
fn parent_of<'a>(spans: &'a [(String, Span)], child: &Span) -> Option<&'a Span> {
    spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| s.span_id == child.parent_span_id)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fanned_out_backup_is_one_trace_across_both_workers() {
    let received = Received::default();
    let endpoint = start_receiver(received.clone()).await;
    let broker = tokio::task::spawn_blocking(RabbitMq::start)
        .await
        .expect("join")
        .expect("start RabbitMQ (installed in /usr/lib/rabbitmq/bin)");
    let source = TempCluster::start(SOURCE_PASSWORD).expect("start source PostgreSQL");
    // Scale 1: about 13 MB of accounts, a dozen chunks of 1 MiB.
    fixtures::pgbench(&source, "shop", 1)
        .await
        .expect("pgbench data");
    let url = broker.url();
    let coordinator_endpoint = endpoint.clone();
    let mut cluster = tokio::task::spawn_blocking(move || {
        PgvaultCluster::start_with_coordinator_env(
            &url,
            0,
            std::net::Ipv4Addr::LOCALHOST.into(),
            &[
                ("PGVAULT_TELEMETRY__OTLP_ENDPOINT", &coordinator_endpoint),
                ("OTEL_BSP_SCHEDULE_DELAY", "200"),
                // A quiet log must not quieten the trace.
                ("RUST_LOG", "warn"),
            ],
        )
    })
    .await
    .expect("join")
    .expect("start the coordinator");
    let worker_env = [
        ("PGVAULT_TELEMETRY__OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ("PGVAULT_LOG__FORMAT", "json"),
    ];
    for _ in 0..2 {
        cluster
            .add_worker_with_env(&worker_env)
            .expect("start a worker");
    }

    let datastore = tempfile::tempdir().expect("datastore dir");
    let mut api = cluster.api().await.expect("connect to the coordinator");
    setup_vault(
        &mut api,
        &format!("file://{}", datastore.path().display()),
        &source,
    )
    .await
    .expect("vault, policy, server, secret");
    let instance = protect(&mut api, "shop").await.expect("protect shop");
    let job = api
        .instances
        .backup_now(BackupNowRequest {
            name: instance.clone(),
            rule: RetentionRuleKind::Default as i32,
            workers: 2,
        })
        .await
        .expect("backup now")
        .into_inner();
    let job = api
        .wait_for_job(&job.name, JOB_TIMEOUT)
        .await
        .expect("the backup ends");
    assert_eq!(
        job.state,
        JobState::Completed as i32,
        "backup failed: {:?}\n{}",
        job.error,
        cluster.logs()
    );
    let helpers: std::collections::BTreeSet<&str> = job
        .chunks
        .iter()
        .map(|c| c.worker_id.as_str())
        .filter(|w| !w.is_empty())
        .collect();
    assert!(
        helpers.len() >= 2,
        "chunks stored by both workers (the premise of this test), got {helpers:?}: {job:?}"
    );
    let trace_id = job.trace_id.clone();
    let spans = wait_for_spans(
        &received,
        &trace_id,
        &[
            "job.create",
            "dispatch",
            "claim",
            "task",
            "backup",
            "data",
            "chunks",
            "chunk",
            "OfferChunks",
            "ClaimChunk",
            "CompleteChunk",
            "CompleteTask",
        ],
    )
    .await;

    // The leader's claim and the helper's chunks come from two workers.
    let (_, claim) = one(&spans, "claim");
    let leader = attribute(claim, "worker").expect("the claim names its worker");
    let named = |name: &str| -> Vec<&Span> {
        spans
            .iter()
            .map(|(_, s)| s)
            .filter(|s| s.name == name)
            .collect()
    };
    let chunks_spans = named("chunks");
    let helper_ids: std::collections::BTreeSet<String> = chunks_spans
        .iter()
        .filter_map(|s| attribute(s, "worker"))
        .collect();
    assert!(
        helper_ids.iter().any(|w| *w != leader),
        "a chunks span of a worker other than the leader {leader}: {helper_ids:?}"
    );
    for worker in helper_ids.iter().chain([&leader]) {
        assert!(
            helpers.contains(worker.as_str()),
            "{worker} stored no chunk: {helpers:?}"
        );
    }
    // The helper continues the invitation's dispatch, in the job's trace.
    for chunks in &chunks_spans {
        let parent =
            parent_of(&spans, chunks).expect("the chunks span has its parent in the trace");
        assert_eq!(parent.name, "dispatch", "chunks continues the invitation");
        assert_eq!(attribute(chunks, "attempt").as_deref(), Some("1"));
        assert_eq!(
            attribute(chunks, "trace_id").as_deref(),
            Some(trace_id.as_str())
        );
    }
    for chunk in named("chunk") {
        let parent = parent_of(&spans, chunk).expect("a chunk's parent is in the trace");
        assert_eq!(parent.name, "chunks", "chunk spans are the helper's");
    }
    // The coordinator's side of the helper's calls joins the trace.
    assert!(
        named("ClaimChunk")
            .iter()
            .any(|c| parent_of(&spans, c).is_some_and(|p| p.name == "chunks")),
        "a ClaimChunk span is a child of the helper's chunks span"
    );
    assert!(
        named("CompleteChunk")
            .iter()
            .any(|c| parent_of(&spans, c).is_some_and(|p| p.name == "chunk")),
        "a CompleteChunk span is a child of a helper's chunk span"
    );
    for (service, span) in &spans {
        if ["chunks", "chunk", "claim", "task"].contains(&span.name.as_str()) {
            assert_eq!(
                service, "pgvault-worker",
                "{} came from {service}",
                span.name
            );
        }
    }

    // The helper's JSON lines inside its chunks name the job's task.
    let job_id = job.name.trim_start_matches("jobs/");
    let instance_id = instance.rsplit('/').next().expect("instance id");
    let helper = helper_ids.iter().find(|w| **w != leader).expect("a helper");
    let helper_log = cluster
        .workers
        .iter()
        .find(|w| helper.ends_with(&format!(":{}", w.pid())))
        .unwrap_or_else(|| panic!("no worker process is {helper}"))
        .log_text();
    let chunk_lines: Vec<Value> = helper_log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["span"] == "chunks" || l["span"] == "chunk")
        .collect();
    assert!(
        chunk_lines.iter().any(|l| l["message"] == "chunk stored"),
        "the helper logged its chunks as JSON:\n{helper_log}"
    );
    for line in &chunk_lines {
        assert_eq!(line["job_id"], job_id, "{line}");
        assert_eq!(line["attempt"], 1, "{line}");
        assert_eq!(line["trace_id"], trace_id.as_str(), "{line}");
        if line["span"] == "chunk" {
            assert_eq!(line["instance_id"], instance_id, "{line}");
        }
    }
}
