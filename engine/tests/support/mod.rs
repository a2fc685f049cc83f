//! Shared helpers of the engine tests: the mixed fixture, private clusters,
//! a `file://` datastore in a temporary directory, fingerprints (schema
//! text, table checksums, sequences, large objects) that prove two databases
//! identical, loading SQL files with psql, and corrupting stored objects.

#![allow(dead_code)]

use std::process::Command;
use std::sync::{Arc, Mutex};

use pgvault_datastore::Datastore;
use pgvault_engine::{EngineOptions, PgTarget, Progress, ProgressSink};
use pgvault_localpg::TempCluster;

/// Every type, awkward identifiers, partitions, inheritance, RLS, sequences,
/// views, materialized views (one indexed), triggers that refuse inserts (one
/// on a partitioned parent, with a partitioned index), large objects and a
/// commented event trigger.
pub const MIXED_FIXTURE: &str = r#"
CREATE ROLE app_owner NOLOGIN;
CREATE ROLE "Reader ""Role"" ü" NOLOGIN;
CREATE EXTENSION IF NOT EXISTS plpgsql;
CREATE SCHEMA app AUTHORIZATION app_owner;
CREATE SCHEMA "Odd.Schema ü";
CREATE TYPE app.mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE app.pair AS (a int, b text);
CREATE DOMAIN app.posint AS int CHECK (VALUE > 0);

