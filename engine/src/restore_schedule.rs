//! A restore's work after pre-data, on one pool of connections: table data
//! (largest first), each main-pass post-data entry as soon as the tables it
//! touches are loaded and the entries it depends on are done, and `ANALYZE`
//! of each table once its data and entries are in. Index builds so overlap
//! with the loading of other tables instead of waiting for all data. An
//! entry whose table lock would conflict with a running entry's waits in the
//! plan, not on a connection (which meanwhile loads or builds something
//! else). The first failure stops the pool.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::connect::{connect, exec};
use super::error::{EngineError, ErrorCode};
use super::ident::qualified;
use super::manifest::Manifest;
use super::post_data::{Pass, PostData, PostEntry, Wait};
use super::restore_data::{LoadContext, LoadJob, load_job};
use super::stages::{Lane, LaneStage};

/// One unit of work for a pool connection.
enum Task {
    Data(LoadJob),
    Post(Arc<PostEntry>),
    Analyze(String),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Pending,
    Running,
    Done,
}

/// What is left to do; shared by the pool's connections.
struct Plan {
    data: VecDeque<LoadJob>,
    /// Load jobs not finished, per table OID.
    unloaded: HashMap<u32, usize>,
    data_left: usize,
    entries: Vec<Arc<PostEntry>>,
    status: Vec<Status>,
    /// Main-pass entry dump id → index in `entries`.
    index: HashMap<i64, usize>,
    /// Main-pass entries not done, per table OID they wait for.
    entries_left: HashMap<u32, usize>,
    /// Raw data bytes per table OID: big tables' entries go first.
    size: HashMap<u32, u64>,
    names: HashMap<u32, String>,
    analyze: VecDeque<String>,
    running: usize,
    /// Table locks of the running entries, so a connection never sits
    /// waiting for another's lock (as `pg_restore -j` avoids it too).
    locks: HashMap<u32, TableLock>,
}

/// Locks running entries hold on one table: index builds share (SHARE
/// lock), anything else (`ALTER TABLE … ADD CONSTRAINT`, triggers, rules:
/// SHARE ROW EXCLUSIVE or stronger) conflicts with every other entry.
#[derive(Default)]
struct TableLock {
    shared: usize,
    exclusive: bool,
}

/// Whether an entry takes only the lock `CREATE INDEX` takes.
fn shares_lock(entry: &PostEntry) -> bool {
    entry.label.starts_with("INDEX ") && !entry.label.starts_with("INDEX ATTACH ")
}

impl Plan {
    fn new(jobs: Vec<LoadJob>, post: &PostData, manifest: &Manifest) -> Plan {
        let mut unloaded: HashMap<u32, usize> = HashMap::new();
        for job in &jobs {
            *unloaded.entry(job.table.oid).or_default() += 1;
        }
        let entries: Vec<Arc<PostEntry>> = post
            .entries
            .iter()
            .filter(|e| e.pass == Pass::Main)
            .cloned()
            .map(Arc::new)
            .collect();
        let mut entries_left: HashMap<u32, usize> = HashMap::new();
        for entry in &entries {
            if let Wait::Tables(tables) = &entry.wait {
                for oid in tables {
                    *entries_left.entry(*oid).or_default() += 1;
                }
            }
        }
        let mut plan = Plan {
            data_left: jobs.len(),
            data: jobs.into(),
            unloaded,
            status: vec![Status::Pending; entries.len()],
            index: entries
                .iter()
                .enumerate()
                .map(|(i, e)| (e.dump_id, i))
                .collect(),
            entries,
            entries_left,
            size: manifest
                .tables
                .iter()
                .map(|t| (t.oid, t.chunks.iter().map(|c| c.raw_bytes).sum()))
                .collect(),
            names: manifest
                .tables
                .iter()
                .map(|t| (t.oid, qualified(&t.schema, &t.name)))
                .collect(),
            analyze: VecDeque::new(),
            running: 0,
            locks: HashMap::new(),
        };
        // Tables without data jobs (empty ones) are loaded already.
        let oids: Vec<u32> = manifest.tables.iter().map(|t| t.oid).collect();
        for oid in oids {
            plan.maybe_analyze(oid);
        }
        plan
    }

