//! The router, driven with `oneshot` requests against an in-memory API: a
//! gRPC service that answers a few RPCs per token ("owner-token" may do
//! everything, "reader-token" only read, like the access gate's
//! BackupReader) and records every call it gets. Covers sign-in and
//! sessions, CSRF and origin checks, hidden actions and the 403 of a
//! forged form, and escaping of what the API returns. `live` covers the
//! job page's event stream against a `WatchJob` the test drives.

// The fake answers as tonic handlers do, with a `Status` by value.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use pgvault_proto::v1 as pb;
use tonic::Status;
use tonic::body::BoxBody;
use tower::ServiceExt;
use tower_service::Service;

use super::{AppState, router};
use crate::api::ApiChannel;
use crate::session::Sessions;

mod live;

const OWNER: &str = "owner-token";
const READER: &str = "reader-token";
const INSTANCE: &str = "vaults/prod/backupInstances/i1";
const HOSTILE: &str = "<script>alert(\"pwned\")</script>";

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Route =
    Arc<dyn Fn(http::Request<BoxBody>) -> BoxFuture<http::Response<BoxBody>> + Send + Sync>;

/// How the fake answers one RPC: given the caller's token and the request.
type Handler<Req, Res> = Arc<dyn Fn(&str, Req) -> Result<Res, Status> + Send + Sync>;

/// The messages of a server-streaming RPC of the fake.
type MessageStream<Res> = tokio_stream::wrappers::ReceiverStream<Result<Res, Status>>;

/// The bearer token a call carries.
fn token_of<Req>(request: &tonic::Request<Req>) -> String {
    request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string()
}

/// One unary RPC of the fake, as a tonic server sees it.
struct Unary<Req, Res>(Handler<Req, Res>);

impl<Req: Send + 'static, Res: Send + 'static> tonic::server::UnaryService<Req>
    for Unary<Req, Res>
{
    type Response = Res;
    type Future = futures::future::Ready<Result<tonic::Response<Res>, Status>>;

    fn call(&mut self, request: tonic::Request<Req>) -> Self::Future {
        let token = token_of(&request);
        futures::future::ready((self.0)(&token, request.into_inner()).map(tonic::Response::new))
    }
}

/// One server-streaming RPC of the fake.
struct ServerStreaming<Req, Res>(Handler<Req, MessageStream<Res>>);

impl<Req: Send + 'static, Res: Send + 'static> tonic::server::ServerStreamingService<Req>
    for ServerStreaming<Req, Res>
{
    type Response = Res;
    type ResponseStream = MessageStream<Res>;
    type Future = futures::future::Ready<Result<tonic::Response<MessageStream<Res>>, Status>>;

    fn call(&mut self, request: tonic::Request<Req>) -> Self::Future {
        let token = token_of(&request);
        futures::future::ready((self.0)(&token, request.into_inner()).map(tonic::Response::new))
    }
}

/// The in-memory API: routes by gRPC path, and the log of calls.
#[derive(Clone, Default)]
struct FakeApi {
    routes: Arc<HashMap<String, Route>>,
    calls: Arc<Mutex<Vec<String>>>,
}

impl FakeApi {
    fn unary<Req, Res>(
        mut self,
        path: &str,
        answer: impl Fn(&str, Req) -> Result<Res, Status> + Send + Sync + 'static,
    ) -> Self
    where
        Req: prost::Message + Default + Send + 'static,
        Res: prost::Message + Send + 'static,
    {
        let answer: Handler<Req, Res> = Arc::new(move |token: &str, req: Req| match token {
            OWNER | READER => answer(token, req),
            _ => Err(Status::unauthenticated("the API token is not valid")),
        });
        let route: Route = Arc::new(move |request| {
            let answer = answer.clone();
            Box::pin(async move {
                let mut grpc =
                    tonic::server::Grpc::new(tonic::codec::ProstCodec::<Res, Req>::default());
                grpc.unary(Unary(answer), request).await
            })
        });
        Arc::get_mut(&mut self.routes)
            .expect("routes are added before use")
            .insert(format!("/pgvault.v1.{path}"), route);
        self
    }

