//! The plan of a restore's work after pre-data, shared by the pool's
//! connections ([`super::restore_schedule`] runs it): table data (largest
//! first), each main-pass post-data entry as soon as the tables it touches
//! are loaded and the entries it depends on are done, and `ANALYZE` of each
//! table once its data and entries are in. Index builds so overlap with the
//! loading of other tables instead of waiting for all data. An entry whose
//! table lock would conflict with a running entry's waits in the plan, not
//! on a connection. Small tables' entries and `ANALYZE`s go out in batches
//! (one round trip for many), big ones alone; a big index build that would
//! leave connections idle gets them as parallel workers.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::backup_plan::BUNDLE_TABLE_BYTES;
use super::ident::qualified;
use super::manifest::Manifest;
use super::post_data::{Pass, PostData, PostEntry, Wait};
use super::restore_data::LoadJob;

/// Tables with less data than this are "small": their entries and
/// `ANALYZE`s are batched.
const SMALL_TABLE_BYTES: u64 = BUNDLE_TABLE_BYTES;
/// Most post-data entries sent in one round trip.
const POST_BATCH: usize = 64;
/// Most tables analyzed by one `ANALYZE`.
const ANALYZE_BATCH: usize = 64;
/// Index builds on tables with at least this much data may get the idle
/// connections' share of the server as parallel maintenance workers.
const PARALLEL_BUILD_BYTES: u64 = 64 * 1024 * 1024;

/// One unit of work for a pool connection.
pub(crate) enum Task {
    Data(LoadJob),
    /// Entries run in one round trip (one, or a batch of small tables').
    Post(PostBatch),
    /// Tables analyzed by one statement.
    Analyze(Vec<String>),
}

pub(crate) struct PostBatch {
    pub entries: Vec<Arc<PostEntry>>,
    /// `max_parallel_maintenance_workers` for the batch, when the plan
    /// chose one (a lone big build while other connections would idle).
    pub parallel_workers: Option<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Pending,
    Running,
    Done,
}