    fn loaded(&self, oid: u32) -> bool {
        self.unloaded.get(&oid).copied().unwrap_or(0) == 0
    }

    fn ready(&self, entry: &PostEntry) -> bool {
        let tables_loaded = match &entry.wait {
            Wait::AllData => self.data_left == 0,
            Wait::Tables(tables) => tables.iter().all(|oid| self.loaded(*oid)),
        };
        tables_loaded
            && entry.after.iter().all(|dep| {
                self.index
                    .get(dep)
                    .is_none_or(|i| self.status[*i] == Status::Done)
            })
    }

    /// No running entry holds a lock this one would wait for.
    fn lockable(&self, entry: &PostEntry) -> bool {
        let Wait::Tables(tables) = &entry.wait else {
            return true;
        };
        let shared = shares_lock(entry);
        tables.iter().all(|oid| {
            self.locks
                .get(oid)
                .is_none_or(|l| !l.exclusive && (shared || l.shared == 0))
        })
    }

    fn lock(&mut self, entry: &PostEntry, take: bool) {
        let Wait::Tables(tables) = &entry.wait else {
            return;
        };
        let shared = shares_lock(entry);
        for oid in tables {
            let lock = self.locks.entry(*oid).or_default();
            match (shared, take) {
                (true, true) => lock.shared += 1,
                (true, false) => lock.shared = lock.shared.saturating_sub(1),
                (false, held) => lock.exclusive = held,
            }
        }
    }

    fn weight(&self, entry: &PostEntry) -> u64 {
        match &entry.wait {
            Wait::AllData => 0,
            Wait::Tables(tables) => tables
                .iter()
                .map(|oid| self.size.get(oid).copied().unwrap_or(0))
                .max()
                .unwrap_or(0),
        }
    }

    /// The next task: ready post-data entries of the biggest tables first
    /// (they are the long index builds), then data, then `ANALYZE`.
    fn next(&mut self) -> Option<Task> {
        let mut best: Option<(u64, usize)> = None;
        for (i, entry) in self.entries.iter().enumerate() {
            if self.status[i] != Status::Pending || !self.ready(entry) || !self.lockable(entry) {
                continue;
            }
            let weight = self.weight(entry);
            if best.is_none_or(|(w, _)| weight > w) {
                best = Some((weight, i));
            }
        }
        let task = if let Some((_, i)) = best {
            self.status[i] = Status::Running;
            let entry = self.entries[i].clone();
            self.lock(&entry, true);
            Task::Post(entry)
        } else if let Some(job) = self.data.pop_front() {
            Task::Data(job)
        } else if let Some(name) = self.analyze.pop_front() {
            Task::Analyze(name)
        } else {
            return None;
        };
        self.running += 1;
        Some(task)
    }

    fn finished(&mut self, task: &Task) {
        self.running -= 1;
        match task {
            Task::Data(job) => {
                self.data_left -= 1;
                let oid = job.table.oid;
                if let Some(left) = self.unloaded.get_mut(&oid) {
                    *left -= 1;
                }
                self.maybe_analyze(oid);
            }
            Task::Post(entry) => {
                self.lock(entry, false);
                if let Some(i) = self.index.get(&entry.dump_id) {
                    self.status[*i] = Status::Done;
                }
                if let Wait::Tables(tables) = &entry.wait {
                    for oid in tables {
                        if let Some(left) = self.entries_left.get_mut(oid) {
                            *left -= 1;
                        }
                        self.maybe_analyze(*oid);
                    }
                }
            }
            Task::Analyze(_) => {}
        }
    }

    /// Queues `ANALYZE` of a table whose data and entries are all in.
    fn maybe_analyze(&mut self, oid: u32) {
        if self.loaded(oid)
            && self.entries_left.get(&oid).copied().unwrap_or(0) == 0
            && let Some(name) = self.names.remove(&oid)
        {
            self.analyze.push_back(name);
        }
    }

    fn all_done(&self) -> bool {
        self.running == 0
            && self.data.is_empty()
            && self.analyze.is_empty()
            && self.status.iter().all(|s| *s == Status::Done)
    }