    /// Adds a server-streaming RPC: `answer` gives the stream of messages.
    fn streaming<Req, Res>(
        mut self,
        path: &str,
        answer: impl Fn(&str, Req) -> Result<MessageStream<Res>, Status> + Send + Sync + 'static,
    ) -> Self
    where
        Req: prost::Message + Default + Send + 'static,
        Res: prost::Message + Send + 'static,
    {
        let answer: Handler<Req, MessageStream<Res>> =
            Arc::new(move |token: &str, req: Req| match token {
                OWNER | READER => answer(token, req),
                _ => Err(Status::unauthenticated("the API token is not valid")),
            });
        let route: Route = Arc::new(move |request| {
            let answer = answer.clone();
            Box::pin(async move {
                let mut grpc =
                    tonic::server::Grpc::new(tonic::codec::ProstCodec::<Res, Req>::default());
                grpc.server_streaming(ServerStreaming(answer), request)
                    .await
            })
        });
        Arc::get_mut(&mut self.routes)
            .expect("routes are added before use")
            .insert(format!("/pgvault.v1.{path}"), route);
        self
    }

    fn called(&self, path: &str) -> bool {
        self.calls.lock().unwrap().iter().any(|c| c.ends_with(path))
    }
}

impl Service<http::Request<BoxBody>> for FakeApi {
    type Response = http::Response<BoxBody>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<BoxBody>) -> Self::Future {
        let path = request.uri().path().to_string();
        self.calls.lock().unwrap().push(path.clone());
        let route = self.routes.get(&path).cloned();
        Box::pin(async move {
            Ok(match route {
                Some(route) => route(request).await,
                None => Status::unimplemented(format!("the fake API has no {path}")).into_http(),
            })
        })
    }
}

