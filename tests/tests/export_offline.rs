//! Recoverable without pgvault: a point of an encrypted vault exported to a
//! SQL file with the datastore and the vault's key file alone. Through
//! `pgvault up`: a backup, `vault export-key` (a 0600 file), a key rotation
//! and a second backup, a re-export of the key file (both versions); then
//! `up` is stopped — coordinator and its private state database — and the
//! bare CLI (no endpoint that answers, no token) lists the datastore's
//! points and exports the older point with the re-exported key file: psql
//! loads the file into a fresh database identical to the source (data,
//! schema, sequences). Refusals say what is wrong: a key file of another
//! installation, one without the point's key version, no key file, a
//! tampered chunk (`ObjectAuthenticationFailed` naming it, no file left), a
//! point without a key object (backed up before key objects existed).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pgvault_e2e::binary::pgvault_bin;
use pgvault_e2e::compare::assert_identical;
use pgvault_e2e::fixtures;
use pgvault_e2e::pgvault::PgvaultUp;
use pgvault_e2e::scenario::files_under;
use pgvault_localpg::TempCluster;
use serde_json::Value;

const SOURCE_PASSWORD: &str = "export-src-pw";

/// Small, with what an identical copy must carry: rows, an index, a
/// foreign key, a view and sequences mid-way.
const SHOP_SQL: &str = r#"
CREATE SCHEMA sales;
CREATE TABLE sales.customers (id serial PRIMARY KEY, name text NOT NULL UNIQUE);
CREATE TABLE sales.orders (
    id bigserial PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES sales.customers (id),
    note text,
    amount numeric(10, 2) NOT NULL
);
CREATE INDEX orders_customer_idx ON sales.orders (customer_id);
INSERT INTO sales.customers (name) SELECT 'customer ' || g FROM generate_series(1, 40) g;
INSERT INTO sales.orders (customer_id, note, amount)
    SELECT 1 + g % 40, 'order ' || g || E' with a tab\tand ''quote''', g * 1.25
    FROM generate_series(1, 3000) g;
CREATE VIEW sales.big_orders AS SELECT id, amount FROM sales.orders WHERE amount > 100;
CREATE SEQUENCE public.invoice_no START 500;
SELECT nextval('public.invoice_no'), nextval('public.invoice_no');
"#;

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

/// The newest point's id of `instance`.
fn newest_point(up: &PgvaultUp, instance: &str, not: &[&str]) -> String {
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
        .map(|p| p["name"].as_str().expect("a name"))
        .map(|name| name.rsplit('/').next().expect("an id").to_string())
        .find(|id| !not.contains(&id.as_str()))
        .expect("a new point")
}

/// The bare CLI: no coordinator answers at its endpoint and it has no token.
fn offline(args: &[&str]) -> Output {
    let mut command = Command::new(pgvault_bin().expect("pgvault binary"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PGVAULT_") {
            command.env_remove(key);
        }
    }
    command
        .args(["--endpoint", "http://127.0.0.1:9"])
        .args(args)
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run pgvault")
}

fn export(datastore: &str, key_file: Option<&Path>, point: &str, out: &Path) -> Output {
    let out = out.to_string_lossy().to_string();
    let mut args = vec![
        "recovery-point",
        "export",
        "--datastore",
        datastore,
        "--point",
        point,
        "--out",
        &out,
    ];
    let key = key_file.map(|k| k.to_string_lossy().to_string());
    if let Some(key) = &key {
        args.extend(["--key-file", key]);
    }
    offline(&args)
}