/// What is left to do; shared by the pool's connections.
pub(crate) struct Plan {
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
    /// Tables ready for `ANALYZE`, with their data size.
    analyze: VecDeque<(String, u64)>,
    running: usize,
    /// Connections running the plan.
    connections: usize,
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
pub(crate) fn shares_lock(entry: &PostEntry) -> bool {
    entry.label.starts_with("INDEX ") && !entry.label.starts_with("INDEX ATTACH ")
}

impl Plan {
    pub(crate) fn new(
        jobs: Vec<LoadJob>,
        post: &PostData,
        manifest: &Manifest,
        connections: usize,
    ) -> Plan {
        let mut unloaded: HashMap<u32, usize> = HashMap::new();
        for job in &jobs {
            for part in &job.parts {
                *unloaded.entry(part.table.oid).or_default() += 1;
            }
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
            connections: connections.max(1),
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
    /// (they are the long index builds; small tables' in batches), then
    /// data, then `ANALYZE` (small tables' in batches).
    pub(crate) fn next(&mut self) -> Option<Task> {
        let task = if let Some(first) = self.take_entry(u64::MAX) {
            let weight = self.weight(&first);
            let mut entries = vec![first];
            while weight < SMALL_TABLE_BYTES && entries.len() < POST_BATCH {
                match self.take_entry(SMALL_TABLE_BYTES) {
                    Some(entry) => entries.push(entry),
                    None => break,
                }
            }
            // A big build with nothing else to start: the connections that
            // would idle lend the server their share as parallel workers.
            let parallel_workers = (weight >= PARALLEL_BUILD_BYTES
                && entries.len() == 1
                && shares_lock(&entries[0])
                && self.data.is_empty())
            .then(|| self.connections.saturating_sub(self.running + 1));
            Task::Post(PostBatch {
                entries,
                parallel_workers,
            })
        } else if let Some(job) = self.data.pop_front() {
            Task::Data(job)
        } else if let Some((name, size)) = self.analyze.pop_front() {
            let mut names = vec![name];
            while size < SMALL_TABLE_BYTES
                && names.len() < ANALYZE_BATCH
                && self
                    .analyze
                    .front()
                    .is_some_and(|(_, s)| *s < SMALL_TABLE_BYTES)
            {
                names.extend(self.analyze.pop_front().map(|(n, _)| n));
            }
            Task::Analyze(names)
        } else {
            return None;
        };
        self.running += 1;
        Some(task)
    }

    /// Takes (marks running, locks) the heaviest ready, lockable entry
    /// lighter than `below`.
    fn take_entry(&mut self, below: u64) -> Option<Arc<PostEntry>> {
        let mut best: Option<(u64, usize)> = None;
        for (i, entry) in self.entries.iter().enumerate() {
            if self.status[i] != Status::Pending || !self.ready(entry) || !self.lockable(entry) {
                continue;
            }
            let weight = self.weight(entry);
            if weight < below && best.is_none_or(|(w, _)| weight > w) {
                best = Some((weight, i));
            }
        }
        let (_, i) = best?;
        self.status[i] = Status::Running;
        let entry = self.entries[i].clone();
        self.lock(&entry, true);
        Some(entry)
    }

    pub(crate) fn finished(&mut self, task: &Task) {
        self.running -= 1;
        match task {
            Task::Data(job) => {
                self.data_left -= 1;
                for part in &job.parts {
                    let oid = part.table.oid;
                    if let Some(left) = self.unloaded.get_mut(&oid) {
                        *left -= 1;
                    }
                    self.maybe_analyze(oid);
                }
            }
            Task::Post(batch) => {
                for entry in &batch.entries {
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
            let size = self.size.get(&oid).copied().unwrap_or(0);
            self.analyze.push_back((name, size));
        }
    }

    pub(crate) fn all_done(&self) -> bool {
        self.running == 0
            && self.data.is_empty()
            && self.analyze.is_empty()
            && self.status.iter().all(|s| *s == Status::Done)
    }

    /// Nothing runs and nothing is ready, yet work is left: dependencies
    /// that can never be met.
    pub(crate) fn stuck(&self) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::TableEntry;
    use crate::restore_data::LoadPart;

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
            parts: vec![LoadPart {
                table: Arc::new(table.clone()),
                chunks: table.chunks.clone(),
            }],
            freeze: true,
            size: table.chunks.iter().map(|c| c.raw_bytes).sum(),
        }
    }

    fn label(task: &Task) -> String {
        match task {
            Task::Data(job) => format!("data t{}", job.parts[0].table.oid),
            Task::Post(batch) => batch
                .entries
                .iter()
                .map(|e| e.label.as_str())
                .collect::<Vec<_>>()
                .join("+"),
            Task::Analyze(names) => format!("analyze {}", names.join(", ")),
        }
    }

    /// Runs the plan on one connection, naming each task.
    fn order(plan: &mut Plan) -> Vec<String> {
        let mut seen = Vec::new();
        while let Some(task) = plan.next() {
            seen.push(label(&task));
            plan.finished(&task);
        }
        assert!(plan.all_done(), "work left after {seen:?}");
        seen
    }

    #[test]
    fn entries_run_as_soon_as_their_tables_load_and_deferred_passes_stay_out() {
        // t1 big, t2 smaller, t3 empty; e10: index on t1; e11: key on t2;
        // e12: foreign key t1 → t2 (after e11); e13: on a partitioned
        // parent (all data); e14: a grant (deferred). Sizes are past the
        // small-table batching.
        let manifest = manifest(&[(1, 1000 * MB), (2, 10 * MB), (3, 0)]);
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
        let mut plan = Plan::new(jobs, &post, &manifest, 1);
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
        let mut plan = Plan::new(vec![job(&manifest.tables[0])], &post, &manifest, 1);
        order_until_stuck(&mut plan);
        let stuck = plan.stuck().expect("stuck");
        assert!(stuck.contains("e10") && stuck.contains("e11"), "{stuck}");
    }

    #[test]
    fn entries_whose_table_lock_would_wait_are_held_back_while_index_builds_share() {
        // t1's data is in already (no load job); its key (exclusive) and
        // two index builds (shared) are ready together; t2 has data. Sizes
        // are past the small-table batching.
        let manifest = manifest(&[(1, 100 * MB), (2, 10 * MB)]);
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
        let mut plan = Plan::new(vec![job(&manifest.tables[1])], &post, &manifest, 3);
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

    #[test]
    fn small_tables_entries_and_analyzes_go_in_batches_and_a_lone_big_build_gets_workers() {
        // A bundle of 100 small tables, each with a key; one big table with
        // an index, loaded first.
        let mut tables: Vec<(u32, u64)> = (1..=100).map(|oid| (oid, 1000)).collect();
        tables.push((500, 200 * MB));
        let manifest = manifest(&tables);
        let big = job(&manifest.tables[100]);
        let bundle = LoadJob {
            parts: manifest.tables[..100]
                .iter()
                .flat_map(|t| job(t).parts)
                .collect(),
            freeze: false,
            size: 100 * 1000,
        };
        let mut entries: Vec<PostEntry> = (1..=100)
            .map(|oid| {
                let mut e = entry(
                    1000 + i64::from(oid),
                    Pass::Main,
                    Wait::Tables(vec![oid]),
                    &[],
                );
                e.label = format!("CONSTRAINT t{oid}_pkey");
                e
            })
            .collect();
        let mut index = entry(5000, Pass::Main, Wait::Tables(vec![500]), &[]);
        index.label = "INDEX t500_x".into();
        entries.push(index);
        let post = PostData {
            preamble: String::new(),
            entries,
        };
        let mut plan = Plan::new(vec![big.clone(), bundle], &post, &manifest, 2);
        let (mut posts, mut analyzes) = (Vec::new(), Vec::new());
        while let Some(task) = plan.next() {
            match &task {
                Task::Post(batch) => posts.push((batch.entries.len(), batch.parallel_workers)),
                Task::Analyze(names) => analyzes.push(names.len()),
                Task::Data(_) => {}
            }
            plan.finished(&task);
        }
        assert!(plan.all_done());
        // The big build alone (data still to load: no workers to lend), then
        // the keys of the bundle's tables in batches.
        assert_eq!(posts, [(1, None), (64, None), (36, None)]);
        assert_eq!(analyzes, [1, 64, 36]);

        // A big build with nothing else to start gets the idle connection.
        let manifest = super::tests::manifest(&[(500, 200 * MB)]);
        let post = PostData {
            preamble: String::new(),
            entries: vec![post.entries[100].clone()],
        };
        let mut plan = Plan::new(vec![big], &post, &manifest, 2);
        let load = plan.next().unwrap();
        plan.finished(&load);
        match plan.next() {
            Some(Task::Post(batch)) => assert_eq!(batch.parallel_workers, Some(1)),
            _ => panic!("the build comes next"),
        }
    }

    const MB: u64 = 1024 * 1024;

    fn order_until_stuck(plan: &mut Plan) {
        while let Some(task) = plan.next() {
            plan.finished(&task);
        }
    }
}
