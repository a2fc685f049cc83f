//! A test agent: a tonic client of `AgentService` and `WorkerService` with
//! an agent's token, as a real agent uses them. It says hello, sends its
//! status every interval the coordinator asks for, answers probe offers by
//! asking the real server with `pgvault-probe` (connecting with the
//! connection the claim hands over), and hands task offers to the test.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgvault_proto::v1 as pb;
use pgvault_proto::v1::agent_service_client::AgentServiceClient;
use pgvault_proto::v1::worker_service_client::WorkerServiceClient;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

/// Attaches one bearer token to every call.
#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Bearer {
    pub fn new(token: &str) -> Bearer {
        Bearer(format!("Bearer {token}").parse().expect("ascii token"))
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

pub type TokenSvc = InterceptedService<Channel, Bearer>;

pub fn agent_client(channel: &Channel, token: &str) -> AgentServiceClient<TokenSvc> {
    AgentServiceClient::with_interceptor(channel.clone(), Bearer::new(token))
}

pub fn worker_client(channel: &Channel, token: &str) -> WorkerServiceClient<TokenSvc> {
    WorkerServiceClient::with_interceptor(channel.clone(), Bearer::new(token))
}

/// A hello of `agent` with a fresh instance id and the spoken protocol.
pub fn hello(agent: &str) -> pb::AgentHello {
    pb::AgentHello {
        agent_id: agent.into(),
        instance_id: uuid::Uuid::new_v4().to_string(),
        version: "0.1.0-test".into(),
        protocol_version: pgvault_proto::AGENT_PROTOCOL_VERSION,
        hostname: "test-host".into(),
        pg_tool_majors: vec![15],
        concurrency: 2,
    }
}

/// One connected test instance.
pub struct TestAgent {
    pub instance_id: String,
    pub welcome: pb::AgentWelcome,
    /// Task offers, in the order they came.
    pub offers: mpsc::Receiver<pb::TaskEnvelope>,
    /// How the coordinator ended the stream, once it did.
    pub ended: Arc<Mutex<Option<Result<(), Status>>>>,
    /// Job ids the next statuses report as running.
    pub running: Arc<Mutex<Vec<String>>>,
    /// Probes this instance answered.
    pub answered: Arc<Mutex<Vec<String>>>,
    outbound: Option<mpsc::Sender<pb::AgentMessage>>,
    tasks: Vec<JoinHandle<()>>,
}

impl TestAgent {
    /// Connects as `hello` says; the coordinator's refusal as the error.
    pub async fn connect(
        channel: &Channel,
        token: &str,
        hello: pb::AgentHello,
    ) -> Result<TestAgent, Status> {
        let (tx, rx) = mpsc::channel::<pb::AgentMessage>(16);
        tx.send(pb::AgentMessage {
            kind: Some(pb::agent_message::Kind::Hello(hello.clone())),
        })
        .await
        .expect("queue hello");
        let mut client = agent_client(channel, token);
        let mut inbound = client.connect(ReceiverStream::new(rx)).await?.into_inner();
        let first = inbound.message().await?;
        let welcome = match first.and_then(|m| m.kind) {
            Some(pb::coordinator_message::Kind::Welcome(w)) => w,
            other => panic!("expected welcome, got {other:?}"),
        };
        let (offers_tx, offers) = mpsc::channel(64);
        let ended = Arc::new(Mutex::new(None));
        let running = Arc::new(Mutex::new(Vec::new()));
        let answered = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let ended = ended.clone();
            let answered = answered.clone();
            let probes = agent_client(channel, token);
            let instance = hello.instance_id.clone();
            tokio::spawn(async move {
                let outcome = loop {
                    match inbound.message().await {
                        Ok(Some(message)) => match message.kind {
                            Some(pb::coordinator_message::Kind::Task(task)) => {
                                drop(offers_tx.send(task).await);
                            }
                            Some(pb::coordinator_message::Kind::Probe(offer)) => {
                                let (probes, instance, answered) =
                                    (probes.clone(), instance.clone(), answered.clone());
                                tokio::spawn(async move {
                                    if answer_probe(probes, &instance, &offer.probe_id).await {
                                        answered.lock().unwrap().push(offer.probe_id);
                                    }
                                });
                            }
                            other => panic!("unexpected message {other:?}"),
                        },
                        Ok(None) => break Ok(()),
                        Err(status) => break Err(status),
                    }
                };
                *ended.lock().unwrap() = Some(outcome);
            })
        };
        let ticker = {
            let tx = tx.clone();
            let running = running.clone();
            let every = Duration::from_secs(u64::from(welcome.status_interval_seconds.max(1)));
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let running_job_ids = running.lock().unwrap().clone();
                    let status = pb::AgentMessage {
                        kind: Some(pb::agent_message::Kind::Status(pb::AgentStatus {
                            running_job_ids,
                        })),
                    };
                    if tx.send(status).await.is_err() {
                        return;
                    }
                }
            })
        };
        Ok(TestAgent {
            instance_id: hello.instance_id,
            welcome,
            offers,
            ended,
            running,
            answered,
            outbound: Some(tx),
            tasks: vec![reader, ticker],
        })
    }

    /// The next task offer, waiting up to `within`.
    pub async fn next_offer(&mut self, within: Duration) -> pb::TaskEnvelope {
        tokio::time::timeout(within, self.offers.recv())
            .await
            .unwrap_or_else(|_| panic!("no task offer within {within:?}"))
            .expect("offers open")
    }

    /// The next offer of job `job_id`, passing over repeated offers of
    /// other jobs, waiting up to `within` in all.
    pub async fn offer_of(&mut self, job_id: &str, within: Duration) -> pb::TaskEnvelope {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let offer = tokio::time::timeout(left, self.offers.recv())
                .await
                .unwrap_or_else(|_| panic!("no offer of job {job_id} within {within:?}"))
                .expect("offers open");
            if offer.job_id == job_id {
                return offer;
            }
        }
    }

    /// Sends a message as is (garbage tests).
    pub async fn send(&self, message: pb::AgentMessage) {
        self.outbound
            .as_ref()
            .expect("stream open")
            .send(message)
            .await
            .expect("send");
    }

    /// Waits until the coordinator ended the stream; how it did.
    pub async fn ending(&self, within: Duration) -> Result<(), Status> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(outcome) = self.ended.lock().unwrap().clone() {
                return outcome;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the stream did not end within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Closes the stream from the agent's side, as a crashed agent would.
    pub fn drop_stream(mut self) {
        self.outbound = None;
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

/// Claims the probe and answers it by asking the server; true when this
/// instance answered it.
async fn answer_probe(mut client: AgentServiceClient<TokenSvc>, instance: &str, id: &str) -> bool {
    let claimed = client
        .claim_probe(pb::ClaimProbeRequest {
            probe_id: id.into(),
            instance_id: instance.into(),
        })
        .await
        .expect("claim probe")
        .into_inner();
    if !claimed.claimed {
        return false;
    }
    let probe = claimed.probe.expect("a claimed probe");
    let result = ask(&probe).await;
    client
        .complete_probe(pb::CompleteProbeRequest {
            probe_id: id.into(),
            result: Some(result),
        })
        .await
        .expect("complete probe");
    true
}

/// What a real agent does with a probe: connect with the handed-over
/// connection and ask with `pgvault-probe`.
async fn ask(probe: &pb::Probe) -> pb::complete_probe_request::Result {
    use pb::complete_probe_request::Result as R;
    let spec = probe.connection.clone().expect("a connection");
    let params = pgvault_pgconn::ConnParams {
        host: Some(spec.host),
        port: u16::try_from(spec.port).ok(),
        database: Some(spec.database),
        user: Some(spec.user),
        password: Some(pgvault_pgconn::Password::new(spec.password)),
        ssl_mode: pgvault_pgconn::SslMode::parse(&spec.ssl_mode).unwrap_or_default(),
        ..Default::default()
    };
    let connection =
        match pgvault_pgconn::connect(&params, &pgvault_pgconn::ConnectOptions::default()).await {
            Ok(c) => c,
            Err(e) => {
                return R::Error(pb::JobError {
                    code: e.code().as_str().into(),
                    message: e.to_string(),
                    recommended_action: e.recommended_action().into(),
                });
            }
        };
    let unanswered = |e: pgvault_probe::ProbeError| {
        R::Error(pb::JobError {
            code: "SystemErrorUnknown".into(),
            message: e.to_string(),
            recommended_action: String::new(),
        })
    };
    match probe.kind.as_ref().expect("a probe kind") {
        pb::probe::Kind::ListDatabases(_) => {
            match pgvault_probe::list_databases(&connection.client).await {
                Ok(databases) => R::Databases(pb::ListDatabasesResult { databases }),
                Err(e) => unanswered(e),
            }
        }
        pb::probe::Kind::Readiness(_) => {
            let version = pgvault_probe::server_version_num(&connection.client)
                .await
                .unwrap_or_default();
            match pgvault_probe::privileges::check(&connection.client).await {
                Ok(missing) => R::Readiness(pb::ReadinessResult {
                    missing: Some((&missing).into()),
                    server_version_num: version,
                }),
                Err(e) => unanswered(e),
            }
        }
    }
}
