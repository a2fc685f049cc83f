//! What a claimed task does, behind [`TaskExecutor`]: the engine's backup,
//! restores, lifecycle copies and verifies for real runs ([`EngineExecutor`]), a
//! scripted stand-in in the runner's unit tests. Task messages (proto) are
//! turned into engine calls here (within the connections the claim granted)
//! and the engine's summaries back.

use std::sync::Arc;

use async_trait::async_trait;
use pgvault_datastore::Datastore;
use pgvault_engine::fanout::{ChunkJob, Fanout, StoredChunk};
use pgvault_engine::{self as engine, EngineError, EngineOptions, ErrorCode, PgTarget};
use pgvault_proto::v1::{
    BackupResult, BackupTask, ChunkTask, ConnectionSpec, RestoreResult, RestoreTask,
    complete_task_request, task,
};
use tokio_util::sync::CancellationToken;

use super::chunk_link::ChunkLink;
use super::fanout::LeaderDispatch;
use super::stage_split::{bytes_read, stage_split};
use super::{drill, lifecycle, restore_files, verify};

/// The lease a task runs under, for what a backup fanned out across the
/// fleet needs (its leader's calls carry the job's lease token).
#[derive(Clone)]
pub struct TaskLease {
    pub job_id: String,
    pub attempt: u32,
    pub lease_token: String,
    pub worker_id: String,
    /// The link's chunk calls; `None`: the link carries none.
    pub chunks: Option<Arc<dyn ChunkLink>>,
}

/// Runs one task to its result. Progress goes to `progress`; `cancel`
/// stops it (fencing, a user's cancel, shutdown).
#[async_trait]
pub trait TaskExecutor: Send + Sync + 'static {
    async fn execute(
        &self,
        kind: task::Kind,
        progress: Arc<dyn engine::ProgressSink>,
        cancel: CancellationToken,
    ) -> Result<complete_task_request::Result, EngineError>;

    /// Runs a claimed task knowing its lease (a backup may fan out);
    /// by default as [`TaskExecutor::execute`].
    async fn execute_leased(
        &self,
        kind: task::Kind,
        _lease: TaskLease,
        progress: Arc<dyn engine::ProgressSink>,
        cancel: CancellationToken,
    ) -> Result<complete_task_request::Result, EngineError> {
        self.execute(kind, progress, cancel).await
    }

    /// Dumps one chunk of a fanned-out backup, or loads one of a fanned-out
    /// restore (a helper's work).
    async fn execute_chunk(
        &self,
        chunk: ChunkTask,
        _progress: Arc<dyn engine::ProgressSink>,
        _cancel: CancellationToken,
    ) -> Result<StoredChunk, EngineError> {
        Err(final_error(
            ErrorCode::Internal,
            format!(
                "this runner does not dump chunk sub-tasks (chunk {})",
                chunk.key
            ),
        ))
    }
}

/// Runs tasks with the engine.
pub struct EngineExecutor {
    pub options: EngineOptions,
}

#[async_trait]
impl TaskExecutor for EngineExecutor {
    async fn execute(
        &self,
        kind: task::Kind,
        progress: Arc<dyn engine::ProgressSink>,
        cancel: CancellationToken,
    ) -> Result<complete_task_request::Result, EngineError> {
        let lifecycle = |moved| complete_task_request::Result::Lifecycle(lifecycle::result(moved));
        let options = &EngineOptions {
            encryption: point_key(&kind)?,
            ..self.options.clone()
        };
        match kind {
            task::Kind::Backup(backup) => run_backup(backup, options, None, progress, cancel).await,
            task::Kind::Chunk(chunk) => Err(final_error(
                ErrorCode::Internal,
                format!(
                    "chunk {} came as a job's task; chunks are claimed with ClaimChunk",
                    chunk.key
                ),
            )),
            task::Kind::Restore(restore) => {
                run_restore(
                    restore,
                    options,
                    &engine::RestoreRun::default(),
                    progress,
                    cancel,
                )
                .await
            }
            task::Kind::RestoreFiles(files) => {
                restore_files::run(files, options, progress, cancel).await
            }
            task::Kind::Delete(delete) => lifecycle::run_delete(delete, progress, cancel)
                .await
                .map(lifecycle),
            task::Kind::TierMove(tier_move) => {
                lifecycle::run_tier_move(tier_move, options, progress, cancel)
                    .await
                    .map(lifecycle)
            }
            task::Kind::Copy(copy) => lifecycle::run_copy(copy, options, progress, cancel)
                .await
                .map(lifecycle),
            task::Kind::Rehydrate(rehydrate) => {
                lifecycle::run_rehydrate(rehydrate, options, progress, cancel)
                    .await
                    .map(lifecycle)
            }
            task::Kind::Verify(task) => verify::run(task, options, progress, cancel)
                .await
                .map(complete_task_request::Result::Verify),
            task::Kind::Drill(mut task) => {
                let target = pg_target(task.target.take())?;
                drill::run(task, target, options, progress, cancel)
                    .await
                    .map(complete_task_request::Result::Drill)
            }
        }
    }

