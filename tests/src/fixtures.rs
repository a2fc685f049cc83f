//! Source databases worth backing up: pgbench's, and one with every awkward
//! thing a dump engine can get wrong (types, NULL vs '', escapes, identifiers),
//! on any server the test can reach ([`PgAccess`]).

use anyhow::{Context, bail};

use crate::pg_access::PgAccess;

pub async fn create_database(cluster: &impl PgAccess, name: &str) -> anyhow::Result<()> {
    let client = cluster.client("postgres").await?;
    client
        .batch_execute(&format!(
            "CREATE DATABASE \"{}\"",
            name.replace('"', "\"\"")
        ))
        .await?;
    Ok(())
}

/// `pgbench -i -s <scale>` into a new database `name`.
pub async fn pgbench(cluster: &impl PgAccess, name: &str, scale: u32) -> anyhow::Result<()> {
    create_database(cluster, name).await?;
    let output = cluster
        .client_command("pgbench")
        .args(["-i", "-q", "-s", &scale.to_string(), name])
        .output()
        .context("run pgbench")?;
    if !output.status.success() {
        bail!(
            "pgbench -i failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // A history row and an advanced sequence make the comparison stricter.
    let client = cluster.client(name).await?;
    client
        .batch_execute(
            "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 42, now())",
        )
        .await?;
    Ok(())
}

/// Mixed column types and identifiers that need quoting.
pub const MIXED_SQL: &str = r#"
CREATE SCHEMA "Sales Dept.";
CREATE SCHEMA ünïcode;
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE "Pair" AS (a int, "B" text);
CREATE DOMAIN positive AS numeric CHECK (VALUE > 0);
CREATE TABLE "Sales Dept."."Order ""Items"".v2" (
    id bigserial PRIMARY KEY,
    "Amount" numeric(20, 6),
    price positive,
    at timestamptz,
    span interval,
    blob bytea,
    tags text[],
    doc jsonb,
    raw json,
    uid uuid,
    addr inet,
    feeling mood,
    pair "Pair",
    note text,
    day date,
    flag boolean,
    ratio double precision,
    r int4range
);
CREATE TABLE ünïcode."Tâble ✓" (k text PRIMARY KEY, v text);
CREATE TABLE public.lines (id int PRIMARY KEY, body text, parent int REFERENCES public.lines(id));
CREATE INDEX lines_body ON public.lines (body);
CREATE VIEW public.long_lines AS SELECT id, body FROM public.lines WHERE length(body) > 3;
CREATE SEQUENCE public.counter;
SELECT setval('public.counter', 41, true);
CREATE SEQUENCE public.fresh;
CREATE TABLE public.events (id int, at date NOT NULL) PARTITION BY RANGE (at);
CREATE TABLE public.events_2025 PARTITION OF public.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE public.events_2026 PARTITION OF public.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO public.events SELECT g, date '2025-06-01' + g FROM generate_series(1, 400) g;
INSERT INTO "Sales Dept."."Order ""Items"".v2"
    ("Amount", price, at, span, blob, tags, doc, raw, uid, addr, feeling, pair, note, day, flag, ratio, r)
VALUES
    (12345678901234.123456, 1.5, '2024-02-29 23:59:59.999999+05:30', '1 year 2 mons 3 days 04:05:06.789',
     '\x00ff5c0a09', ARRAY['a', NULL, 'c"d', 'e,f', ''], '{"k": [1, 2.50, null, "x\ty"]}', '{"dup": 1, "dup": 2}',
     'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '192.168.0.1/24', 'happy', ROW(1, 'x y'), E'tab\there\nnewline \\ backslash',
     '0001-01-01', true, 'NaN', '[1,10)'),
    (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '', NULL, NULL, '-Infinity', 'empty'),
    (-0.000001, 99, 'infinity', '-1 days', '\x', '{}', '[]', '"s"', NULL, '::1', 'sad', ROW(NULL, NULL), 'ünïcødé ✓ 日本語 🚀',
     'infinity', false, 1e-300, NULL);
INSERT INTO ünïcode."Tâble ✓" SELECT 'k' || g, repeat('v', g % 50) FROM generate_series(1, 1000) g;
INSERT INTO public.lines VALUES (1, 'root', NULL);
INSERT INTO public.lines SELECT g, 'line ' || g || E'\\N', 1 FROM generate_series(2, 5000) g;
"#;

/// A database with [`MIXED_SQL`] loaded.
pub async fn mixed(cluster: &impl PgAccess, name: &str) -> anyhow::Result<()> {
    create_database(cluster, name).await?;
    let client = cluster.client(name).await?;
    client
        .batch_execute(MIXED_SQL)
        .await
        .context("load mixed fixture")?;
    Ok(())
}

/// Loads the SQL `file` into the new, empty database `name` with `psql`
/// (`ON_ERROR_STOP`), as a user would load a restored SQL file.
pub fn load_sql_file(
    cluster: &impl PgAccess,
    name: &str,
    file: &std::path::Path,
) -> anyhow::Result<()> {
    let output = cluster
        .client_command("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", name])
        .arg("-f")
        .arg(file)
        .output()
        .context("run psql")?;
    if !output.status.success() {
        bail!(
            "psql could not load {}: {}",
            file.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
