//! The job page's event stream (`GET /jobs/{id}/events`) against a
//! `WatchJob` the test drives: `end` only once the job has ended; a
//! response cut short without `end` (so the browser's `EventSource`
//! reconnects) when the watch breaks off first; `session` and the end of
//! the stream once the session is gone, whether signed out or expired.

use tokio::sync::mpsc;

use super::*;

const JOB: &str = "jobs/j7";
/// Longer than any stream here may stay open (paused time moves on by
/// itself, so a stream that never ends fails here instead of hanging).
const STREAM_ENDS_WITHIN: Duration = Duration::from_secs(300);

fn job(state: pb::JobState) -> pb::Job {
    pb::Job {
        name: JOB.into(),
        operation: pb::Operation::OnDemandBackup as i32,
        state: state as i32,
        vault: "vaults/prod".into(),
        backup_instance: INSTANCE.into(),
        attempt: 1,
        ..Default::default()
    }
}

/// The test's end of the `WatchJob` stream, and the fake's.
type Watch = mpsc::Sender<Result<pb::Job, Status>>;
type Watched = mpsc::Receiver<Result<pb::Job, Status>>;

/// The job as `GetJob` reports it, and the `WatchJob` stream the test
/// drives through the [`Watch`] it was given.
#[derive(Clone)]
struct Feed {
    state: Arc<Mutex<pb::JobState>>,
    watch: Arc<Mutex<Option<Watched>>>,
}

impl Feed {
    /// A job in `state`, and the sender of its one `WatchJob` stream.
    fn new(state: pb::JobState) -> (Feed, Watch) {
        let (tx, rx) = mpsc::channel(8);
        let feed = Feed {
            state: Arc::new(Mutex::new(state)),
            watch: Arc::new(Mutex::new(Some(rx))),
        };
        (feed, tx)
    }

    /// What `GetJob` says from now on.
    fn set(&self, state: pb::JobState) {
        *self.state.lock().unwrap() = state;
    }

    /// The fake API with this job in it.
    fn api(&self) -> FakeApi {
        let get = self.clone();
        let watch = self.clone();
        fake_api()
            .unary("JobService/GetJob", move |_, _: pb::GetJobRequest| {
                Ok(job(*get.state.lock().unwrap()))
            })
            .streaming("JobService/WatchJob", move |_, _: pb::WatchJobRequest| {
                let rx = watch.watch.lock().unwrap().take().ok_or_else(|| {
                    Status::internal("the test gives one WatchJob stream; a second was opened")
                })?;
                Ok(tokio_stream::wrappers::ReceiverStream::new(rx))
            })
    }

    /// A console on this feed, with sessions idle for at most `idle`.
    fn console(&self, idle: Duration) -> Console {
        Console::with_api(self.api(), Sessions::new(idle, Duration::from_secs(3600)))
    }
}

/// The events of one open stream, read as they come.
struct Events {
    body: Body,
    buffer: String,
}

impl Events {
    /// Opens the job's stream as `browser`.
    async fn open(console: &Console, browser: &Browser) -> Events {
        let response = router(console.state.clone())
            .oneshot(
                Request::get(format!("/{JOB}/events"))
                    .header(header::HOST, "console.test")
                    .header(header::COOKIE, &browser.cookie)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/event-stream"
        );
        Events {
            body: response.into_body(),
            buffer: String::new(),
        }
    }

    /// The next event's name (keep-alive comments skipped); `None` once
    /// the response has ended.
    async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(at) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..at + 2).collect();
                if let Some(name) = block.lines().find_map(|l| l.strip_prefix("event: ")) {
                    return Some(name.to_string());
                }
                continue;
            }
            let frame = self.body.frame().await?.expect("the stream's body");
            if let Ok(data) = frame.into_data() {
                self.buffer.push_str(&String::from_utf8_lossy(&data));
            }
        }
    }

    /// The names of every event left, up to the end of the response
    /// (which must come within [`STREAM_ENDS_WITHIN`]).
    async fn rest(mut self) -> Vec<String> {
        let all = async {
            let mut names = Vec::new();
            while let Some(name) = self.next().await {
                names.push(name);
            }
            names
        };
        tokio::time::timeout(STREAM_ENDS_WITHIN, all)
            .await
            .expect("the job stream should have ended by now, and is still open")
    }
}

