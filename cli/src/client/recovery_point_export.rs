//! `pgvault recovery-point export`: a recovery point to a plain SQL file
//! with the datastore URL and (for encrypted points) the vault's key file
//! alone, entirely in this process — no coordinator, no state database, no
//! token. `--list` shows the points a datastore holds. The point is opened
//! by `pgvault_engine::offline` and streamed through the same script writer
//! as `pgvault restore files` (`restore_as_sql`), so the file loads with
//! `psql -v ON_ERROR_STOP=1 -d DB -f FILE`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use pgvault_datastore::Datastore;
use pgvault_engine::offline::{self, FoundPoint};
use pgvault_engine::seal::key_file::KeyFile;
use pgvault_engine::selection::Selection;
use pgvault_engine::{EngineError, EngineOptions, NoProgress};
use tokio_util::sync::CancellationToken;

use super::output::{bytes, print_json, print_list};

/// The arguments of `recovery-point export`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    pgvault recovery-point export --datastore file:///srv/pgvault --list --key-file prod.key\n  \
    pgvault recovery-point export --datastore s3://backups/pg --key-file prod.key \\\n      \
    --point 0197c1d2-7a4e-7c41-9d0e-3f1b2a6c8e10 --out orders.sql\n  \
    psql -v ON_ERROR_STOP=1 -d restored -f orders.sql")]
pub struct ExportArgs {
    /// Object-store URL of the datastore holding the point (as the vault was
    /// created with: file:///dir, s3://bucket/prefix, az://container/prefix).
    #[arg(long, value_name = "URL")]
    pub datastore: String,
    /// The vault's key file (`pgvault vault export-key`), for encrypted points.
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// The point: its id, or its path as `--list` shows it (VAULT/INSTANCE/POINT).
    #[arg(long, value_name = "POINT", required_unless_present = "list")]
    pub point: Option<String>,
    /// The SQL file to create (must not exist).
    #[arg(long, value_name = "FILE", required_unless_present = "list")]
    pub out: Option<PathBuf>,
    /// List the points found in the datastore instead of exporting one.
    #[arg(long, conflicts_with_all = ["point", "out"])]
    pub list: bool,
    /// Directory of pg_restore binaries (repeatable; default: the usual places).
    #[arg(long = "pg-bin-dir", value_name = "DIR")]
    pub pg_bin_dirs: Vec<PathBuf>,
}

/// Runs the export or the listing; `json` chooses the listing's format.
pub async fn run(args: ExportArgs, json: bool) -> anyhow::Result<ExitCode> {
    let store = Datastore::open(&args.datastore)
        .map_err(|e| anyhow::anyhow!("--datastore {}: {e}", args.datastore))?;
    let keys = match &args.key_file {
        Some(path) => Some(read_key_file(path)?),
        None => None,
    };
    if args.list {
        list(&store, keys.as_ref(), json).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let (Some(point), Some(out)) = (args.point, args.out) else {
        anyhow::bail!("give --point and --out (or --list)");
    };
    export(&store, &point, &out, keys.as_ref(), args.pg_bin_dirs).await?;
    Ok(ExitCode::SUCCESS)
}

fn read_key_file(path: &Path) -> anyhow::Result<KeyFile> {
    let text = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("cannot read key file {}: {e}", path.display()))?;
    KeyFile::from_json(&text).map_err(|e| anyhow::anyhow!("key file {}: {e}", path.display()))
}

/// An engine error for people: its stable code, then its message.
fn human(error: EngineError) -> anyhow::Error {
    anyhow::anyhow!("{}: {}", error.code, error.message)
}

async fn export(
    store: &Datastore,
    name: &str,
    out: &Path,
    keys: Option<&KeyFile>,
    pg_bin_dirs: Vec<PathBuf>,
) -> anyhow::Result<()> {
    if out.exists() {
        anyhow::bail!(
            "{} already exists: choose another --out or move the old file away",
            out.display()
        );
    }
    let file_name = out
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow::anyhow!("--out {} names no file", out.display()))?;
    let dir = std::path::absolute(out.parent().unwrap_or(Path::new(".")))
        .map_err(|e| anyhow::anyhow!("--out {}: {e}", out.display()))?;
    let output = Datastore::open(&dir.to_string_lossy())
        .map_err(|e| anyhow::anyhow!("--out {}: {e}", out.display()))?;
    let point = offline::find_point(store, name).await.map_err(human)?;
    let key = offline::point_key(store, &point, keys)
        .await
        .map_err(human)?;
    let options = EngineOptions {
        encryption: key,
        pg_bin_dirs,
        pg_bin_dirs_setting: "--pg-bin-dir",
        ..EngineOptions::default()
    };
    let summary = pgvault_engine::restore_as_sql(
        store,
        &point.prefix,
        None,
        &output,
        file_name,
        &Selection::default(),
        &options,
        Arc::new(NoProgress),
        CancellationToken::new(),
    )
    .await
    .map_err(human)?;
    let size = summary.output.map(|o| o.size).unwrap_or_default();
    println!(
        "exported recovery point {} ({} table(s), {} row(s)) to {} ({}); load it with: psql -v ON_ERROR_STOP=1 -d DATABASE -f {}",
        point.prefix,
        summary.tables,
        summary.rows,
        out.display(),
        bytes(size),
        out.display()
    );
    Ok(())
}

/// What a listing can say about a point's contents: its database and
/// snapshot time when the manifest opens (unencrypted, or with the key file).
async fn contents(
    store: &Datastore,
    point: &FoundPoint,
    keys: Option<&KeyFile>,
) -> Option<(String, String)> {
    if point.encrypted && (keys.is_none() || !point.key_object) {
        return None;
    }
    let key = offline::point_key(store, point, keys).await.ok()?;
    let manifest = offline::manifest(store, point, key.as_ref()).await.ok()?;
    Some((manifest.database, manifest.snapshot_time.to_rfc3339()))
}

async fn list(store: &Datastore, keys: Option<&KeyFile>, json: bool) -> anyhow::Result<()> {
    let points = offline::list_points(store).await.map_err(human)?;
    let mut rows = Vec::with_capacity(points.len());
    let mut values = Vec::with_capacity(points.len());
    for point in &points {
        let (database, taken) = contents(store, point, keys).await.unzip();
        let encrypted = match (point.encrypted, point.key_object) {
            (false, _) => "no",
            (true, true) => "yes",
            (true, false) => "yes (no key object: restore it through the coordinator)",
        };
        values.push(serde_json::json!({
            "point": point.prefix,
            "point_id": point.point_id(),
            "instance": point.instance(),
            "written_time": point.written.to_rfc3339(),
            "stored_bytes": point.stored_bytes,
            "encrypted": point.encrypted,
            "key_object": point.key_object,
            "database": database,
            "snapshot_time": taken,
        }));
        rows.push(vec![
            point.prefix.clone(),
            database.unwrap_or_else(|| "-".into()),
            taken.unwrap_or_else(|| point.written.to_rfc3339()),
            bytes(point.stored_bytes),
            encrypted.to_string(),
        ]);
    }
    if json {
        print_json(&serde_json::Value::Array(values));
    } else {
        print_list(
            &[
                "POINT (VAULT/INSTANCE/ID)",
                "DATABASE",
                "TIME",
                "SIZE",
                "ENCRYPTED",
            ],
            rows,
            "no recovery points in this datastore",
        );
    }
    Ok(())
}
