//! Selective restores: which schema objects and which tables' data a
//! [`Selection`] keeps, worked out from the schema archive's TOC
//! (dependencies included) so that `pg_restore -L` gets a list that loads.
//! Whether the names exist is decided by [`Selection::check`] — the same
//! rule the coordinator applies before queueing the job.
//!
//! Rules, in user terms:
//! - A selected table brings its partitions and inheritance children, and
//!   everything it needs to exist (schema, types, functions of defaults,
//!   the parent of a partition, a view's base tables). Every table restored
//!   is restored with all its rows.
//! - Objects hanging off restored tables (indexes, constraints, triggers,
//!   policies, comments, grants, owned sequences) come along when every
//!   table they touch is restored. Those that also touch a table left out —
//!   typically a foreign key to an unselected table — are skipped and named
//!   in [`RestoreSummary::skipped_objects`](super::RestoreSummary).
//! - Large objects belong to no schema: selective restores leave them out
//!   (and say so in the summary).

use std::collections::{HashMap, HashSet};

pub use pgvault_manifest::Selection;
use pgvault_manifest::{RelationEntry, SelectionError};

use super::error::{EngineError, ErrorCode};
use super::manifest::Manifest;
use super::toc::TocEntry;

/// The outcome of applying a selection to a recovery point.
#[derive(Debug, Clone)]
pub(crate) struct SelectionPlan {
    /// `pg_restore -L` list; `None` restores every entry.
    pub list: Option<String>,
    /// The manifest reduced to the restored tables, sequences, views and
    /// large objects.
    pub manifest: Manifest,
    /// Objects left out because they touch a table that is not restored.
    pub skipped: Vec<String>,
}

impl From<SelectionError> for EngineError {
    fn from(error: SelectionError) -> Self {
        EngineError::new(ErrorCode::UserErrorSelectionInvalid, error.to_string())
    }
}

const RELATIONS: [&str; 4] = ["TABLE", "VIEW", "MATERIALIZED VIEW", "FOREIGN TABLE"];
/// Entries every restore needs whatever is selected.
const ALWAYS: [&str; 4] = ["ENCODING", "STDSTRINGS", "SEARCHPATH", "EXTENSION"];
/// Pure decorations: kept when everything they describe is kept.
const DECORATIONS: [&str; 3] = ["COMMENT", "ACL", "SECURITY LABEL"];

fn is_relation(entry: &TocEntry) -> bool {
    RELATIONS.contains(&entry.desc.as_str())
}

/// Applies `selection` to the archive `toc` and the manifest.
pub(crate) fn plan(
    toc: &[TocEntry],
    manifest: &Manifest,
    selection: &Selection,
) -> Result<SelectionPlan, EngineError> {
    if selection.is_everything() {
        return Ok(SelectionPlan {
            list: None,
            manifest: manifest.clone(),
            skipped: Vec::new(),
        });
    }
    let named = selection.check(manifest)?;
    let graph = Graph::new(toc);
    let mut included: HashSet<usize> = HashSet::new();
    for (i, e) in toc.iter().enumerate() {
        if ALWAYS.contains(&e.desc.as_str()) {
            included.insert(i);
        }
    }
    seed_relations(toc, &graph, &named, &mut included)?;
    seed_schemas(toc, &graph, &selection.schemas, &mut included);

    // Grow to a fixpoint: dependencies of what is kept, then objects
    // attached to kept relations only, then decorations of kept objects.
    loop {
        let before = included.len();
        let mut stack: Vec<usize> = included.iter().copied().collect();
        while let Some(i) = stack.pop() {
            for &d in &graph.deps[i] {
                if included.insert(d) {
                    stack.push(d);
                }
            }
        }
        for (i, e) in toc.iter().enumerate() {
            if included.contains(&i) || is_relation(e) {
                continue;
            }
            let owners = &graph.owners[i];
            let attached = !owners.is_empty() && owners.iter().all(|o| included.contains(o));
            let decoration = owners.is_empty()
                && DECORATIONS.contains(&e.desc.as_str())
                && !graph.deps[i].is_empty()
                && graph.deps[i].iter().all(|d| included.contains(d));
            if attached || decoration {
                included.insert(i);
            }
        }
        if included.len() == before {
            break;
        }
    }

    let mut skipped: Vec<String> = toc
        .iter()
        .enumerate()
        .filter(|(i, e)| {
            !included.contains(i)
                && !is_relation(e)
                && graph.owners[*i].iter().any(|o| included.contains(o))
        })
        .map(|(_, e)| format!("{} {}.{}", e.desc, e.namespace, e.tag))
        .collect();
    let mut list = String::new();
    for (i, e) in toc.iter().enumerate() {
        if included.contains(&i) {
            list.push_str(&format!("{};\n", e.dump_id));
        }
    }

    let kept = |desc: &str, schema: &str, name: &str| {
        toc.iter().enumerate().any(|(i, e)| {
            included.contains(&i) && e.desc == desc && e.namespace == schema && e.tag == name
        })
    };
    let table_oids: HashSet<u32> = toc
        .iter()
        .enumerate()
        .filter(|(i, e)| included.contains(i) && e.desc == "TABLE")
        .map(|(_, e)| e.oid)
        .collect();
    let mut reduced = manifest.clone();
    reduced.tables.retain(|t| table_oids.contains(&t.oid));
    reduced
        .sequences
        .retain(|s| kept("SEQUENCE", &s.schema, &s.name));
    reduced
        .materialized_views
        .retain(|v| kept("MATERIALIZED VIEW", &v.schema, &v.name));
    if let Some(lo) = reduced.large_objects.take() {
        skipped.push(format!(
            "{} large objects (they belong to no schema)",
            lo.objects.len()
        ));
    }
    skipped.sort();
    Ok(SelectionPlan {
        list: Some(list),
        manifest: reduced,
        skipped,
    })
}

