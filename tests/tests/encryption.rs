//! Client-side encryption end to end through `pgvault up` (coordinator,
//! in-process worker, local-disk datastore). A new vault is encrypted by
//! default: after a backup of a database holding a distinctive string, no
//! stored object contains that string or begins as a zstd frame (each
//! begins with the sealed header); the point restores identical, as a
//! database and (selectively, so the coordinator opens the manifest too) as
//! a SQL file. A flipped byte in a chunk fails the restore naming the
//! object; a chunk copied over from another point and a truncated manifest
//! are detected; after `vault rotate-key` the points still restore. A vault
//! created with `--encryption none` still stores plain zstd.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use pgvault_e2e::compare::assert_identical;
use pgvault_e2e::fixtures;
use pgvault_e2e::pgvault::{Api, PgvaultUp};
use pgvault_e2e::scenario::files_under;
use pgvault_localpg::TempCluster;
use pgvault_proto::v1::*;
use serde_json::Value;

const SOURCE_PASSWORD: &str = "enc-src-pw";
const JOB_TIMEOUT: Duration = Duration::from_secs(300);
/// In rows, a comment and a table name: none of it may reach the datastore.
const DISTINCTIVE: &str = "zebra_quokka_7f3a9c";
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
const SEALED_MAGIC: &[u8; 4] = b"PGVS";

/// A big table (several 64 KiB records per chunk) and small ones (a bundle).
fn shop_sql() -> String {
    format!(
        r#"
CREATE TABLE public.orders (id integer PRIMARY KEY, note text NOT NULL, digest text NOT NULL);
COMMENT ON TABLE public.orders IS 'orders of {DISTINCTIVE}';
INSERT INTO public.orders SELECT g, '{DISTINCTIVE} order ' || g, md5(g::text) FROM generate_series(1, 30000) g;
CREATE TABLE public."{DISTINCTIVE}_tags" (id integer PRIMARY KEY, tag text);
INSERT INTO public."{DISTINCTIVE}_tags" SELECT g, 'tag {DISTINCTIVE} ' || g FROM generate_series(1, 50) g;
CREATE TABLE public.small (id integer PRIMARY KEY, v text);
INSERT INTO public.small SELECT g, 'v' || g FROM generate_series(1, 20) g;
"#
    )
}

