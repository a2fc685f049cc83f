//! A fake coordinator for the agent's tests: `AgentService` (Connect,
//! ClaimProbe, CompleteProbe) and `WorkerService` (claim, heartbeat,
//! complete, fail) served by tonic on a loopback port, recording what the
//! agent sends. Tests offer tasks and probes down the agent's stream, end
//! the stream, refuse connections, and stop and restart the server on the
//! same port; the recorded state survives a restart, as a real
//! coordinator's does in its database.

#![allow(clippy::result_large_err)] // tonic's Status, as tonic services return it

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgvault_proto::v1::agent_service_server::{AgentService, AgentServiceServer};
use pgvault_proto::v1::worker_service_server::{WorkerService, WorkerServiceServer};
use pgvault_proto::v1::*;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

pub const TOKEN: &str = "agent-test-token";
/// Lease of claimed tasks: the runner heartbeats every second.
const LEASE_TTL_SECONDS: u32 = 3;

/// What the agent did, and what the tests set up.
#[derive(Default)]
pub struct State {
    /// Connect calls, refused ones included.
    pub connects: usize,
    /// Calls refused for a missing or wrong token.
    pub unauthenticated: usize,
    pub hellos: Vec<AgentHello>,
    pub statuses: Vec<(Instant, AgentStatus)>,
    /// Sender of the open stream's messages to the agent.
    stream: Option<mpsc::Sender<Result<CoordinatorMessage, Status>>>,
    /// Refuse Connect with this status.
    pub refuse: Option<Status>,
    pub jobs: HashMap<String, Task>,
    leases: HashMap<String, String>,
    pub heartbeats: Vec<String>,
    pub completed: HashMap<String, CompleteTaskRequest>,
    pub failed: HashMap<String, FailTaskRequest>,
    /// CompleteTask waits (≤ 5 s) for a status that lists the job.
    pub complete_after_running_status: bool,
    pub probes: HashMap<String, Probe>,
    pub probe_claims: Vec<(String, String)>,
    pub answers: HashMap<String, CompleteProbeRequest>,
}

/// The fake's state, shared by every server started on it. Cheap to clone.
#[derive(Clone, Default)]
pub struct Fake(Arc<Shared>);

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Notify,
}

impl Fake {
    /// Reads or changes the state; wakes whoever waits in [`Fake::until`].
    pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        let result = f(&mut state);
        drop(state);
        self.0.changed.notify_waiters();
        result
    }

    /// Reads the state without waking anyone (a waiter that woke itself
    /// would spin).
    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        let state = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&state)
    }

    /// Waits up to `within` for `condition` to hold.
    pub async fn until(&self, within: Duration, what: &str, condition: impl Fn(&State) -> bool) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let changed = self.0.changed.notified();
            if self.read(&condition) {
                return;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() && !self.read(&condition) {
                panic!("timed out after {within:?} waiting for {what}");
            }
        }
    }

    /// Sends a message down the open stream; false when none is open.
    pub fn send(&self, message: coordinator_message::Kind) -> bool {
        self.send_raw(CoordinatorMessage {
            kind: Some(message),
        })
    }

    /// Sends anything down the open stream, garbage included.
    pub fn send_raw(&self, message: CoordinatorMessage) -> bool {
        let stream = self.with(|s| s.stream.clone());
        stream.is_some_and(|stream| stream.try_send(Ok(message)).is_ok())
    }

    /// Ends the open stream, as a coordinator that lost it would.
    pub fn drop_stream(&self) {
        self.with(|s| s.stream = None);
    }

    /// Offers the job every half second until it is claimed, as the
    /// coordinator's dispatcher does.
    pub async fn offer_until_claimed(&self, job_id: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.read(|s| s.leases.contains_key(job_id)) {
            assert!(Instant::now() < deadline, "job {job_id} was never claimed");
            self.send(coordinator_message::Kind::Task(TaskEnvelope {
                job_id: job_id.to_string(),
                attempt: 1,
                trace_context: HashMap::new(),
                chunk_invite: false,
            }));
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let expected = format!("Bearer {TOKEN}");
        match request.metadata().get("authorization") {
            Some(value) if value.as_bytes() == expected.as_bytes() => Ok(()),
            _ => {
                self.with(|s| s.unauthenticated += 1);
                Err(Status::unauthenticated("missing or wrong bearer token"))
            }
        }
    }

    fn leased(&self, job_id: &str, token: &str) -> Result<(), Status> {
        self.with(|s| match s.leases.get(job_id) {
            Some(lease) if lease == token => Ok(()),
            _ => Err(Status::failed_precondition("stale lease")),
        })
    }
}