CREATE TABLE app.everything (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    n numeric(30, 10), ts timestamptz, iv interval, b bytea, arr int[], tarr text[],
    j json, jb jsonb, u uuid, ip inet, m app.mood, p app.pair, d app.posint, t text,
    g int GENERATED ALWAYS AS (d * 2) STORED
);
INSERT INTO app.everything (n, ts, iv, b, arr, tarr, j, jb, u, ip, m, p, d, t) VALUES
  (12345678901234567890.0123456789, '2024-02-29 23:59:59.999999+05:30', '1 year 2 mons 3 days 04:05:06.789', '\x00ff5c0a09',
   '{1,NULL,3}', '{"a b","c,d","e\"f",NULL,""}', '{"k": [1, 2, {"x": null}]}', '{"z": 1, "a": "\u00e9"}',
   'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '192.168.1.0/24', 'happy', ROW(1, 'x y'), 5, E'tab\there\nnewline\\backslash ünïcødé 🐘'),
  (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (-0.5, 'infinity', '-1 day', '', '{}', '{}', 'null', '[]', NULL, '::1', 'sad', ROW(NULL, ''), 1, ''),
  ('NaN', '-infinity', '0', '\x5c4e', '{{1,2},{3,4}}', '{"\\N"}', '"s"', '"\\N"', NULL, '10.0.0.1', 'ok', ROW(2, NULL), 7, E'\\N');
COMMENT ON TABLE app.everything IS 'every type';
ALTER TABLE app.everything OWNER TO app_owner;
GRANT SELECT ON app.everything TO "Reader ""Role"" ü";
CREATE INDEX everything_t ON app.everything (t);

CREATE TABLE app.child (id serial PRIMARY KEY, everything_id bigint REFERENCES app.everything (id), note text);
INSERT INTO app.child (everything_id, note) VALUES (1, 'a'), (2, NULL), (3, 'c');

CREATE TABLE "Odd.Schema ü"."Mixed Case ""quoted"" tbl" ("Col A" text, "ü" int, "x.y" text);
INSERT INTO "Odd.Schema ü"."Mixed Case ""quoted"" tbl" VALUES ('A', 1, 'dot'), (NULL, NULL, NULL), ('', 0, '');

CREATE TABLE app.parent (id int, k text) PARTITION BY LIST (k);
CREATE TABLE app.parent_a PARTITION OF app.parent FOR VALUES IN ('a');
CREATE TABLE app.parent_b PARTITION OF app.parent FOR VALUES IN ('b');
INSERT INTO app.parent SELECT g, CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END FROM generate_series(1, 50) g;

CREATE TABLE app.base (id int, label text);
CREATE TABLE app.derived (extra text) INHERITS (app.base);
INSERT INTO app.base VALUES (1, 'base');
INSERT INTO app.derived VALUES (2, 'derived', 'more');

CREATE UNLOGGED TABLE app.scratch (v text);
INSERT INTO app.scratch VALUES ('unlogged row');

CREATE TABLE app.secret (owner_name text, v text);
ALTER TABLE app.secret ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON app.secret USING (owner_name = current_user);
INSERT INTO app.secret VALUES ('nobody', 'hidden by policy'), ('postgres', 'visible');

CREATE SEQUENCE app.called_seq;
SELECT nextval('app.called_seq'), nextval('app.called_seq'), nextval('app.called_seq');
CREATE SEQUENCE app.fresh_seq START 100;

CREATE VIEW app.v AS SELECT id, t FROM app.everything WHERE d > 1;
CREATE MATERIALIZED VIEW app.mv AS SELECT count(*) AS c FROM app.everything;
CREATE MATERIALIZED VIEW app.mv_empty AS SELECT 1 AS one WITH NO DATA;

CREATE FUNCTION app.refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'trigger fired'; END $$;
CREATE TRIGGER refuse_insert BEFORE INSERT ON app.child FOR EACH ROW EXECUTE FUNCTION app.refuse();
CREATE INDEX parent_k_id ON app.parent (k, id);
CREATE TRIGGER refuse_parent_insert BEFORE INSERT ON app.parent FOR EACH ROW EXECUTE FUNCTION app.refuse();
CREATE UNIQUE INDEX mv_c ON app.mv (c);

SELECT lo_from_bytea(424242, '\x00010203'::bytea || convert_to('large object ü', 'UTF8'));
ALTER LARGE OBJECT 424242 OWNER TO app_owner;
GRANT SELECT ON LARGE OBJECT 424242 TO "Reader ""Role"" ü";

CREATE FUNCTION app.note_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN RAISE NOTICE 'ddl'; END $$;
CREATE EVENT TRIGGER note_ddl ON ddl_command_end EXECUTE FUNCTION app.note_ddl();
COMMENT ON EVENT TRIGGER note_ddl IS 'restored last';
"#;

pub fn cluster() -> TempCluster {
    TempCluster::start("engine pw")
        .expect("start a private PostgreSQL (needs initdb/pg_ctl, e.g. apt install postgresql-15)")
}

pub fn target(cluster: &TempCluster, database: &str) -> PgTarget {
    PgTarget {
        host: cluster.host().to_string(),
        port: cluster.port(),
        database: database.to_string(),
        user: cluster.user().to_string(),
        password: cluster.password().to_string(),
        ssl_mode: String::new(),
        trust_server_certificate: false,
        ssl_root_cert: None,
    }
}

pub fn datastore(dir: &tempfile::TempDir) -> Datastore {
    Datastore::open(&format!("file://{}", dir.path().display())).expect("open file datastore")
}

pub fn options(cluster: &TempCluster) -> EngineOptions {
    EngineOptions {
        connections: 3,
        pg_bin_dir: Some(cluster.bin_dir().to_path_buf()),
        ..EngineOptions::default()
    }
}

/// Records every progress report.
#[derive(Default)]
pub struct Recorder(pub Mutex<Vec<Progress>>);

impl ProgressSink for Recorder {
    fn report(&self, progress: &Progress) {
        self.0.lock().unwrap().push(progress.clone());
    }
}

pub fn recorder() -> Arc<Recorder> {
    Arc::new(Recorder::default())
}

pub async fn create_database(cluster: &TempCluster, name: &str) {
    let client = cluster.connect("postgres").await.unwrap();
    client
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap();
}

/// `pg_dump --schema-only` as plain text, without comments and the
/// `\restrict` lines that carry a random key.
pub fn schema_text(cluster: &TempCluster, database: &str) -> String {
    let output = Command::new(cluster.bin_dir().join("pg_dump"))
        .env("PGPASSWORD", cluster.password())
        .args([
            "-h",
            cluster.host(),
            "-p",
            &cluster.port().to_string(),
            "-U",
            cluster.user(),
            "--schema-only",
        ])
        .arg(format!("--dbname=dbname='{database}'"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter(|l| {
            !l.starts_with("--") && !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Per-relation checksums of every table and materialized view, sequence
/// values and large objects: equal fingerprints mean equal data.
pub async fn data_fingerprint(cluster: &TempCluster, database: &str) -> Vec<String> {
    let client = cluster.connect(database).await.unwrap();
    let relations = client
        .query(
            "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relkind::text, c.relispopulated FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'm', 'S', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    for row in relations {
        let (name, kind, populated): (String, String, bool) = (row.get(0), row.get(1), row.get(2));
        if !populated {
            out.push(format!("{name} not populated"));
            continue;
        }
        let sql = if kind == "S" {
            format!("SELECT last_value::text || '/' || is_called::text FROM {name}")
        } else {
            format!(
                "SELECT count(*)::text || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '-') FROM ONLY {name} t"
            )
        };
        let value: String = client
            .query_one(&sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
            .get(0);
        out.push(format!("{name} {value}"));
    }
    for row in client
        .query(
            "SELECT oid::text || ' ' || md5(lo_get(oid)) FROM pg_largeobject_metadata ORDER BY oid",
            &[],
        )
        .await
        .unwrap()
    {
        out.push(format!("lo {}", row.get::<_, String>(0)));
    }
    out
}

pub async fn database_exists(cluster: &TempCluster, name: &str) -> bool {
    let client = cluster.connect("postgres").await.unwrap();
    client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .unwrap()
        .is_some()
}

/// Loads a SQL file with `psql -v ON_ERROR_STOP=1 -f` into `database`.
/// Writes the whole recovery point at `prefix` as a SQL script and loads it
/// with psql into the new database `database` on `cluster`.
pub async fn load_as_script(
    store: &Datastore,
    prefix: &str,
    manifest_sha256: &str,
    cluster: &TempCluster,
    database: &str,
) {
    let out = tempfile::tempdir().unwrap();
    pgvault_engine::restore_as_sql(
        store,
        prefix,
        Some(manifest_sha256),
        &datastore(&out),
        "script.sql",
        &pgvault_engine::Selection::default(),
        &options(cluster),
        recorder(),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .expect("restore as sql");
    create_database(cluster, database).await;
    psql_file(cluster, database, &out.path().join("script.sql"));
}

pub fn psql_file(cluster: &TempCluster, database: &str, file: &std::path::Path) {
    let output = Command::new(cluster.bin_dir().join("psql"))
        .env("PGPASSWORD", cluster.password())
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            cluster.host(),
            "-p",
            &cluster.port().to_string(),
            "-U",
            cluster.user(),
            "-f",
        ])
        .arg(file)
        .arg(format!("--dbname=dbname='{database}'"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Overwrites a few bytes in the middle of a stored object.
pub fn corrupt(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let (at, len) = (bytes.len() / 2, bytes.len());
    for b in &mut bytes[at..(at + 4).min(len)] {
        *b ^= 0x55;
    }
    std::fs::write(path, bytes).unwrap();
}

/// Every file below `dir`, relative, sorted.
pub fn files_below(dir: &std::path::Path) -> Vec<String> {
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