    /// Nothing runs and nothing is ready, yet work is left: dependencies
    /// that can never be met.
    fn stuck(&self) -> Option<String> {
        if self.running > 0 || self.all_done() {
            return None;
        }
        let waiting: Vec<&str> = self
            .entries
            .iter()
            .zip(&self.status)
            .filter(|(_, s)| **s == Status::Pending)
            .map(|(e, _)| e.label.as_str())
            .take(5)
            .collect();
        Some(waiting.join(", "))
    }
}

struct Shared {
    plan: Mutex<Plan>,
    changed: Notify,
}

/// Runs the data, main-pass post-data and table `ANALYZE`s; returns
/// (rows, raw bytes) loaded.
pub(crate) async fn run(
    ctx: LoadContext,
    jobs: Vec<LoadJob>,
    post: &PostData,
    manifest: &Manifest,
) -> Result<(u64, u64), EngineError> {
    let shared = Arc::new(Shared {
        plan: Mutex::new(Plan::new(jobs, post, manifest)),
        changed: Notify::new(),
    });
    let stop = ctx.cancel.child_token();
    let mut set = JoinSet::new();
    for _ in 0..ctx.options.connections.max(1) {
        let (ctx, shared, stop) = (ctx.clone(), shared.clone(), stop.clone());
        let preamble = post.preamble.clone();
        set.spawn(async move {
            let result = worker(&ctx, &shared, &preamble, &stop).await;
            if result.is_err() {
                stop.cancel();
                shared.changed.notify_waiters();
            }
            result
        });
    }
    let (mut rows, mut bytes) = (0, 0);
    let mut first_error: Option<EngineError> = None;
    while let Some(joined) = set.join_next().await {
        match joined.unwrap_or_else(|e| {
            Err(EngineError::internal(format!(
                "restore worker crashed: {e}"
            )))
        }) {
            Ok((r, b)) => {
                rows += r;
                bytes += b;
            }
            Err(e)
                if first_error
                    .as_ref()
                    .is_none_or(|f| f.code == ErrorCode::Cancelled) =>
            {
                first_error = Some(e)
            }
            Err(_) => {}
        }
    }
    if ctx.cancel.is_cancelled() {
        return Err(EngineError::cancelled());
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok((rows, bytes)),
    }
}

async fn worker(
    ctx: &LoadContext,
    shared: &Shared,
    preamble: &str,
    stop: &CancellationToken,
) -> Result<(u64, u64), EngineError> {
    let describe = ctx.target.describe();
    let mut lane = Lane::start(ctx.tracker.clock().clone());
    let client = connect(&ctx.target, &ctx.target.database).await?;
    let mut setup = format!("{preamble}\nSET statement_timeout = 0; SET synchronous_commit = off;");
    if ctx.superuser {
        // No user trigger fires while loading; post-data entries run with
        // the default role, as pg_restore runs them.
        setup.push_str(" SET session_replication_role = replica;");
    }
    exec(&client, &setup, &describe).await?;
    let mut replica = ctx.superuser;
    let (mut rows, mut bytes) = (0, 0);
    loop {
        // Registered before looking, so a change made meanwhile is not missed.
        let notified = shared.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if stop.is_cancelled() {
            return Err(EngineError::cancelled());
        }
        let next = {
            let mut plan = shared.plan.lock().unwrap_or_else(|p| p.into_inner());
            match plan.next() {
                Some(task) => Some(task),
                None if plan.all_done() => return Ok((rows, bytes)),
                None => {
                    if let Some(waiting) = plan.stuck() {
                        return Err(EngineError::internal(format!(
                            "post-data entries wait on dependencies that never complete: {waiting}"
                        )));
                    }
                    None
                }
            }
        };
        let Some(task) = next else {
            lane.enter(LaneStage::Idle);
            tokio::select! {
                _ = stop.cancelled() => return Err(EngineError::cancelled()),
                _ = &mut notified => continue,
            }
        };
        let (r, b) = run_task(ctx, &client, &task, &mut replica, stop, &mut lane).await?;
        rows += r;
        bytes += b;
        shared
            .plan
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .finished(&task);
        shared.changed.notify_waiters();
    }
}