#[tonic::async_trait]
impl AgentService for Fake {
    async fn create_agent(
        &self,
        _: Request<CreateAgentRequest>,
    ) -> Result<Response<CreateAgentResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn get_agent(&self, _: Request<GetAgentRequest>) -> Result<Response<Agent>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn list_agents(
        &self,
        _: Request<ListAgentsRequest>,
    ) -> Result<Response<ListAgentsResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn delete_agent(
        &self,
        _: Request<DeleteAgentRequest>,
    ) -> Result<Response<DeleteAgentResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    type ConnectStream = ReceiverStream<Result<CoordinatorMessage, Status>>;

    async fn connect(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        self.authorize(&request)?;
        if let Some(status) = self.with(|s| {
            s.connects += 1;
            s.refuse.clone()
        }) {
            return Err(status);
        }
        let mut inbound = request.into_inner();
        let hello = match inbound.message().await?.and_then(|m| m.kind) {
            Some(agent_message::Kind::Hello(hello)) => hello,
            _ => return Err(Status::invalid_argument("the first message must be hello")),
        };
        let (sender, receiver) = mpsc::channel(64);
        let welcome = AgentWelcome {
            coordinator_version: "fake".into(),
            status_interval_seconds: 1,
        };
        let _ = sender
            .send(Ok(CoordinatorMessage {
                kind: Some(coordinator_message::Kind::Welcome(welcome)),
            }))
            .await;
        self.with(|s| {
            s.hellos.push(hello);
            s.stream = Some(sender);
        });
        let fake = self.clone();
        tokio::spawn(async move {
            while let Ok(Some(message)) = inbound.message().await {
                if let Some(agent_message::Kind::Status(status)) = message.kind {
                    fake.with(|s| s.statuses.push((Instant::now(), status)));
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }

    async fn claim_probe(
        &self,
        request: Request<ClaimProbeRequest>,
    ) -> Result<Response<ClaimProbeResponse>, Status> {
        self.authorize(&request)?;
        let request = request.into_inner();
        let probe = self.with(|s| {
            s.probe_claims
                .push((request.probe_id.clone(), request.instance_id.clone()));
            s.probes.remove(&request.probe_id)
        });
        Ok(Response::new(ClaimProbeResponse {
            claimed: probe.is_some(),
            reason: if probe.is_some() {
                String::new()
            } else {
                "claimed already".into()
            },
            probe,
        }))
    }

    async fn complete_probe(
        &self,
        request: Request<CompleteProbeRequest>,
    ) -> Result<Response<CompleteProbeResponse>, Status> {
        self.authorize(&request)?;
        let request = request.into_inner();
        self.with(|s| s.answers.insert(request.probe_id.clone(), request));
        Ok(Response::new(CompleteProbeResponse {}))
    }
}

/// This fake serves an agent's own tasks: agents' jobs are never fanned
/// out to helpers (the coordinator invites none), and no test here asks
/// for a fan-out.
fn fans_out_not() -> Status {
    Status::unimplemented("the fake coordinator does not fan backups out")
}

#[tonic::async_trait]
impl WorkerService for Fake {
    async fn offer_chunks(
        &self,
        _: Request<OfferChunksRequest>,
    ) -> Result<Response<OfferChunksResponse>, Status> {
        Err(fans_out_not())
    }

    async fn claim_chunk(
        &self,
        _: Request<ClaimChunkRequest>,
    ) -> Result<Response<ClaimChunkResponse>, Status> {
        Err(fans_out_not())
    }

    async fn heartbeat_chunk(
        &self,
        _: Request<HeartbeatChunkRequest>,
    ) -> Result<Response<HeartbeatChunkResponse>, Status> {
        Err(fans_out_not())
    }

    async fn complete_chunk(
        &self,
        _: Request<CompleteChunkRequest>,
    ) -> Result<Response<CompleteChunkResponse>, Status> {
        Err(fans_out_not())
    }

    async fn fail_chunk(
        &self,
        _: Request<FailChunkRequest>,
    ) -> Result<Response<FailChunkResponse>, Status> {
        Err(fans_out_not())
    }

    async fn list_chunks(
        &self,
        _: Request<ListChunksRequest>,
    ) -> Result<Response<ListChunksResponse>, Status> {
        Err(fans_out_not())
    }
    async fn claim_task(
        &self,
        request: Request<ClaimTaskRequest>,
    ) -> Result<Response<ClaimTaskResponse>, Status> {
        self.authorize(&request)?;
        let job_id = request.into_inner().job_id;
        let response = self.with(|s| -> Result<ClaimTaskResponse, Status> {
            let task = s
                .jobs
                .get(&job_id)
                .cloned()
                .ok_or_else(|| Status::not_found("no such job"))?;
            if s.leases.contains_key(&job_id) {
                return Ok(ClaimTaskResponse {
                    claimed: false,
                    reason: "leased already".into(),
                    ..ClaimTaskResponse::default()
                });
            }
            let lease_token = uuid::Uuid::new_v4().to_string();
            s.leases.insert(job_id.clone(), lease_token.clone());
            Ok(ClaimTaskResponse {
                claimed: true,
                lease_token,
                lease_ttl_seconds: LEASE_TTL_SECONDS,
                task: Some(task),
                reason: String::new(),
            })
        })?;
        Ok(Response::new(response))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        self.authorize(&request)?;
        let request = request.into_inner();
        self.leased(&request.job_id, &request.lease_token)?;
        self.with(|s| s.heartbeats.push(request.job_id));
        Ok(Response::new(HeartbeatResponse {
            cancel_requested: false,
        }))
    }

    async fn complete_task(
        &self,
        request: Request<CompleteTaskRequest>,
    ) -> Result<Response<CompleteTaskResponse>, Status> {
        self.authorize(&request)?;
        let request = request.into_inner();
        self.leased(&request.job_id, &request.lease_token)?;
        if self.with(|s| s.complete_after_running_status) {
            let job_id = request.job_id.clone();
            let listed = move |s: &State| {
                s.statuses
                    .iter()
                    .any(|(_, status)| status.running_job_ids.contains(&job_id))
            };
            let deadline = Instant::now() + Duration::from_secs(5);
            while !self.read(&listed) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        self.with(|s| s.completed.insert(request.job_id.clone(), request));
        Ok(Response::new(CompleteTaskResponse {}))
    }

    async fn fail_task(
        &self,
        request: Request<FailTaskRequest>,
    ) -> Result<Response<FailTaskResponse>, Status> {
        self.authorize(&request)?;
        let request = request.into_inner();
        self.leased(&request.job_id, &request.lease_token)?;
        self.with(|s| s.failed.insert(request.job_id.clone(), request));
        Ok(Response::new(FailTaskResponse {}))
    }
}

/// One running server over a [`Fake`].
pub struct Server {
    pub fake: Fake,
    pub addr: SocketAddr,
    /// PEM certificate and key when serving TLS.
    tls: Option<(String, String)>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Serves `fake` on a free loopback port.
    pub async fn start(fake: Fake) -> Server {
        Server::start_on(fake, SocketAddr::from(([127, 0, 0, 1], 0)), None).await
    }

    /// Serves `fake` over TLS with this PEM certificate and key.
    pub async fn start_tls(fake: Fake, certificate: &str, key: &str) -> Server {
        let tls = Some((certificate.to_string(), key.to_string()));
        Server::start_on(fake, SocketAddr::from(([127, 0, 0, 1], 0)), tls).await
    }

    async fn start_on(fake: Fake, addr: SocketAddr, tls: Option<(String, String)>) -> Server {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("cannot listen on {addr}: {e}"));
        let addr = listener.local_addr().expect("local address");
        let incoming = TcpIncoming::from_listener(listener, true, None).expect("incoming");
        let (stop, stopped) = oneshot::channel::<()>();
        let service = fake.clone();
        pgvault_proto::tls::install_crypto_provider();
        let mut builder = tonic::transport::Server::builder();
        if let Some((certificate, key)) = &tls {
            let identity = Identity::from_pem(certificate, key);
            builder = builder
                .tls_config(ServerTlsConfig::new().identity(identity))
                .expect("TLS configuration");
        }
        let task = tokio::spawn(async move {
            builder
                .add_service(AgentServiceServer::new(service.clone()))
                .add_service(WorkerServiceServer::new(service))
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await
                .expect("fake coordinator serves");
        });
        Server {
            fake,
            addr,
            tls,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops serving: ends the agent's stream, then shuts down.
    pub async fn stop(&mut self) {
        self.fake.drop_stream();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("the fake coordinator stops within 10 s")
                .expect("the fake coordinator's task");
        }
    }

    /// Stops, stays down for `down`, and serves again on the same port.
    pub async fn restart(&mut self, down: Duration) {
        self.stop().await;
        tokio::time::sleep(down).await;
        *self = Server::start_on(self.fake.clone(), self.addr, self.tls.clone()).await;
    }
}
