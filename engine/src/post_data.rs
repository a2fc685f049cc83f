//! The post-data section of a restore (indexes, constraints, triggers,
//! rules, policies and the comments and grants on them) as separate SQL
//! entries, each knowing the tables whose data it must wait for and the
//! entries it depends on. The restore runs an entry as soon as those are
//! done — overlapping index builds with other tables' loading, as
//! `pg_restore -j` does — instead of after all data.
//!
//! The SQL comes from one `pg_restore --section=post-data --verbose -f -`
//! run over the schema archive (with the selection's `-L` list), whose
//! verbose headers (`-- TOC entry <dump id> …`) split the script into
//! entries; dependencies and types come from the archive's TOC
//! ([`super::toc`]). Entries keep `pg_restore`'s passes: grants after
//! everything else, event triggers last.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;

use tokio::io::AsyncReadExt;
use tokio::process::Command;

use super::error::{EngineError, ErrorCode};
use super::manifest::Manifest;
use super::pgtools;
use super::toc::TocEntry;

/// When an entry runs relative to the others (`pg_restore`'s restore passes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Pass {
    /// As soon as its tables are loaded and its dependencies are done.
    Main,
    /// Grants: after every main-pass entry.
    Acl,
    /// Event triggers: last, so none fires during the restore.
    PostAcl,
}

/// What an entry waits for before it can run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Wait {
    /// The data of these tables (source OIDs, as in the manifest).
    Tables(Vec<u32>),
    /// It touches a table without data of its own (a partitioned or
    /// excluded parent): wait for every table's data.
    AllData,
}

/// One post-data entry.
#[derive(Debug, Clone)]
pub(crate) struct PostEntry {
    pub dump_id: i64,
    /// `"<Type> <Name>"` from the script, for error messages.
    pub label: String,
    pub sql: String,
    pub pass: Pass,
    pub wait: Wait,
    /// Dump ids of other post-data entries that must be done first.
    pub after: Vec<i64>,
}

/// The post-data section ready to run.
#[derive(Debug, Default)]
pub(crate) struct PostData {
    /// Session settings every connection running entries needs first.
    pub preamble: String,
    pub entries: Vec<PostEntry>,
}