/// The one-line error of a failed run.
fn refused(output: Output, words: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(!output.status.success(), "expected a refusal, got success");
    for word in words {
        assert!(stderr.contains(word), "{word:?} not in: {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

fn point_dir(datastore: &Path, point: &str) -> PathBuf {
    let manifest = files_under(datastore)
        .into_iter()
        .find(|f| f.ends_with(&format!("{point}/manifest.json")))
        .unwrap_or_else(|| panic!("no manifest of {point}"));
    datastore.join(manifest).parent().unwrap().to_path_buf()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_encrypted_point_exports_to_sql_from_the_datastore_and_key_file_alone() {
    let source = TempCluster::start(SOURCE_PASSWORD).expect("start source PostgreSQL");
    fixtures::create_database(&source, "shop")
        .await
        .expect("create database");
    source
        .connect("shop")
        .await
        .expect("connect")
        .batch_execute(SHOP_SQL)
        .await
        .expect("load fixture");
    let mut up = tokio::task::spawn_blocking(PgvaultUp::start)
        .await
        .unwrap()
        .expect("pgvault up");
    let cli = |up: &PgvaultUp, args: &[&str]| up.cli(args, None).expect("run pgvault");
    let keys = tempfile::tempdir().expect("tempdir");
    let datastore_dir = up.data_dir.join("datastore");
    let datastore = format!("file://{}", datastore_dir.display());

    up.create_demo_vault("weekly", "mon", source.port());
    let instance = up.protect_demo_database("weekly", SOURCE_PASSWORD, "shop");
    ok(
        cli(&up, &["backup", "now", &instance, "--wait"]),
        "backup now",
    );
    let first = newest_point(&up, &instance, &[]);
    let key_object = point_dir(&datastore_dir, &first).join("key.json");
    let stored = json(&std::fs::read_to_string(&key_object).expect("a key object"));
    assert_eq!(stored["vault_key_version"], 1, "{stored}");
    assert_eq!(stored["point_id"], first.as_str(), "{stored}");

    // The key file before rotation: version 1 only, private.
    let keys_v1 = keys.path().join("demo-v1.key");
    let v1 = keys_v1.to_string_lossy().to_string();
    ok(
        cli(&up, &["vault", "export-key", "demo", "--out", &v1]),
        "vault export-key",
    );
    let mode = std::fs::metadata(&keys_v1).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the key file is private");
    let exported = json(&std::fs::read_to_string(&keys_v1).unwrap());
    assert_eq!(exported["versions"].as_array().unwrap().len(), 1);
    let again = cli(&up, &["vault", "export-key", "demo", "--out", &v1]);
    refused(again, &["already exists"]);
    assert!(
        !up.process
            .log_text()
            .contains(exported["versions"][0]["key"].as_str().unwrap()),
        "the exported key is never logged"
    );

    // Rotation, a second point (under version 2), the key file again.
    ok(
        cli(&up, &["vault", "rotate-key", "demo"]),
        "vault rotate-key",
    );
    ok(
        cli(&up, &["backup", "now", &instance, "--wait"]),
        "second backup",
    );
    let second = newest_point(&up, &instance, &[&first]);
    let keys_all = keys.path().join("demo.key");
    let all = keys_all.to_string_lossy().to_string();
    ok(
        cli(&up, &["vault", "export-key", "demo", "--out", &all]),
        "re-export",
    );
    let versions: Vec<u64> = json(&std::fs::read_to_string(&keys_all).unwrap())["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, vec![1, 2], "every version, the old one included");

    // The vault is lost: coordinator and state database stopped.
    up.process.signal(libc::SIGINT);
    let status = up
        .process
        .wait(std::time::Duration::from_secs(60))
        .expect("up stops");
    assert!(status.success(), "{}", up.process.log_tail(20));
    assert!(
        !up.data_dir.join("postgres/postmaster.pid").exists(),
        "the state database is stopped"
    );

    let listed = json(&ok(
        offline(&[
            "recovery-point",
            "export",
            "--datastore",
            &datastore,
            "--list",
            "--key-file",
            &all,
            "--output",
            "json",
        ]),
        "recovery-point export --list",
    ));
    let points = listed.as_array().expect("a list");
    assert_eq!(points.len(), 2, "{listed}");
    for point in points {
        assert_eq!(point["encrypted"], true, "{point}");
        assert_eq!(
            point["database"], "shop",
            "opened with the key file: {point}"
        );
        assert!(point["stored_bytes"].as_u64().unwrap() > 0, "{point}");
    }

    // The older point, with the key file exported after the rotation.
    let sql = keys.path().join("shop.sql");
    let done = ok(export(&datastore, Some(&keys_all), &first, &sql), "export");
    assert!(done.contains("psql"), "{done}");
    fixtures::create_database(&source, "shop_offline")
        .await
        .expect("create empty database");
    fixtures::load_sql_file(&source, "shop_offline", &sql).expect("psql loads the export");
    assert_identical(&source, "shop", &source, "shop_offline")
        .await
        .unwrap();
    refused(
        export(&datastore, Some(&keys_all), &first, &sql),
        &["already exists"],
    );

    // The newer point needs version 2, which the first key file lacks.
    let other = keys.path().join("other.sql");
    refused(
        export(&datastore, Some(&keys_v1), &second, &other),
        &["EncryptionKeyUnavailable", "version 2", "export-key"],
    );
    // A key file of another installation's vault of the same name.
    let mut wrong = json(&std::fs::read_to_string(&keys_all).unwrap());
    for version in wrong["versions"].as_array_mut().unwrap() {
        version["key"] = Value::from(format!("{}QUE=", "QUFB".repeat(10)));
    }
    let wrong_file = keys.path().join("wrong.key");
    std::fs::write(&wrong_file, wrong.to_string()).unwrap();
    refused(
        export(&datastore, Some(&wrong_file), &second, &other),
        &["does not open", "key file"],
    );
    refused(
        export(&datastore, None, &second, &other),
        &["encrypted", "--key-file"],
    );
    assert!(!other.exists(), "no file is left by a refusal");

    // A tampered chunk: named, and no partial file left behind.
    let dir = point_dir(&datastore_dir, &second);
    let chunk = files_under(&dir)
        .into_iter()
        .filter(|f| f.starts_with("data/"))
        .max_by_key(|f| std::fs::metadata(dir.join(f)).unwrap().len())
        .expect("a chunk");
    let mut bytes = std::fs::read(dir.join(&chunk)).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(dir.join(&chunk), &bytes).unwrap();
    refused(
        export(&datastore, Some(&keys_all), &second, &other),
        &["ObjectAuthenticationFailed", &chunk],
    );
    assert!(!other.exists(), "no partial file");

    // A point from before key objects: said so, with what still works.
    std::fs::remove_file(dir.join("key.json")).unwrap();
    refused(
        export(&datastore, Some(&keys_all), &second, &other),
        &["no key.json", "restore files"],
    );
}