fn ok(output: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "`pgvault {what}` failed ({}):\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every stored file of the point under `dir` (its prefix on disk).
fn point_files(dir: &Path) -> Vec<PathBuf> {
    let files: Vec<PathBuf> = files_under(dir).iter().map(|f| dir.join(f)).collect();
    assert!(files.len() >= 3, "a point holds objects: {files:?}");
    files
}

/// The directory of `point` (".../recoveryPoints/{id}") under the
/// datastore directory `datastore`: the one whose name is the point's id.
fn point_dir(datastore: &Path, point: &str) -> PathBuf {
    let id = point.rsplit('/').next().expect("a point id");
    let manifest = files_under(datastore)
        .into_iter()
        .find(|f| f.ends_with(&format!("{id}/manifest.json")))
        .unwrap_or_else(|| panic!("no manifest of {point} under {}", datastore.display()));
    datastore
        .join(manifest)
        .parent()
        .expect("the point's directory")
        .to_path_buf()
}

/// The largest chunk object of the point (a relative path and its file).
fn largest_chunk(dir: &Path) -> (String, PathBuf) {
    let mut chunks: Vec<(u64, String)> = files_under(dir)
        .into_iter()
        .filter(|f| f.starts_with("data/"))
        .map(|f| (std::fs::metadata(dir.join(&f)).unwrap().len(), f))
        .collect();
    chunks.sort();
    let (_, relative) = chunks.pop().expect("the point holds chunk objects");
    let file = dir.join(&relative);
    (relative, file)
}

async fn restore(api: &mut Api, point: &str, database: &str) -> Job {
    let job = api
        .restores
        .restore_as_database(RestoreAsDatabaseRequest {
            recovery_point: point.to_string(),
            target_database: database.to_string(),
            ..Default::default()
        })
        .await
        .expect("restore accepted")
        .into_inner();
    api.wait_for_job(&job.name, JOB_TIMEOUT).await.unwrap()
}

fn failed_with(job: &Job, code: &str, names: &str) {
    assert_eq!(
        JobState::try_from(job.state).unwrap_or_default(),
        JobState::Failed,
        "{job:?}"
    );
    let error = job.error.clone().expect("a failed job carries an error");
    assert_eq!(error.code, code, "{error:?}");
    assert!(error.message.contains(names), "names {names}: {error:?}");
    assert!(!error.recommended_action.is_empty());
}

fn points_of(up: &PgvaultUp, instance: &str) -> Vec<String> {
    let listed = json(&ok(
        up.cli(
            &["recovery-point", "list", instance, "--output", "json"],
            None,
        )
        .expect("run pgvault"),
        "recovery-point list",
    ));
    listed["recovery_points"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|p| p["name"].as_str().expect("a name").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn encrypted_points_hide_their_data_restore_identical_and_detect_tampering() {
    let source = TempCluster::start(SOURCE_PASSWORD).expect("start source PostgreSQL");
    for database in ["shop", "plainshop"] {
        fixtures::create_database(&source, database)
            .await
            .expect("create database");
        source
            .connect(database)
            .await
            .expect("connect")
            .batch_execute(&shop_sql())
            .await
            .expect("load fixture");
    }
    let up = tokio::task::spawn_blocking(PgvaultUp::start)
        .await
        .unwrap()
        .expect("pgvault up");
    let cli = |args: &[&str]| up.cli(args, None).expect("run pgvault");
    let mut api = Api::connect(&up.endpoint, &up.token().expect("token"))
        .await
        .expect("connect to pgvault up");
    let datastore = up.data_dir.join("datastore");

    // A new vault is encrypted by default, with version 1 of its key.
    up.create_demo_vault("weekly", "mon", source.port());
    let vault = json(&ok(
        cli(&["vault", "get", "demo", "--output", "json"]),
        "vault get",
    ));
    assert_eq!(vault["encryption"], "aes-256-gcm", "{vault}");
    assert_eq!(vault["key_version"], 1, "{vault}");
    let instance = up.protect_demo_database("weekly", SOURCE_PASSWORD, "shop");
    ok(cli(&["backup", "now", &instance, "--wait"]), "backup now");
    let point = points_of(&up, &instance).remove(0);
    let dir = point_dir(&datastore, &point);

    // Nothing readable in the datastore: every object is sealed.
    for file in point_files(&dir) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !contains(&bytes, DISTINCTIVE.as_bytes()),
            "{} holds the source's data in the clear",
            file.display()
        );
        if file.ends_with("key.json") {
            // The data key wrapped by the vault key (FORMAT.md), no data.
            assert!(bytes.starts_with(b"{"), "{} is JSON", file.display());
            continue;
        }
        assert!(
            !bytes.starts_with(&ZSTD_MAGIC),
            "{} is a plain zstd frame",
            file.display()
        );
        assert!(
            bytes.starts_with(SEALED_MAGIC),
            "{} is not sealed",
            file.display()
        );
    }

    // It restores identical, as a database and as a (selective) SQL file.
    let job = restore(&mut api, &point, "shop_restored").await;
    assert_eq!(
        JobState::try_from(job.state).unwrap_or_default(),
        JobState::Completed,
        "{job:?}"
    );
    assert_identical(&source, "shop", &source, "shop_restored")
        .await
        .unwrap();
    let table = format!("public.{DISTINCTIVE}_tags");
    ok(
        cli(&[
            "restore",
            "files",
            &point,
            "--to",
            "./exports",
            "--table",
            &table,
            "--wait",
        ]),
        "restore files --table",
    );
    let exports = up.data_dir.parent().expect("up dir").join("exports");
    let sql = files_under(&exports);
    assert_eq!(sql.len(), 1, "{sql:?}");
    let script = std::fs::read_to_string(exports.join(&sql[0])).unwrap();
    assert!(
        script.contains(&format!("tag {DISTINCTIVE} 50")),
        "the selected table's rows, decrypted"
    );

    // A flipped byte in a chunk: the restore fails naming the object.
    let (chunk, chunk_file) = largest_chunk(&dir);
    let original = std::fs::read(&chunk_file).unwrap();
    let mut flipped = original.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;
    std::fs::write(&chunk_file, &flipped).unwrap();
    let job = restore(&mut api, &point, "shop_flipped").await;
    failed_with(&job, "ObjectAuthenticationFailed", &chunk);
    std::fs::write(&chunk_file, &original).unwrap();

    // A chunk swapped in from another point of the same database: detected.
    ok(
        cli(&["backup", "now", &instance, "--wait"]),
        "second backup",
    );
    let second = points_of(&up, &instance)
        .into_iter()
        .find(|p| *p != point)
        .expect("a second point");
    let second_dir = point_dir(&datastore, &second);
    let second_chunk = second_dir.join(&chunk);
    let kept = std::fs::read(&second_chunk).expect("the same plan writes the same object path");
    std::fs::copy(&chunk_file, &second_chunk).unwrap();
    let job = restore(&mut api, &second, "shop_swapped").await;
    assert_eq!(
        JobState::try_from(job.state).unwrap_or_default(),
        JobState::Failed,
        "a chunk of another point is refused: {job:?}"
    );
    let error = job.error.clone().expect("an error");
    assert!(
        error.message.contains(&chunk),
        "the swapped object is named: {error:?}"
    );
    std::fs::write(&second_chunk, &kept).unwrap();

    // A truncated manifest: detected before anything is restored.
    let manifest = second_dir.join("manifest.json");
    let whole = std::fs::read(&manifest).unwrap();
    std::fs::write(&manifest, &whole[..whole.len() - 20]).unwrap();
    let job = restore(&mut api, &second, "shop_truncated").await;
    failed_with(&job, "ChecksumMismatch", "manifest.json");
    std::fs::write(&manifest, &whole).unwrap();

    // Rotating the vault key rewraps both points' data keys; both restore.
    let rotated = json(&ok(
        cli(&["vault", "rotate-key", "demo", "--output", "json"]),
        "vault rotate-key",
    ));
    assert_eq!(rotated["vault"]["key_version"], 2, "{rotated}");
    assert!(
        rotated["points_rewrapped"].as_u64().unwrap_or(0) >= 2,
        "{rotated}"
    );
    for (p, database) in [(&point, "shop_rotated"), (&second, "shop_rotated2")] {
        let job = restore(&mut api, p, database).await;
        assert_eq!(
            JobState::try_from(job.state).unwrap_or_default(),
            JobState::Completed,
            "{job:?}"
        );
        assert_identical(&source, "shop", &source, database)
            .await
            .unwrap();
    }

    // `--encryption none`: plain zstd chunks and a readable manifest.
    let plain_store = format!("file://{}", up.data_dir.join("plain").display());
    ok(
        cli(&[
            "vault",
            "create",
            "plain",
            "--region",
            "local",
            "--datastore",
            &plain_store,
            "--encryption",
            "none",
        ]),
        "vault create --encryption none",
    );
    let vault = json(&ok(
        cli(&["vault", "get", "plain", "--output", "json"]),
        "vault get",
    ));
    assert_eq!(vault["encryption"], "none", "{vault}");
    ok(
        cli(&[
            "policy",
            "create",
            "p",
            "--vault",
            "plain",
            "--weekdays",
            "mon",
            "--at",
            "02:30",
        ]),
        "policy create",
    );
    let configured = json(&ok(
        cli(&[
            "backup",
            "configure",
            "--vault",
            "plain",
            "--policy",
            "p",
            "--secret",
            "src-admin",
            "--server",
            "src",
            "--database",
            "plainshop",
            "--assign-missing-permissions",
            "--output",
            "json",
        ]),
        "backup configure",
    ));
    let plain_instance = configured["results"][0]["backup_instance"]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("{configured}"))
        .to_string();
    ok(
        cli(&["backup", "now", &plain_instance, "--wait"]),
        "backup now (plain)",
    );
    let plain_point = points_of(&up, &plain_instance).remove(0);
    let plain_dir = point_dir(&up.data_dir.join("plain"), &plain_point);
    let (_, plain_chunk) = largest_chunk(&plain_dir);
    assert!(
        std::fs::read(&plain_chunk)
            .unwrap()
            .starts_with(&ZSTD_MAGIC),
        "an unencrypted vault stores zstd frames"
    );
    let manifest = std::fs::read(plain_dir.join("manifest.json")).unwrap();
    assert!(
        contains(&manifest, DISTINCTIVE.as_bytes()),
        "a plain manifest"
    );
    let job = restore(&mut api, &plain_point, "plainshop_restored").await;
    assert_eq!(
        JobState::try_from(job.state).unwrap_or_default(),
        JobState::Completed,
        "{job:?}"
    );
    assert_identical(&source, "plainshop", &source, "plainshop_restored")
        .await
        .unwrap();
}
