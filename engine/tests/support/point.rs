//! Recovery points of the engine tests: a `file://` datastore in a temporary
//! directory, a backup taken into it ([`Point`]), its manifest and objects
//! (to corrupt them), and restores of it as a database or as a SQL script —
//! returning the engine's result so that error tests see the error.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use pgvault_datastore::Datastore;
use pgvault_engine::{
    BackupSummary, EngineError, EngineOptions, Manifest, PgTarget, Progress, ProgressSink,
    RestoreSummary, Selection, backup, restore_as_sql, restore_database, restore_database_selected,
};
use pgvault_localpg::TempCluster;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

use super::cluster::{create_database, options, psql_file, target};

pub fn datastore(dir: &TempDir) -> Datastore {
    Datastore::open(&format!("file://{}", dir.path().display())).expect("open file datastore")
}

/// Records every progress report.
#[derive(Default)]
pub struct Recorder(pub Mutex<Vec<Progress>>);

impl Recorder {
    /// The last report.
    pub fn last(&self) -> Progress {
        self.0
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a progress report")
    }
}

impl ProgressSink for Recorder {
    fn report(&self, progress: &Progress) {
        self.0.lock().unwrap().push(progress.clone());
    }
}

pub fn recorder() -> Arc<Recorder> {
    Arc::new(Recorder::default())
}

/// A backup taken into a `file://` datastore of its own.
pub struct Point {
    /// Holds the datastore's files; removed when the point is dropped.
    pub dir: TempDir,
    pub store: Datastore,
    /// Where in `store` the recovery point lies.
    pub prefix: String,
    pub summary: BackupSummary,
    /// Every progress report of the backup.
    pub progress: Arc<Recorder>,
}

/// Backs `database` on `pg` up to `rp` of a new datastore.
pub async fn back_up(pg: &TempCluster, database: &str, opts: &EngineOptions) -> Point {
    try_back_up(&target(pg, database), "rp", opts)
        .await
        .expect("backup")
}

/// Backs `source` up to `prefix` of a new datastore, created first (as the
/// coordinator creates a vault's datastore).
pub async fn try_back_up(
    source: &PgTarget,
    prefix: &str,
    opts: &EngineOptions,
) -> Result<Point, EngineError> {
    let dir = tempfile::tempdir().unwrap();
    let store = datastore(&dir);
    store.ensure_exists().await.unwrap();
    let progress = recorder();
    let summary = backup(
        source,
        &store,
        prefix,
        opts,
        progress.clone(),
        CancellationToken::new(),
    )
    .await?;
    Ok(Point {
        dir,
        store,
        prefix: prefix.to_string(),
        summary,
        progress,
    })
}

/// The error of a backup of `source` that must fail.
pub async fn backup_error(source: &PgTarget, opts: &EngineOptions) -> EngineError {
    match try_back_up(source, "rp", opts).await {
        Ok(point) => panic!("backup must fail, got {:?}", point.summary),
        Err(e) => e,
    }
}

impl Point {
    /// The point's `manifest.json`, read back from the datastore's files.
    pub fn manifest(&self) -> Manifest {
        let bytes = std::fs::read(self.object_path("manifest.json")).unwrap();
        Manifest::from_json(&bytes, "manifest.json").unwrap()
    }

    /// The file holding `object` (a path relative to the point, as the
    /// manifest names it).
    pub fn object_path(&self, object: &str) -> PathBuf {
        self.dir.path().join(&self.prefix).join(object)
    }

    /// `restore_database` of the whole point as `database` on `pg`,
    /// checking the manifest against `expected_sha256` when given.
    pub async fn restore(
        &self,
        pg: &TempCluster,
        database: &str,
        expected_sha256: Option<&str>,
        opts: &EngineOptions,
    ) -> Result<RestoreSummary, EngineError> {
        restore_database(
            &target(pg, database),
            &self.store,
            &self.prefix,
            expected_sha256,
            opts,
            recorder(),
            CancellationToken::new(),
        )
        .await
    }

    /// `restore_database_selected` of `selection` as `database` on `pg`.
    pub async fn restore_selected(
        &self,
        pg: &TempCluster,
        database: &str,
        expected_sha256: Option<&str>,
        selection: &Selection,
        opts: &EngineOptions,
    ) -> Result<RestoreSummary, EngineError> {
        restore_database_selected(
            &target(pg, database),
            &self.store,
            &self.prefix,
            expected_sha256,
            selection,
            opts,
            recorder(),
            CancellationToken::new(),
        )
        .await
    }

    /// `restore_as_sql` of `selection` to `path` of a `file://` datastore
    /// in `out`.
    pub async fn restore_as_sql(
        &self,
        expected_sha256: Option<&str>,
        out: &TempDir,
        path: &str,
        selection: &Selection,
        opts: &EngineOptions,
    ) -> Result<RestoreSummary, EngineError> {
        restore_as_sql(
            &self.store,
            &self.prefix,
            expected_sha256,
            &datastore(out),
            path,
            selection,
            opts,
            recorder(),
            CancellationToken::new(),
        )
        .await
    }

    /// Writes the whole point, checked against its manifest's SHA-256, as a
    /// SQL script and loads it with psql into the new database `database`
    /// on `pg`.
    pub async fn load_as_script(&self, pg: &TempCluster, database: &str) {
        let out = tempfile::tempdir().unwrap();
        self.restore_as_sql(
            Some(&self.summary.manifest_sha256),
            &out,
            "script.sql",
            &Selection::default(),
            &options(pg),
        )
        .await
        .expect("restore as sql");
        create_database(pg, database).await;
        psql_file(pg, database, &out.path().join("script.sql"));
    }
}

/// Overwrites a few bytes in the middle of a stored object.
pub fn corrupt(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let (at, len) = (bytes.len() / 2, bytes.len());
    for b in &mut bytes[at..(at + 4).min(len)] {
        *b ^= 0x55;
    }
    std::fs::write(path, bytes).unwrap();
}

/// Every file below `dir`, relative, sorted.
pub fn files_below(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}