    async fn execute_leased(
        &self,
        kind: task::Kind,
        lease: TaskLease,
        progress: Arc<dyn engine::ProgressSink>,
        cancel: CancellationToken,
    ) -> Result<complete_task_request::Result, EngineError> {
        let options = EngineOptions {
            encryption: point_key(&kind)?,
            ..self.options.clone()
        };
        match (kind, lease.chunks) {
            (task::Kind::Backup(backup), Some(link)) => {
                let fanout = Fanout {
                    workers: backup.fanout_workers,
                    threshold_bytes: self.options.fanout_threshold_bytes,
                    dispatch: Arc::new(LeaderDispatch {
                        link,
                        job_id: lease.job_id,
                        attempt: lease.attempt,
                        lease_token: lease.lease_token,
                        worker_id: lease.worker_id,
                    }),
                };
                run_backup(backup, &options, Some(fanout), progress, cancel).await
            }
            (task::Kind::Restore(restore), link) => {
                let owner = Some((lease.job_id.clone(), lease.attempt));
                let fanout = link.map(|link| Fanout {
                    workers: restore.fanout_workers,
                    threshold_bytes: self.options.fanout_threshold_bytes,
                    dispatch: Arc::new(LeaderDispatch {
                        link,
                        job_id: lease.job_id,
                        attempt: lease.attempt,
                        lease_token: lease.lease_token,
                        worker_id: lease.worker_id,
                    }),
                });
                let run = engine::RestoreRun { fanout, owner };
                run_restore(restore, &options, &run, progress, cancel).await
            }
            (kind, _) => self.execute(kind, progress, cancel).await,
        }
    }

    async fn execute_chunk(
        &self,
        chunk: ChunkTask,
        progress: Arc<dyn engine::ProgressSink>,
        cancel: CancellationToken,
    ) -> Result<StoredChunk, EngineError> {
        // Helpers seal their chunks with the attempt's point key, like the leader.
        let options = EngineOptions {
            encryption: point_key(&task::Kind::Chunk(chunk.clone()))?,
            ..self.options.clone()
        };
        let store = open_datastore(&chunk.datastore_url)?;
        let load = chunk.kind == "LOAD";
        let connection = if load { chunk.target } else { chunk.source };
        let server = pg_target(connection)?;
        let job = ChunkJob {
            snapshot_id: chunk.snapshot_id,
            key: chunk.key,
            spec: chunk.spec,
            take: chunk.take,
        };
        if load {
            // A restore's load into the database its leader created.
            return engine::restore_fanout::load_chunk(
                &server,
                &store,
                &chunk.prefix,
                &job,
                &options,
                cancel,
            )
            .await;
        }
        let source = server;
        engine::fanout::dump_chunk(
            &source,
            &store,
            &chunk.prefix,
            &job,
            &options,
            progress,
            cancel,
        )
        .await
    }
}

async fn run_backup(
    task: BackupTask,
    options: &EngineOptions,
    fanout: Option<Fanout>,
    progress: Arc<dyn engine::ProgressSink>,
    cancel: CancellationToken,
) -> Result<complete_task_request::Result, EngineError> {
    let source = pg_target(task.source)?;
    let store = open_datastore(&task.datastore_url)?;
    let options = EngineOptions {
        capture_globals: task.capture_globals,
        capture_role_passwords: task.capture_globals && task.capture_role_passwords,
        key_object: key_object(task.point_key.as_ref()),
        ..options.within_server_grant(task.max_server_connections)
    };
    let summary = engine::backup_fanned(
        &source,
        &store,
        &task.prefix,
        &options,
        fanout,
        progress,
        cancel,
    )
    .await?;
    Ok(complete_task_request::Result::Backup(BackupResult {
        snapshot_time: Some(pgvault_proto::Timestamp {
            seconds: summary.snapshot_time.timestamp(),
            nanos: summary.snapshot_time.timestamp_subsec_nanos() as i32,
        }),
        stored_bytes: summary.stored_bytes,
        raw_bytes: summary.raw_bytes,
        chunk_count: summary.chunk_count,
        stage_split: Some(stage_split(
            &summary.stages,
            summary.raw_bytes,
            summary.stored_bytes,
        )),
        manifest_sha256: summary.manifest_sha256,
        server_version: summary.server_version,
    }))
}