async fn run_task(
    ctx: &LoadContext,
    client: &Client,
    task: &Task,
    replica: &mut bool,
    stop: &CancellationToken,
    lane: &mut Lane,
) -> Result<(u64, u64), EngineError> {
    let describe = ctx.target.describe();
    match task {
        Task::Data(job) => {
            lane.enter(LaneStage::CopyInWait);
            if ctx.superuser && !*replica {
                exec(client, "SET session_replication_role = replica", &describe).await?;
                *replica = true;
            }
            load_job(ctx, client, job, stop, lane).await
        }
        Task::Post(entry) => {
            lane.enter(
                if shares_lock(entry) || entry.label.starts_with("CONSTRAINT ") {
                    LaneStage::IndexBuild
                } else {
                    LaneStage::PostData
                },
            );
            if *replica {
                exec(client, "SET session_replication_role = DEFAULT", &describe).await?;
                *replica = false;
            }
            tokio::select! {
                _ = stop.cancelled() => Err(EngineError::cancelled()),
                r = client.batch_execute(&entry.sql) => r
                    .map(|()| (0, 0))
                    .map_err(|e| EngineError::from_pg(&e, &describe)
                        .context(format!("restoring {}", entry.label))),
            }
        }
        Task::Analyze(name) => {
            lane.enter(LaneStage::Analyze);
            let sql = format!("ANALYZE {name}");
            tokio::select! {
                _ = stop.cancelled() => Err(EngineError::cancelled()),
                r = exec(client, &sql, &describe) => r
                    .map(|()| {
                        // The table's last step: data, entries and statistics are in.
                        ctx.tracker.table_finished(name);
                        (0, 0)
                    })
                    .map_err(|e| e.context(format!("analyzing {name}"))),
            }
        }
    }
}