/// Renders the post-data section of `schema_file` (restricted by
/// `list_args`) and splits it into entries.
pub(crate) async fn read(
    bin_dir: &Path,
    schema_file: &Path,
    list_args: &[OsString],
    toc: &[TocEntry],
    manifest: &Manifest,
) -> Result<PostData, EngineError> {
    let mut command = Command::new(bin_dir.join("pg_restore"));
    command
        .arg("--section=post-data")
        .arg("--verbose")
        .arg("--no-tablespaces")
        .args(list_args)
        .arg("--file=-")
        .arg(schema_file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = pgtools::spawn(command, "pg_restore")?;
    let stderr = pgtools::collect_stderr(&mut child);
    let mut script = Vec::new();
    if let Some(mut stdout) = child.stdout.take() {
        stdout.read_to_end(&mut script).await.map_err(|e| {
            EngineError::new(
                ErrorCode::PgToolFailed,
                format!("reading pg_restore's post-data script: {e}"),
            )
        })?;
    }
    pgtools::wait(child, stderr, "pg_restore", "the schema archive").await?;
    let script = String::from_utf8(script).map_err(|_| {
        EngineError::new(
            ErrorCode::ManifestInvalid,
            "the schema archive's post-data section is not valid UTF-8",
        )
    })?;
    Ok(plan(&script, toc, manifest))
}

/// A script entry before dependencies are attached.
#[derive(Debug, PartialEq, Eq)]
struct ScriptEntry {
    dump_id: i64,
    label: String,
    sql: String,
}

/// Splits a verbose plain-format `pg_restore` script into its preamble
/// (session settings) and entries. psql meta-commands (`\restrict`) are
/// dropped; `SET` lines written between entries go to the preamble.
fn split_script(script: &str) -> (String, Vec<ScriptEntry>) {
    let mut preamble: Vec<String> = Vec::new();
    let mut entries: Vec<ScriptEntry> = Vec::new();
    let mut body: Vec<&str> = Vec::new();
    let mut current: Option<(i64, String)> = None;
    let mut flush =
        |current: &mut Option<(i64, String)>, body: &mut Vec<&str>, preamble: &mut Vec<String>| {
            // Trailing SET lines belong to the session, not to the entry.
            let mut settings = Vec::new();
            while let Some(last) = body.last() {
                let line = last.trim();
                if line.is_empty() || line.starts_with("--") {
                    body.pop();
                } else if is_session_setting(line) {
                    settings.push(line.to_string());
                    body.pop();
                } else {
                    break;
                }
            }
            for line in settings.into_iter().rev() {
                if !preamble.contains(&line) {
                    preamble.push(line);
                }
            }
            match current.take() {
                Some((dump_id, label)) => entries.push(ScriptEntry {
                    dump_id,
                    label,
                    sql: body.join("\n").trim().to_string(),
                }),
                None => {
                    let settings = body
                        .iter()
                        .map(|l| l.trim())
                        .filter(|l| is_session_setting(l));
                    let mut before: Vec<String> = settings.map(str::to_string).collect();
                    before.retain(|l| !preamble.contains(l));
                    before.append(preamble);
                    *preamble = before;
                }
            }
            body.clear();
        };
    let mut lines = script.lines().peekable();
    while let Some(line) = lines.next() {
        if line.starts_with('\\') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("-- TOC entry ") {
            flush(&mut current, &mut body, &mut preamble);
            let dump_id = rest
                .split_whitespace()
                .next()
                .and_then(|id| id.parse::<i64>().ok())
                .unwrap_or(-1);
            let mut label = String::new();
            // Header comment lines up to the closing "--".
            while let Some(next) = lines.peek() {
                if !next.starts_with("--") {
                    break;
                }
                let next = lines.next().unwrap_or_default();
                if let Some(name) = next.strip_prefix("-- Name: ") {
                    label = describe_name(name);
                }
                if next == "--" {
                    break;
                }
            }
            current = Some((dump_id, label));
            continue;
        }
        body.push(line);
    }
    flush(&mut current, &mut body, &mut preamble);
    (preamble.join("\n"), entries)
}

fn is_session_setting(line: &str) -> bool {
    (line.starts_with("SET ") || line.starts_with("SELECT pg_catalog.set_config("))
        && line.ends_with(';')
}

/// `"orders orders_pkey; Type: CONSTRAINT; Schema: public; Owner: x"` →
/// `"CONSTRAINT public.orders orders_pkey"`.
fn describe_name(header: &str) -> String {
    let mut parts = header.split("; ");
    let name = parts.next().unwrap_or_default();
    let (mut kind, mut schema) = ("", "");
    for part in parts {
        if let Some(t) = part.strip_prefix("Type: ") {
            kind = t;
        } else if let Some(s) = part.strip_prefix("Schema: ") {
            schema = s;
        }
    }
    match (kind, schema) {
        ("", _) => name.to_string(),
        _ if name.starts_with(kind) => name.to_string(),
        (_, "" | "-") => format!("{kind} {name}"),
        _ => format!("{kind} {schema}.{name}"),
    }
}

/// Attaches waits, dependencies and passes to the script's entries.
fn plan(script: &str, toc: &[TocEntry], manifest: &Manifest) -> PostData {
    let (preamble, script_entries) = split_script(script);
    let by_id: HashMap<i64, &TocEntry> = toc.iter().map(|e| (e.dump_id, e)).collect();
    let with_data: HashSet<u32> = manifest.tables.iter().map(|t| t.oid).collect();
    let in_script: HashSet<i64> = script_entries.iter().map(|e| e.dump_id).collect();
    let mut entries: Vec<PostEntry> = script_entries
        .into_iter()
        .map(|e| {
            let toc_entry = by_id.get(&e.dump_id);
            let deps: &[i64] = toc_entry.map(|t| t.deps.as_slice()).unwrap_or(&[]);
            let mut tables = Vec::new();
            let mut all_data = toc_entry.is_none();
            for dep in deps {
                if let Some(d) = by_id.get(dep)
                    && d.desc == "TABLE"
                {
                    if with_data.contains(&d.oid) {
                        tables.push(d.oid);
                    } else {
                        all_data = true;
                    }
                }
            }
            let after = deps
                .iter()
                .copied()
                .filter(|d| in_script.contains(d) && *d != e.dump_id)
                .collect();
            let desc = toc_entry.map(|t| t.desc.as_str()).unwrap_or("");
            PostEntry {
                dump_id: e.dump_id,
                label: if e.label.is_empty() {
                    format!("entry {}", e.dump_id)
                } else {
                    e.label
                },
                sql: e.sql,
                pass: own_pass(desc),
                wait: if all_data {
                    Wait::AllData
                } else {
                    Wait::Tables(tables)
                },
                after,
            }
        })
        .collect();
    // Comments and security labels run in their object's pass.
    let passes: HashMap<i64, Pass> = entries.iter().map(|e| (e.dump_id, e.pass)).collect();
    for entry in &mut entries {
        let desc = by_id.get(&entry.dump_id).map(|t| t.desc.as_str());
        if matches!(desc, Some("COMMENT" | "SECURITY LABEL")) {
            entry.pass = entry
                .after
                .iter()
                .filter_map(|d| passes.get(d).copied())
                .max()
                .unwrap_or(Pass::Main);
        }
    }
    entries.retain(|e| !e.sql.is_empty());
    PostData { preamble, entries }
}

/// `_tocEntryRestorePass` in `pg_backup_archiver.c`.
fn own_pass(desc: &str) -> Pass {
    match desc {
        "ACL" | "ACL LANGUAGE" | "DEFAULT ACL" => Pass::Acl,
        "EVENT TRIGGER" | "MATERIALIZED VIEW DATA" => Pass::PostAcl,
        _ => Pass::Main,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = "--
-- PostgreSQL database dump
--

\\restrict abc

SET statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);
SET row_security = off;

SET default_tablespace = '';

--
-- TOC entry 10 (class 2606 OID 16413)
-- Dependencies: 3
-- Name: orders orders_pkey; Type: CONSTRAINT; Schema: public; Owner: postgres
-- Data Pos: 0
--

ALTER TABLE ONLY public.orders
    ADD CONSTRAINT orders_pkey PRIMARY KEY (id);


SET default_table_access_method = heap;

--
-- TOC entry 11 (class 1259 OID 16414)
-- Dependencies: 3 4
-- Name: orders_x; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX orders_x ON public.orders USING btree (customer_id);


--
-- TOC entry 12 (class 2620 OID 1)
-- Dependencies: 10 5
-- Name: orders fk; Type: FK CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.orders
    ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES public.parent(id);


--
-- TOC entry 13 (class 0 OID 0)
-- Dependencies: 14
-- Name: COMMENT EVENT TRIGGER e; Type: COMMENT; Schema: -; Owner: postgres
--

COMMENT ON EVENT TRIGGER e IS 'x';


--
-- TOC entry 14 (class 3466 OID 1)
-- Name: e; Type: EVENT TRIGGER; Schema: -; Owner: postgres
--

CREATE EVENT TRIGGER e ON ddl_command_end
   EXECUTE FUNCTION public.f();


-- Completed on 2026-11-24 01:46:20 UTC

--
-- PostgreSQL database dump complete
--

\\unrestrict abc
";

    fn toc(dump_id: i64, oid: u32, desc: &str, deps: &[i64]) -> TocEntry {
        TocEntry {
            dump_id,
            oid,
            desc: desc.into(),
            namespace: "public".into(),
            tag: format!("t{dump_id}"),
            deps: deps.to_vec(),
        }
    }

    fn manifest(table_oids: &[u32]) -> Manifest {
        let json = serde_json::json!({
            "format_version": 1, "tool": "pgvault", "tool_version": "0", "server_version": "15",
            "server_version_num": 150000, "snapshot_time": "2024-01-01T00:00:00Z", "database": "d",
            "encoding": "UTF8", "collate": "C", "ctype": "C",
            "schema": {"path": "schema.dump", "size": 0, "sha256": ""},
            "roles": [], "tables": table_oids.iter().map(|oid| serde_json::json!({
                "oid": oid, "schema": "public", "name": format!("t{oid}"), "columns": [], "chunks": []
            })).collect::<Vec<_>>(),
            "sequences": [], "materialized_views": [], "large_objects": null
        });
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn script_splits_into_entries_with_session_settings_hoisted() {
        let (preamble, entries) = split_script(SCRIPT);
        assert_eq!(
            preamble,
            "SET statement_timeout = 0;\n\
             SELECT pg_catalog.set_config('search_path', '', false);\n\
             SET row_security = off;\n\
             SET default_tablespace = '';\n\
             SET default_table_access_method = heap;"
        );
        let ids: Vec<i64> = entries.iter().map(|e| e.dump_id).collect();
        assert_eq!(ids, vec![10, 11, 12, 13, 14]);
        assert_eq!(
            entries[0].sql,
            "ALTER TABLE ONLY public.orders\n    ADD CONSTRAINT orders_pkey PRIMARY KEY (id);"
        );
        assert_eq!(entries[0].label, "CONSTRAINT public.orders orders_pkey");
        assert_eq!(entries[3].label, "COMMENT EVENT TRIGGER e");
        assert!(
            entries[4].sql.ends_with("EXECUTE FUNCTION public.f();"),
            "{}",
            entries[4].sql
        );
        assert!(entries.iter().all(|e| !e.sql.contains('\\')));
    }

    #[test]
    fn entries_wait_for_their_tables_data_and_keep_restore_passes() {
        // 3: orders (data), 4: a partitioned parent without data of its own,
        // 5: parent (data).
        let toc = vec![
            toc(3, 100, "TABLE", &[]),
            toc(4, 101, "TABLE", &[]),
            toc(5, 102, "TABLE", &[]),
            toc(10, 0, "CONSTRAINT", &[3]),
            toc(11, 0, "INDEX", &[3, 4]),
            toc(12, 0, "FK CONSTRAINT", &[10, 5]),
            toc(13, 0, "COMMENT", &[14]),
            toc(14, 0, "EVENT TRIGGER", &[]),
        ];
        let post = plan(SCRIPT, &toc, &manifest(&[100, 102]));
        let shape: Vec<(i64, Pass, Wait, Vec<i64>)> = post
            .entries
            .iter()
            .map(|e| (e.dump_id, e.pass, e.wait.clone(), e.after.clone()))
            .collect();
        assert_eq!(
            shape,
            vec![
                (10, Pass::Main, Wait::Tables(vec![100]), vec![]),
                (11, Pass::Main, Wait::AllData, vec![]),
                (12, Pass::Main, Wait::Tables(vec![102]), vec![10]),
                (13, Pass::PostAcl, Wait::Tables(vec![]), vec![14]),
                (14, Pass::PostAcl, Wait::Tables(vec![]), vec![]),
            ]
        );
    }
}