/// Dependency indexes, relations each entry hangs off, and table children.
struct Graph {
    deps: Vec<Vec<usize>>,
    /// Relations an entry depends on through non-relation entries; a
    /// relation owns itself.
    owners: Vec<HashSet<usize>>,
    /// Tables depending on a table: partitions and inheritance children.
    children: HashMap<usize, Vec<usize>>,
}

impl Graph {
    fn new(toc: &[TocEntry]) -> Graph {
        let by_id: HashMap<i64, usize> = toc
            .iter()
            .enumerate()
            .map(|(i, e)| (e.dump_id, i))
            .collect();
        let deps: Vec<Vec<usize>> = toc
            .iter()
            .map(|e| {
                e.deps
                    .iter()
                    .filter_map(|d| by_id.get(d).copied())
                    .collect()
            })
            .collect();
        let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, e) in toc.iter().enumerate() {
            if e.desc == "TABLE" {
                for &d in &deps[i] {
                    if toc[d].desc == "TABLE" {
                        children.entry(d).or_default().push(i);
                    }
                }
            }
        }
        let mut owners: Vec<Option<HashSet<usize>>> = vec![None; toc.len()];
        for i in 0..toc.len() {
            owners_of(i, toc, &deps, &mut owners, &mut HashSet::new());
        }
        Graph {
            deps,
            owners: owners.into_iter().map(|o| o.unwrap_or_default()).collect(),
            children,
        }
    }
}

fn owners_of(
    i: usize,
    toc: &[TocEntry],
    deps: &[Vec<usize>],
    memo: &mut Vec<Option<HashSet<usize>>>,
    visiting: &mut HashSet<usize>,
) -> HashSet<usize> {
    if let Some(done) = &memo[i] {
        return done.clone();
    }
    if is_relation(&toc[i]) {
        let own = HashSet::from([i]);
        memo[i] = Some(own.clone());
        return own;
    }
    if !visiting.insert(i) {
        return HashSet::new(); // a dependency loop: stop here
    }
    let mut set = HashSet::new();
    for &d in &deps[i] {
        set.extend(owners_of(d, toc, deps, memo, visiting));
    }
    visiting.remove(&i);
    memo[i] = Some(set.clone());
    set
}

/// Includes each named relation with its partitions and inheritance
/// children. A relation the manifest offers but the schema archive lacks
/// means the two disagree: the point cannot be restored selectively.
fn seed_relations(
    toc: &[TocEntry],
    graph: &Graph,
    named: &[RelationEntry],
    included: &mut HashSet<usize>,
) -> Result<(), EngineError> {
    for relation in named {
        let mut stack: Vec<usize> = toc
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                is_relation(e) && e.namespace == relation.schema && e.tag == relation.name
            })
            .map(|(i, _)| i)
            .collect();
        if stack.is_empty() {
            return Err(EngineError::new(
                ErrorCode::ManifestInvalid,
                format!(
                    "the manifest lists {} but the schema archive does not define it; restore the whole point or another recovery point",
                    pgvault_manifest::names::readable(&relation.schema, &relation.name)
                ),
            ));
        }
        while let Some(i) = stack.pop() {
            if included.insert(i) {
                stack.extend(graph.children.get(&i).into_iter().flatten().copied());
            }
        }
    }
    Ok(())
}

/// Includes every schema's own entry and what lives in it (objects hanging
/// off relations follow their relations).
fn seed_schemas(
    toc: &[TocEntry],
    graph: &Graph,
    schemas: &[String],
    included: &mut HashSet<usize>,
) {
    for schema in schemas {
        for (i, e) in toc.iter().enumerate() {
            let own_schema = e.desc == "SCHEMA" && e.tag == *schema;
            let inside = e.namespace == *schema && (is_relation(e) || graph.owners[i].is_empty());
            if own_schema || inside {
                included.insert(i);
            }
        }
    }
}

#[cfg(test)]
#[path = "selection_tests.rs"]
mod tests;