/// Runs the entries of a deferred pass (grants, or event triggers) in
/// script order on one connection.
pub(crate) async fn run_deferred(
    client: &Client,
    describe: &str,
    post: &PostData,
    pass: Pass,
) -> Result<(), EngineError> {
    let entries: Vec<&PostEntry> = post.entries.iter().filter(|e| e.pass == pass).collect();
    if entries.is_empty() {
        return Ok(());
    }
    exec(client, &post.preamble, describe).await?;
    let mut seen = HashSet::new();
    for entry in entries {
        if !seen.insert(entry.dump_id) {
            continue;
        }
        client.batch_execute(&entry.sql).await.map_err(|e| {
            EngineError::from_pg(&e, describe).context(format!("restoring {}", entry.label))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::TableEntry;

    fn manifest(tables: &[(u32, u64)]) -> Manifest {
        let json = serde_json::json!({
            "format_version": 1, "tool": "pgvault", "tool_version": "0", "server_version": "15",
            "server_version_num": 150000, "snapshot_time": "2024-01-01T00:00:00Z", "database": "d",
            "encoding": "UTF8", "collate": "C", "ctype": "C",
            "schema": {"path": "schema.dump", "size": 0, "sha256": ""},
            "roles": [], "tables": tables.iter().map(|(oid, size)| serde_json::json!({
                "oid": oid, "schema": "s", "name": format!("t{oid}"), "columns": [],
                "chunks": if *size == 0 { vec![] } else { vec![serde_json::json!({
                    "index": 0, "start_page": null, "end_page": null, "rows": 1, "raw_bytes": size,
                    "object": {"path": format!("data/{oid}"), "size": size, "sha256": ""}
                })] }
            })).collect::<Vec<_>>(),
            "sequences": [], "materialized_views": [], "large_objects": null
        });
        serde_json::from_value(json).unwrap()
    }

    fn entry(dump_id: i64, pass: Pass, wait: Wait, after: &[i64]) -> PostEntry {
        PostEntry {
            dump_id,
            label: format!("e{dump_id}"),
            sql: String::new(),
            pass,
            wait,
            after: after.to_vec(),
        }
    }

    fn job(table: &TableEntry) -> LoadJob {
        LoadJob {
            table: Arc::new(table.clone()),
            chunks: table.chunks.clone(),
            freeze: true,
            size: table.chunks.iter().map(|c| c.raw_bytes).sum(),
        }
    }

    /// Runs the plan on one connection, naming each task.
    fn order(plan: &mut Plan) -> Vec<String> {
        let mut seen = Vec::new();
        while let Some(task) = plan.next() {
            seen.push(match &task {
                Task::Data(job) => format!("data t{}", job.table.oid),
                Task::Post(entry) => entry.label.clone(),
                Task::Analyze(name) => format!("analyze {name}"),
            });
            plan.finished(&task);
        }
        assert!(plan.all_done(), "work left after {seen:?}");
        seen
    }

    #[test]
    fn entries_run_as_soon_as_their_tables_load_and_deferred_passes_stay_out() {
        // t1 big, t2 small, t3 empty; e10: index on t1; e11: key on t2;
        // e12: foreign key t1 → t2 (after e11); e13: on a partitioned
        // parent (all data); e14: a grant (deferred).
        let manifest = manifest(&[(1, 1000), (2, 10), (3, 0)]);
        let jobs = vec![job(&manifest.tables[0]), job(&manifest.tables[1])];
        let post = PostData {
            preamble: String::new(),
            entries: vec![
                entry(10, Pass::Main, Wait::Tables(vec![1]), &[]),
                entry(11, Pass::Main, Wait::Tables(vec![2]), &[]),
                entry(12, Pass::Main, Wait::Tables(vec![1, 2]), &[11]),
                entry(13, Pass::Main, Wait::AllData, &[]),
                entry(14, Pass::Acl, Wait::Tables(vec![1]), &[]),
            ],
        };
        let mut plan = Plan::new(jobs, &post, &manifest);
        assert_eq!(
            order(&mut plan),
            vec![
                "data t1",
                "e10",
                "data t2",
                "e11",
                "e12",
                "e13",
                r#"analyze "s"."t3""#,
                r#"analyze "s"."t1""#,
                r#"analyze "s"."t2""#,
            ]
        );
    }

    #[test]
    fn a_dependency_that_never_completes_is_reported_not_waited_for() {
        let manifest = manifest(&[(1, 10)]);
        let post = PostData {
            preamble: String::new(),
            entries: vec![
                entry(10, Pass::Main, Wait::Tables(vec![1]), &[11]),
                entry(11, Pass::Main, Wait::Tables(vec![1]), &[10]),
            ],
        };
        let mut plan = Plan::new(vec![job(&manifest.tables[0])], &post, &manifest);
        order_until_stuck(&mut plan);
        let stuck = plan.stuck().expect("stuck");
        assert!(stuck.contains("e10") && stuck.contains("e11"), "{stuck}");
    }

    #[test]
    fn entries_whose_table_lock_would_wait_are_held_back_while_index_builds_share() {
        // t1 loaded at once (empty); its key (exclusive) and two index
        // builds (shared) are ready together; t2 has data.
        let manifest = manifest(&[(1, 0), (2, 10)]);
        let mut key = entry(10, Pass::Main, Wait::Tables(vec![1]), &[]);
        key.label = "CONSTRAINT t1_pkey".into();
        let mut first = entry(11, Pass::Main, Wait::Tables(vec![1]), &[]);
        first.label = "INDEX t1_a".into();
        let mut second = entry(12, Pass::Main, Wait::Tables(vec![1]), &[]);
        second.label = "INDEX t1_b".into();
        let post = PostData {
            preamble: String::new(),
            entries: vec![key, first, second],
        };
        let mut plan = Plan::new(vec![job(&manifest.tables[1])], &post, &manifest);
        let label = |t: &Task| match t {
            Task::Data(j) => format!("data t{}", j.table.oid),
            Task::Post(e) => e.label.clone(),
            Task::Analyze(n) => format!("analyze {n}"),
        };
        // Three connections asking at once: the key takes t1, so the index
        // builds wait in the plan and the others get other work.
        let a = plan.next().unwrap();
        let b = plan.next().unwrap();
        assert_eq!(
            (label(&a), label(&b)),
            ("CONSTRAINT t1_pkey".into(), "data t2".into())
        );
        assert!(plan.next().is_none(), "nothing else may start on t1");
        plan.finished(&a);
        // Both index builds run side by side.
        let c = plan.next().unwrap();
        let d = plan.next().unwrap();
        assert_eq!(
            (label(&c), label(&d)),
            ("INDEX t1_a".into(), "INDEX t1_b".into())
        );
        plan.finished(&b);
        plan.finished(&c);
        plan.finished(&d);
        order_until_stuck(&mut plan);
        assert!(plan.all_done());
    }

    fn order_until_stuck(plan: &mut Plan) {
        while let Some(task) = plan.next() {
            plan.finished(&task);
        }
    }
}