fn ts(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

/// Actions every role may see; the rest only the owner.
fn may(token: &str, rpc: &str) -> bool {
    token == OWNER || rpc.starts_with("List") || rpc.starts_with("Get")
}

fn fake_api() -> FakeApi {
    FakeApi::default()
        .unary("AccessService/TestPermissions", |token, r: pb::TestPermissionsRequest| {
            Ok(pb::TestPermissionsResponse {
                permissions: r.permissions.into_iter().filter(|p| may(token, p)).collect(),
                principal: "tokens/00000000-0000-4000-8000-000000000001".into(),
                display_name: if token == OWNER { "ops-owner".into() } else { "auditor".into() },
            })
        })
        .unary("VaultService/ListVaults", |_, _: pb::ListVaultsRequest| {
            Ok(pb::ListVaultsResponse {
                vaults: vec![pb::Vault {
                    name: "vaults/prod".into(),
                    region: "local".into(),
                    standard_datastore: "file:///srv/backups".into(),
                    description: HOSTILE.into(),
                    ..Default::default()
                }],
                next_page_token: String::new(),
            })
        })
        .unary("BackupInstanceService/ListBackupInstances", |_, _: pb::ListBackupInstancesRequest| {
            Ok(pb::ListBackupInstancesResponse {
                backup_instances: vec![instance()],
                next_page_token: String::new(),
            })
        })
        .unary("BackupInstanceService/GetBackupInstance", |_, _: pb::GetBackupInstanceRequest| {
            Ok(instance())
        })
        .unary("PolicyService/ListPolicies", |_, _: pb::ListPoliciesRequest| {
            Ok(pb::ListPoliciesResponse {
                policies: vec![policy()],
                next_page_token: String::new(),
            })
        })
        .unary("PolicyService/GetPolicy", |_, _: pb::GetPolicyRequest| Ok(policy()))
        .unary("VaultService/GetVault", |_, r: pb::GetVaultRequest| {
            Ok(pb::Vault {
                name: r.name,
                region: "local".into(),
                standard_datastore: "file:///srv/backups".into(),
                soft_delete_days: 30,
                lock_time: ts(1_800_000_000),
                encryption: "aes-256-gcm".into(),
                key_version: 2,
                ..Default::default()
            })
        })
        .unary("RecoveryPointService/ListRecoveryPoints", |_, r: pb::ListRecoveryPointsRequest| {
            Ok(pb::ListRecoveryPointsResponse {
                recovery_points: vec![if r.copies_only { copies_only_point() } else { point() }],
                next_page_token: String::new(),
            })
        })
        .unary("JobService/ListJobs", |_, _: pb::ListJobsRequest| {
            Ok(pb::ListJobsResponse {
                jobs: vec![pb::Job {
                    name: "jobs/j1".into(),
                    operation: pb::Operation::OnDemandBackup as i32,
                    state: pb::JobState::Failed as i32,
                    vault: "vaults/prod".into(),
                    backup_instance: INSTANCE.into(),
                    create_time: ts(1_700_000_000),
                    error: Some(pb::JobError {
                        code: "UserErrorDBUserAuthFailed".into(),
                        message: HOSTILE.into(),
                        recommended_action: "check the password".into(),
                    }),
                    ..Default::default()
                }],
                next_page_token: String::new(),
            })
        })
        .unary("BackupInstanceService/BackupNow", |token, r: pb::BackupNowRequest| {
            if !may(token, "BackupNow") {
                return Err(Status::permission_denied(
                    "token \"auditor\" may not call BackupNow: it needs the BackupNow permission",
                ));
            }
            assert_eq!(r.name, INSTANCE);
            Ok(pb::Job {
                name: "jobs/j2".into(),
                ..Default::default()
            })
        })
}

/// A point of the instance with a verify, a failed drill and one copy.
fn point() -> pb::RecoveryPoint {
    pb::RecoveryPoint {
        name: format!("{INSTANCE}/recoveryPoints/p1"),
        snapshot_time: ts(1_700_000_000),
        tier: pb::DatastoreTier::Standard as i32,
        retention_tag: pb::RetentionRuleKind::Default as i32,
        stored_bytes: 3 * 1024 * 1024,
        last_verify_result: "ok".into(),
        last_drill_result: "failed".into(),
        last_drill_error_code: "DrillChecksumMismatch".into(),
        copies: vec![copy("az://dr-copies")],
        ..Default::default()
    }
}

/// An older point whose own objects expired; its copy lives on.
fn copies_only_point() -> pb::RecoveryPoint {
    pb::RecoveryPoint {
        name: format!("{INSTANCE}/recoveryPoints/p0"),
        snapshot_time: ts(1_690_000_000),
        copies_only: true,
        copies: vec![copy("az://dr-copies")],
        ..Default::default()
    }
}

fn copy(datastore: &str) -> pb::RecoveryPointCopy {
    pb::RecoveryPointCopy {
        datastore: datastore.into(),
        state: "COPIED".into(),
        ..Default::default()
    }
}

fn instance() -> pb::BackupInstance {
    pb::BackupInstance {
        name: INSTANCE.into(),
        server: "servers/pg1".into(),
        database: "shop<b>".into(),
        policy: "vaults/prod/policies/nightly".into(),
        secret: "secrets/shop".into(),
        protection_state: pb::ProtectionState::Configured as i32,
        ..Default::default()
    }
}

fn policy() -> pb::Policy {
    pb::Policy {
        name: "vaults/prod/policies/nightly".into(),
        schedule: Some(pb::Schedule {
            weekdays: vec![1, 4],
            time_of_day: "02:30".into(),
            time_zone: "Europe/Berlin".into(),
        }),
        retention_rules: vec![pb::RetentionRule {
            kind: pb::RetentionRuleKind::Default as i32,
            standard_duration: "P30D".into(),
            archive_duration: String::new(),
        }],
        next_run_time: ts(1_800_000_000),
        ..Default::default()
    }
}

struct Console {
    api: FakeApi,
    state: AppState,
}

/// What one request got back.
struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
}

impl Answer {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(String::from)
    }

    /// The value of the hidden `csrf` field of the page.
    fn csrf(&self) -> String {
        csrf_of(&self.body)
    }
}

/// The value of the hidden `csrf` field of a page.
fn csrf_of(body: &str) -> String {
    let at = body.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    body[at..at + 64].to_string()
}

/// A signed-in browser: its session cookie and CSRF token.
struct Browser {
    cookie: String,
    csrf: String,
}

impl Console {
    fn new() -> Console {
        Console::serving(fake_api())
    }

    /// A console over `api`, with the usual session limits.
    fn serving(api: FakeApi) -> Console {
        Console::with_api(
            api,
            Sessions::new(Duration::from_secs(600), Duration::from_secs(3600)),
        )
    }