#[tokio::test]
async fn a_job_that_ends_ends_the_stream_with_end() {
    let (feed, watch) = Feed::new(pb::JobState::InProgress);
    let console = feed.console(Duration::from_secs(600));
    let owner = console.sign_in(OWNER).await;
    let events = Events::open(&console, &owner).await;
    watch.send(Ok(job(pb::JobState::InProgress))).await.unwrap();
    feed.set(pb::JobState::Completed);
    watch.send(Ok(job(pb::JobState::Completed))).await.unwrap();
    assert_eq!(events.rest().await, ["fragment", "fragment", "end"]);
}

#[tokio::test]
async fn a_watch_that_fails_while_the_job_runs_cuts_the_stream_short_without_end() {
    let (feed, watch) = Feed::new(pb::JobState::InProgress);
    let console = feed.console(Duration::from_secs(600));
    let owner = console.sign_in(OWNER).await;
    let events = Events::open(&console, &owner).await;
    watch.send(Ok(job(pb::JobState::InProgress))).await.unwrap();
    watch
        .send(Err(Status::unavailable(
            "the state database is unreachable",
        )))
        .await
        .unwrap();
    assert_eq!(
        events.rest().await,
        ["fragment"],
        "the page must not say the job ended: the browser reconnects"
    );
}

#[tokio::test]
async fn a_watch_that_closes_while_the_job_runs_cuts_the_stream_short_without_end() {
    let (feed, watch) = Feed::new(pb::JobState::Queued);
    let console = feed.console(Duration::from_secs(600));
    let owner = console.sign_in(OWNER).await;
    let events = Events::open(&console, &owner).await;
    watch.send(Ok(job(pb::JobState::Queued))).await.unwrap();
    drop(watch); // the coordinator serving the watch went away
    assert_eq!(events.rest().await, ["fragment"]);
}

#[tokio::test]
async fn a_job_that_ended_as_its_watch_closed_still_gets_its_final_state_and_end() {
    let (feed, watch) = Feed::new(pb::JobState::InProgress);
    let console = feed.console(Duration::from_secs(600));
    let owner = console.sign_in(OWNER).await;
    let mut events = Events::open(&console, &owner).await;
    watch.send(Ok(job(pb::JobState::InProgress))).await.unwrap();
    assert_eq!(events.next().await.as_deref(), Some("fragment"));
    feed.set(pb::JobState::Failed);
    drop(watch);
    assert_eq!(events.rest().await, ["fragment", "end"]);
}

#[tokio::test(start_paused = true)]
async fn an_event_after_sign_out_ends_the_stream_instead() {
    let (feed, watch) = Feed::new(pb::JobState::InProgress);
    let console = feed.console(Duration::from_secs(600));
    let owner = console.sign_in(OWNER).await;
    let mut events = Events::open(&console, &owner).await;
    watch.send(Ok(job(pb::JobState::InProgress))).await.unwrap();
    assert_eq!(events.next().await.as_deref(), Some("fragment"));
    console.state.sessions.end(&session_id(&owner));
    watch.send(Ok(job(pb::JobState::InProgress))).await.unwrap();
    assert_eq!(events.rest().await, ["session"]);
}

#[tokio::test(start_paused = true)]
async fn signing_out_ends_a_quiet_job_stream() {
    let (feed, watch) = Feed::new(pb::JobState::InProgress);
    let console = feed.console(Duration::from_secs(600));
    let owner = console.sign_in(OWNER).await;
    let mut events = Events::open(&console, &owner).await;
    watch.send(Ok(job(pb::JobState::InProgress))).await.unwrap();
    assert_eq!(events.next().await.as_deref(), Some("fragment"));
    let out = console
        .post(
            "/signout",
            &owner.cookie,
            &format!("csrf={}", owner.csrf),
            None,
        )
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    // The job sends nothing more (its watch stays open): the periodic
    // check ends the stream.
    assert_eq!(events.rest().await, ["session"]);
    drop(watch);
}

#[tokio::test(start_paused = true)]
async fn a_quiet_job_stream_ends_when_its_session_expires() {
    let (feed, watch) = Feed::new(pb::JobState::InProgress);
    let console = feed.console(Duration::from_secs(60));
    let owner = console.sign_in(OWNER).await;
    let mut events = Events::open(&console, &owner).await;
    watch.send(Ok(job(pb::JobState::InProgress))).await.unwrap();
    assert_eq!(events.next().await.as_deref(), Some("fragment"));
    assert_eq!(events.rest().await, ["session"]);
    assert!(
        console.state.sessions.is_empty(),
        "the session expired while the stream was open"
    );
    drop(watch);
}

/// The session id in `browser`'s cookie.
fn session_id(browser: &Browser) -> String {
    browser
        .cookie
        .strip_prefix("pgv_session=")
        .expect("a session cookie")
        .to_string()
}