async fn run_restore(
    task: RestoreTask,
    options: &EngineOptions,
    run: &engine::RestoreRun,
    progress: Arc<dyn engine::ProgressSink>,
    cancel: CancellationToken,
) -> Result<complete_task_request::Result, EngineError> {
    let target = pg_target(task.target)?;
    let store = open_datastore(&task.datastore_url)?;
    let options = &options.within_server_grant(task.max_server_connections);
    let expected = (!task.manifest_sha256.is_empty()).then_some(task.manifest_sha256.as_str());
    // A whole-server restore's first job: the roles before any database
    // whose grants name them (connected to the server's postgres database,
    // as pg_dumpall's scripts are).
    let mut warnings = Vec::new();
    if task.restore_globals {
        let server = PgTarget {
            database: "postgres".to_string(),
            ..target.clone()
        };
        let globals_options = EngineOptions {
            skip_tablespaces: task.skip_tablespaces,
            ..options.clone()
        };
        let restored =
            engine::restore_globals(&server, &store, &task.prefix, expected, &globals_options)
                .await?;
        warnings.extend(
            restored
                .warnings
                .into_iter()
                .map(|w| format!("globals: {w} (kept as it was)")),
        );
    }
    let selection = engine::Selection {
        schemas: task.schemas,
        tables: task.tables,
    };
    let summary = engine::restore_database_fanned(
        &target,
        &store,
        &task.prefix,
        expected,
        &selection,
        options,
        run,
        progress,
        cancel,
    )
    .await?;
    Ok(complete_task_request::Result::Restore(RestoreResult {
        rows: summary.rows,
        bytes: summary.bytes,
        stage_split: Some(stage_split(
            &summary.stages,
            summary.bytes,
            bytes_read(&summary.stages),
        )),
        skipped_objects: warnings
            .into_iter()
            .chain(summary.skipped_objects)
            .collect(),
        ..RestoreResult::default()
    }))
}

/// The data key the task carries for its point (`None`: not encrypted),
/// held from here on in a type that never prints it.
fn point_key(kind: &task::Kind) -> Result<Option<engine::seal::PointKey>, EngineError> {
    let key = match kind {
        task::Kind::Backup(t) => t.point_key.as_ref(),
        task::Kind::Restore(t) => t.point_key.as_ref(),
        task::Kind::RestoreFiles(t) => t.point_key.as_ref(),
        task::Kind::TierMove(t) => t.point_key.as_ref(),
        task::Kind::Rehydrate(t) => t.point_key.as_ref(),
        task::Kind::Copy(t) => t.point_key.as_ref(),
        task::Kind::Verify(t) => t.point_key.as_ref(),
        task::Kind::Drill(t) => t.point_key.as_ref(),
        task::Kind::Chunk(t) => t.point_key.as_ref(),
        task::Kind::Delete(_) => None,
    };
    let Some(key) = key else {
        return Ok(None);
    };
    if key.algorithm != "aes-256-gcm" {
        return Err(final_error(
            ErrorCode::EncryptionKeyUnavailable,
            format!(
                "the task's data key is for \"{}\", which this worker does not support; upgrade the worker",
                key.algorithm
            ),
        ));
    }
    engine::seal::PointKey::new(&key.key_id, &key.key)
        .map(Some)
        .map_err(|e| final_error(ErrorCode::EncryptionKeyUnavailable, e))
}

/// The key object a backup stores with its point: the data key wrapped by
/// the vault key, as the coordinator sent it (`None`: not encrypted, or a
/// coordinator that sends no wrapped key).
fn key_object(
    key: Option<&pgvault_proto::v1::PointKey>,
) -> Option<engine::seal::key_object::KeyObject> {
    let key = key.filter(|k| !k.wrapped_key.is_empty())?;
    Some(engine::seal::key_object::KeyObject::new(
        &key.key_id,
        &key.vault_id,
        key.vault_key_version,
        &key.wrapped_key,
    ))
}

fn pg_target(spec: Option<ConnectionSpec>) -> Result<PgTarget, EngineError> {
    let spec = spec.ok_or_else(|| {
        final_error(
            ErrorCode::Internal,
            "task carried no connection details; the coordinator and worker versions may differ"
                .to_string(),
        )
    })?;
    let port = u16::try_from(spec.port).map_err(|_| {
        final_error(
            ErrorCode::Internal,
            format!("server port {} is out of range", spec.port),
        )
    })?;
    Ok(PgTarget {
        host: spec.host,
        port,
        database: spec.database,
        user: spec.user,
        password: spec.password,
        ssl_mode: spec.ssl_mode,
        trust_server_certificate: spec.trust_server_certificate,
        ssl_root_cert: (!spec.ssl_root_cert.is_empty())
            .then(|| std::path::PathBuf::from(spec.ssl_root_cert)),
    })
}

pub(super) fn open_datastore(url: &str) -> Result<Datastore, EngineError> {
    Datastore::open(url).map_err(|e| {
        final_error(
            ErrorCode::DatastoreUnavailable,
            format!("cannot open datastore: {e}"),
        )
    })
}

/// A task that cannot run as given: another attempt would fail the same way.
fn final_error(code: ErrorCode, message: String) -> EngineError {
    EngineError {
        code,
        message,
        retryable: false,
    }
}