    fn with_sessions(sessions: Sessions) -> Console {
        Console::with_api(fake_api(), sessions)
    }

    fn with_api(api: FakeApi, sessions: Sessions) -> Console {
        let state = AppState::new(ApiChannel::new(api.clone()), Arc::new(sessions), false);
        Console { api, state }
    }

    async fn send(&self, request: Request<Body>) -> Answer {
        let response = router(self.state.clone())
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).to_string(),
        }
    }

    async fn get(&self, path: &str, cookie: &str) -> Answer {
        self.send(
            Request::get(path)
                .header(header::HOST, "console.test")
                .header(header::COOKIE, cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    async fn post(&self, path: &str, cookie: &str, form: &str, origin: Option<&str>) -> Answer {
        let mut request = Request::post(path)
            .header(header::HOST, "console.test")
            .header(header::COOKIE, cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(origin) = origin {
            request = request.header(header::ORIGIN, origin);
        }
        self.send(request.body(Body::from(form.to_string())).unwrap())
            .await
    }

    /// Signs in with `token` through the form, as a browser would.
    async fn sign_in(&self, token: &str) -> Browser {
        let form = self.get("/", "").await;
        let nonce = form.cookie("pgv_signin").expect("a sign-in cookie");
        let nonce = nonce.split(';').next().unwrap().to_string();
        let answer = self
            .post(
                "/signin",
                &nonce,
                &format!("token={token}&csrf={}", form.csrf()),
                Some("http://console.test"),
            )
            .await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        assert_eq!(answer.location(), "/overview");
        let cookie = answer.cookie("pgv_session").expect("a session cookie");
        let cookie = cookie.split(';').next().unwrap().to_string();
        let page = self.get("/overview", &cookie).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        Browser {
            csrf: page.csrf(),
            cookie,
        }
    }
}

#[tokio::test]
async fn signing_in_starts_a_session_whose_cookie_holds_only_a_random_id() {
    let console = Console::new();
    let form = console.get("/", "").await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains("name=\"token\""));
    let nonce = form.cookie("pgv_signin").unwrap();
    let answer = console
        .post(
            "/signin",
            nonce.split(';').next().unwrap(),
            &format!("token={OWNER}&csrf={}", form.csrf()),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    let cookie = answer.cookie("pgv_session").unwrap();
    assert!(
        cookie.ends_with("; Path=/; HttpOnly; SameSite=Strict"),
        "{cookie}"
    );
    let id = cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("pgv_session=");
    assert_eq!(id.len(), 64);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(!cookie.contains(OWNER));
    let overview = console.get("/overview", &format!("pgv_session={id}")).await;
    assert!(
        overview.body.contains("ops-owner"),
        "who signed in is shown"
    );
    assert!(
        !overview.body.contains(OWNER),
        "the token never reaches a page"
    );
}

#[tokio::test]
async fn an_invalid_token_is_refused_without_being_echoed() {
    let console = Console::new();
    let form = console.get("/", "").await;
    let nonce = form.cookie("pgv_signin").unwrap();
    let answer = console
        .post(
            "/signin",
            nonce.split(';').next().unwrap(),
            &format!("token=pgv_wrong-guess&csrf={}", form.csrf()),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(answer.body.contains("not valid"), "{}", answer.body);
    assert!(!answer.body.contains("pgv_wrong-guess"));
    assert!(answer.cookie("pgv_session").is_none());
    assert_eq!(console.state.sessions.len(), 0);
}

#[tokio::test]
async fn the_sign_in_form_only_works_from_this_console_in_this_browser() {
    let console = Console::new();
    let form = console.get("/", "").await;
    let nonce = form.cookie("pgv_signin").unwrap();
    let nonce = nonce.split(';').next().unwrap();
    let body = format!("token={OWNER}&csrf={}", form.csrf());
    // No nonce cookie (another browser), a wrong token, another site.
    let cases = [
        ("", body.clone(), None),
        (nonce, format!("token={OWNER}&csrf=00"), None),
        (nonce, body.clone(), Some("http://evil.test")),
    ];
    for (cookie, form, origin) in cases {
        let answer = console.post("/signin", cookie, &form, origin).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{form} {origin:?}");
        assert!(answer.cookie("pgv_session").is_none());
    }
    assert!(
        !console.api.called("TestPermissions"),
        "refused before any API call"
    );
}

#[tokio::test]
async fn pages_without_a_session_go_to_sign_in() {
    let console = Console::new();
    for path in [
        "/overview",
        "/jobs",
        "/jobs/j1",
        "/jobs/j1/events",
        "/configure",
    ] {
        let answer = console.get(path, "pgv_session=not-a-session").await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(answer.location(), "/?signin=expired", "{path}");
    }
    assert!(console.api.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_post_without_the_sessions_csrf_token_is_refused_before_the_api() {
    let console = Console::new();
    let owner = console.sign_in(OWNER).await;
    let other = console.sign_in(OWNER).await;
    let path = "/vaults/prod/instances/i1/backup";
    for form in [
        "rule=RETENTION_RULE_KIND_DEFAULT".to_string(),
        "rule=RETENTION_RULE_KIND_DEFAULT&csrf=".to_string(),
        format!("rule=RETENTION_RULE_KIND_DEFAULT&csrf={}", other.csrf),
    ] {
        let answer = console.post(path, &owner.cookie, &form, None).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{form}");
        assert!(answer.body.contains("CSRF"), "{}", answer.body);
    }
    let cross_site = console
        .post(
            path,
            &owner.cookie,
            &format!("csrf={}", owner.csrf),
            Some("http://evil.test"),
        )
        .await;
    assert_eq!(cross_site.status, StatusCode::FORBIDDEN);
    assert!(!console.api.called("BackupNow"));
    let accepted = console
        .post(
            path,
            &owner.cookie,
            &format!("rule=RETENTION_RULE_KIND_DEFAULT&csrf={}", owner.csrf),
            Some("http://console.test"),
        )
        .await;
    assert_eq!(accepted.status, StatusCode::SEE_OTHER, "{}", accepted.body);
    assert_eq!(accepted.location(), "/jobs/j2");
}

#[tokio::test]
async fn a_points_last_verify_drill_and_copies_are_shown_in_words() {
    let console = Console::new();
    let reader = console.sign_in(READER).await;
    let page = console
        .get("/vaults/prod/instances/i1", &reader.cookie)
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let table = page
        .body
        .split("id=\"points-table\"")
        .nth(1)
        .expect("the points table");
    assert!(
        table.contains("<th>Verify</th><th>Drill</th><th>Copies</th>"),
        "{table}"
    );
    assert!(table.contains(">Passed<"), "{table}");
    assert!(
        table.contains(">Failed<") && table.contains("DrillChecksumMismatch"),
        "{table}"
    );
    assert!(table.contains("1 copy"), "{table}");
}

/// What a point's restore page reads — the point (p0 is kept only as
/// copies, any other is live), no other servers or secrets to offer — and
/// the restores as a database it sends, recorded in `restored`.
fn restore_pages(api: FakeApi, restored: Arc<Mutex<Vec<pb::RestoreAsDatabaseRequest>>>) -> FakeApi {
    api.unary(
        "RecoveryPointService/GetRecoveryPoint",
        |_, r: pb::GetRecoveryPointRequest| {
            Ok(if r.name.ends_with("/p0") {
                copies_only_point()
            } else {
                point()
            })
        },
    )
    .unary(
        "ServerService/ListServers",
        |_, _: pb::ListServersRequest| Ok(pb::ListServersResponse::default()),
    )
    .unary(
        "SecretService/ListSecrets",
        |_, _: pb::ListSecretsRequest| Ok(pb::ListSecretsResponse::default()),
    )
    .unary(
        "RestoreService/RestoreAsDatabase",
        move |_, r: pb::RestoreAsDatabaseRequest| {
            restored.lock().unwrap().push(r);
            Ok(pb::Job {
                name: "jobs/j3".into(),
                ..Default::default()
            })
        },
    )
}

#[tokio::test]
async fn a_point_kept_only_as_copies_is_listed_apart_and_restores_from_its_copy() {
    let restored = Arc::new(Mutex::new(Vec::<pb::RestoreAsDatabaseRequest>::new()));
    let api = restore_pages(fake_api(), restored.clone());
    let console = Console::serving(api);
    let owner = console.sign_in(OWNER).await;

    // Listed apart from the live points, with a way to restore it.
    let page = console
        .get("/vaults/prod/instances/i1", &owner.cookie)
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let (live, apart) = page
        .body
        .split_once("id=\"copies-only-table\"")
        .expect("a table of the points kept only as copies");
    assert!(live.contains(">p1<") && !live.contains(">p0<"), "{live}");
    let apart = apart.split("</table>").next().unwrap();
    assert!(
        apart.contains(">p0<") && apart.contains("1 copy"),
        "{apart}"
    );
    assert!(apart.contains("Restore from a copy…"), "{apart}");

    // Its restore page reads only from the copy and says why.
    let page = console
        .get("/vaults/prod/instances/i1/points/p0/restore", &owner.cookie)
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains("id=\"copies-only-notice\""),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("<option value=\"az://dr-copies\">"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("The point itself"), "{}", page.body);
    // A live point with a copy offers both, the point itself first.
    let live = console
        .get("/vaults/prod/instances/i1/points/p1/restore", &owner.cookie)
        .await;
    let itself = live
        .body
        .find("The point itself")
        .expect("the point itself offered");
    let copy = live
        .body
        .find("<option value=\"az://dr-copies\">")
        .expect("its copy offered");
    assert!(itself < copy, "{}", live.body);

    let answer = console
        .post(
            "/vaults/prod/instances/i1/points/p0/restore/database",
            &owner.cookie,
            &format!(
                "copy_datastore=az%3A%2F%2Fdr-copies&target_server=&target_database=shop_old&secret=&csrf={}",
                owner.csrf
            ),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let sent = restored.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        sent[0].recovery_point,
        format!("{INSTANCE}/recoveryPoints/p0")
    );
    assert_eq!(sent[0].copy_datastore, "az://dr-copies");
    assert_eq!(sent[0].target_database, "shop_old");
}

#[tokio::test]
async fn backup_now_and_restore_as_database_fan_out_across_the_workers_asked_for() {
    let backups = Arc::new(Mutex::new(Vec::<u32>::new()));
    let restores = Arc::new(Mutex::new(Vec::<pb::RestoreAsDatabaseRequest>::new()));
    let api = {
        let backups = backups.clone();
        restore_pages(fake_api(), restores.clone()).unary(
            "BackupInstanceService/BackupNow",
            move |_, r: pb::BackupNowRequest| {
                backups.lock().unwrap().push(r.workers);
                Ok(pb::Job {
                    name: "jobs/j2".into(),
                    ..Default::default()
                })
            },
        )
    };
    let console = Console::serving(api);
    let owner = console.sign_in(OWNER).await;
    let page = console
        .get("/vaults/prod/instances/i1", &owner.cookie)
        .await;
    assert!(page.body.contains("id=\"backup-workers\""), "{}", page.body);
    let page = console
        .get("/vaults/prod/instances/i1/points/p1/restore", &owner.cookie)
        .await;
    assert!(
        page.body.contains("id=\"restore-workers\""),
        "{}",
        page.body
    );

    for workers in ["4", ""] {
        let answer = console
            .post(
                "/vaults/prod/instances/i1/backup",
                &owner.cookie,
                &format!(
                    "rule=RETENTION_RULE_KIND_DEFAULT&workers={workers}&csrf={}",
                    owner.csrf
                ),
                None,
            )
            .await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    }
    let answer = console
        .post(
            "/vaults/prod/instances/i1/points/p1/restore/database",
            &owner.cookie,
            &format!("target_database=shop_copy&workers=3&csrf={}", owner.csrf),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    // Not a number: refused here, saying what it takes; nothing is sent.
    let refused = console
        .post(
            "/vaults/prod/instances/i1/backup",
            &owner.cookie,
            &format!(
                "rule=RETENTION_RULE_KIND_DEFAULT&workers=many&csrf={}",
                owner.csrf
            ),
            None,
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(
        refused.body.contains("workers must be a number (2-64)"),
        "{}",
        refused.body
    );
    assert_eq!(*backups.lock().unwrap(), vec![4, 0]);
    let restored: Vec<u32> = restores.lock().unwrap().iter().map(|r| r.workers).collect();
    assert_eq!(restored, vec![3]);
}

#[tokio::test]
async fn a_reader_sees_no_actions_and_a_forged_post_gets_the_apis_403() {
    let console = Console::new();
    let owner = console.sign_in(OWNER).await;
    let page = console
        .get("/vaults/prod/instances/i1", &owner.cookie)
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("id=\"backup-now\""));
    assert!(page.body.contains("id=\"stop-protection\""));
    assert!(page.body.contains("Restore…"));

    let reader = console.sign_in(READER).await;
    let page = console
        .get("/vaults/prod/instances/i1", &reader.cookie)
        .await;
    assert_eq!(page.status, StatusCode::OK);
    for action in [
        "backup-now",
        "stop-protection",
        "resume-protection",
        "revalidate",
    ] {
        assert!(
            !page.body.contains(&format!("id=\"{action}\"")),
            "{action} shown"
        );
    }
    assert!(!page.body.contains("Restore…"));
    let forged = console
        .post(
            "/vaults/prod/instances/i1/backup",
            &reader.cookie,
            &format!("rule=RETENTION_RULE_KIND_DEFAULT&csrf={}", reader.csrf),
            None,
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(
        forged.body.contains("may not call BackupNow"),
        "{}",
        forged.body
    );
}

#[tokio::test]
async fn everything_the_api_returns_is_escaped() {
    let console = Console::new();
    let owner = console.sign_in(OWNER).await;
    for path in ["/overview", "/jobs", "/vaults/prod/instances/i1"] {
        let page = console.get(path, &owner.cookie).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
        assert!(
            !page.body.contains("<script>alert"),
            "{path} carries raw HTML"
        );
        assert!(!page.body.contains("shop<b>"), "{path} carries raw HTML");
    }
    let overview = console.get("/overview", &owner.cookie).await;
    assert!(
        overview
            .body
            .contains("&#60;script&#62;alert(&#34;pwned&#34;)&#60;/script&#62;"),
        "the text is shown, escaped: {}",
        overview.body
    );
}

#[tokio::test]
async fn signing_out_ends_the_session_on_the_server() {
    let console = Console::new();
    let owner = console.sign_in(OWNER).await;
    let answer = console
        .post(
            "/signout",
            &owner.cookie,
            &format!("csrf={}", owner.csrf),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(answer.location(), "/?signin=signedout");
    assert!(answer.cookie("pgv_session").unwrap().contains("Max-Age=0"));
    let after = console.get("/overview", &owner.cookie).await;
    assert_eq!(
        after.location(),
        "/?signin=expired",
        "the old cookie is dead"
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_session_expires() {
    let console = Console::with_sessions(Sessions::new(
        Duration::from_secs(60),
        Duration::from_secs(3600),
    ));
    let owner = console.sign_in(OWNER).await;
    tokio::time::advance(Duration::from_secs(61)).await;
    let answer = console.get("/overview", &owner.cookie).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(answer.location(), "/?signin=expired");
    let form = console.get("/?signin=expired", "").await;
    assert!(form.body.contains("session has ended"), "{}", form.body);
}

#[tokio::test]
async fn every_page_forbids_foreign_scripts_and_framing() {
    let console = Console::new();
    let form = console.get("/", "").await;
    let csp = form.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(form.headers[header::CACHE_CONTROL], "no-store");
    // `no-referrer` would make browsers send `Origin: null` on our own posts.
    assert_eq!(form.headers[header::REFERRER_POLICY], "same-origin");
    let css = console.get(&crate::assets::URLS.stylesheet, "").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(
        css.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    assert!(
        css.headers[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
}

#[tokio::test]
async fn over_tls_the_console_answers_https_and_marks_cookies_secure() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let pem = cert.cert.pem();
    let mut options = crate::ConsoleOptions::new("127.0.0.1:0".parse().unwrap());
    options.tls = Some(crate::TlsPem {
        cert: pem.clone().into_bytes(),
        key: cert.key_pair.serialize_pem().into_bytes(),
    });
    let cancel = tokio_util::sync::CancellationToken::new();
    let console = crate::Console::start(options, ApiChannel::new(fake_api()), cancel.clone())
        .await
        .expect("console");
    assert!(
        console.url().starts_with("https://127.0.0.1:"),
        "{}",
        console.url()
    );
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).expect("pem"))
        .build()
        .expect("client");
    let url = format!("https://localhost:{}/", console.local_addr().port());
    let response = client.get(&url).send().await.expect("https request");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let cookie = response.headers()[reqwest::header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cookie.ends_with("; Secure"), "{cookie}");
    cancel.cancel();
    console.stopped().await;
}

/// Browsers speak HTTP/2 to the console over TLS (ALPN), and HTTP/2
/// requests carry no `Host` header: the origin check must still know the
/// console's address, or every form, sign-in first, is refused.
#[tokio::test]
async fn over_tls_a_browser_signs_in_with_http2() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let pem = cert.cert.pem();
    let mut options = crate::ConsoleOptions::new("127.0.0.1:0".parse().unwrap());
    options.tls = Some(crate::TlsPem {
        cert: pem.clone().into_bytes(),
        key: cert.key_pair.serialize_pem().into_bytes(),
    });
    let cancel = tokio_util::sync::CancellationToken::new();
    let console = crate::Console::start(options, ApiChannel::new(fake_api()), cancel.clone())
        .await
        .expect("console");
    // Offers h2 and http/1.1 by ALPN, as a browser does.
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).expect("pem"))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let origin = format!("https://localhost:{}", console.local_addr().port());
    let form = client
        .get(format!("{origin}/"))
        .send()
        .await
        .expect("the sign-in form over HTTP/2");
    assert_eq!(form.version(), reqwest::Version::HTTP_2);
    let nonce = form.headers()[reqwest::header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let csrf = csrf_of(&form.text().await.expect("the form's page"));
    let sign_in = |origin: String| {
        client
            .post(format!(
                "https://localhost:{}/signin",
                console.local_addr().port()
            ))
            .header(reqwest::header::COOKIE, &nonce)
            .header(reqwest::header::ORIGIN, origin)
            .header("sec-fetch-site", "same-origin")
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(format!("token={OWNER}&csrf={csrf}"))
            .send()
    };
    let refused = sign_in("https://evil.test".into()).await.expect("a POST");
    assert_eq!(refused.status(), reqwest::StatusCode::FORBIDDEN);
    let signed_in = sign_in(origin).await.expect("the sign-in POST");
    assert_eq!(signed_in.version(), reqwest::Version::HTTP_2);
    assert_eq!(
        signed_in.status(),
        reqwest::StatusCode::SEE_OTHER,
        "{:?}",
        signed_in.headers()
    );
    assert_eq!(signed_in.headers()[reqwest::header::LOCATION], "/overview");
    let session = signed_in
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("pgv_session="))
        .expect("a session cookie")
        .to_string();
    assert!(session.ends_with("; Secure"), "{session}");
    cancel.cancel();
    console.stopped().await;
}

#[tokio::test]
async fn every_view_all_jobs_link_of_an_instance_shows_all_time() {
    let console = Console::new();
    let owner = console.sign_in(OWNER).await;
    let link = "href=\"/jobs?instance=vaults%2Fprod%2FbackupInstances%2Fi1&#38;range=all\"";
    for path in ["/overview", "/vaults/prod", "/vaults/prod/instances/i1"] {
        let page = console.get(path, &owner.cookie).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
        assert!(page.body.contains("View all jobs"), "{path}: no link");
        assert!(page.body.contains(link), "{path}: {}", page.body);
    }
}

#[tokio::test]
async fn the_vault_page_shows_the_lock_the_soft_delete_window_and_the_encryption() {
    let console = Console::new();
    let owner = console.sign_in(OWNER).await;
    let page = console.get("/vaults/prod", &owner.cookie).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body
            .contains("<strong>locked</strong> (immutable) since"),
        "{}",
        page.body
    );
    assert!(page.body.contains("kept 30 days"), "{}", page.body);
    assert!(
        page.body
            .contains("id=\"vault-encryption\">aes-256-gcm, vault key version 2<"),
        "{}",
        page.body
    );
}
