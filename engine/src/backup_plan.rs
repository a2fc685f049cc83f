//! What a backup's data connections do: each table becomes one or more
//! COPYs ([`PlannedChunk`]) and each COPY lands in an object
//! ([`PlannedObject`]). Large tables are cut into ctid page ranges
//! (PostgreSQL 14+) or, before, into ranges of an integer primary key
//! ([`super::key_ranges`]), one object each; small tables share **bundle** objects,
//! one zstd frame per table, so a database of thousands of tiny tables is a
//! few dozen objects, not thousands. Objects are scheduled largest first.

use super::catalog::TableInfo;
use super::ident::{qualified, quote_ident};
use super::key_ranges::{self, KeyBounds};
use super::manifest::KeyRange;
use super::types::EngineOptions;

/// Upper bound on chunks per table, whatever the threshold.
const MAX_CHUNKS_PER_TABLE: u64 = 4096;
/// TID range scans (fast ctid ranges) arrived in PostgreSQL 14.
const TID_RANGE_SCAN_VERSION: i32 = 140000;
/// Tables whose main fork is smaller than this go into bundles (the size
/// below which a restore does not `COPY FREEZE` either).
pub(crate) const BUNDLE_TABLE_BYTES: u64 = 1024 * 1024;
/// A bundle holds about this much table data at most…
const BUNDLE_BYTES: u64 = 8 * 1024 * 1024;
/// …and no more tables than this, so thousands of tables still make
/// enough bundles to keep every connection busy.
const BUNDLE_TABLES: usize = 256;

/// One planned COPY (serialised as a fan-out chunk's spec).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct PlannedChunk {
    /// Index into the backup's table list.
    pub table: usize,
    pub index: u32,
    pub start_page: Option<u64>,
    pub end_page: Option<u64>,
    /// The key range of a chunk cut by key (servers before 14).
    pub key_range: Option<KeyRange>,
    /// `COPY (SELECT …) TO STDOUT`.
    pub sql: String,
}

/// One object to write: a chunk of a table, or a bundle of small tables.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct PlannedObject {
    /// Object path relative to the recovery point.
    pub relative: String,
    /// Estimated raw size, for largest-first scheduling.
    pub estimated_bytes: u64,
    /// The COPYs, one zstd frame each, in order.
    pub chunks: Vec<PlannedChunk>,
    /// The chunks are segments of a shared object.
    pub bundle: bool,
}

/// Whether the server scans ctid ranges efficiently (PostgreSQL 14+);
/// before, big tables are split by integer key ([`key_ranges`]).
pub(crate) fn has_tid_range_scans(version_num: i32) -> bool {
    version_num >= TID_RANGE_SCAN_VERSION
}

/// How many chunks a table of bundle-exceeding size is worth cutting into
/// (1: not split), whatever the server version.
pub(crate) fn chunk_count(table: &TableInfo, options: &EngineOptions) -> u64 {
    let pages = table.bytes.div_ceil(table.block_size);
    let threshold = options.split_threshold_bytes.max(1);
    if table.bytes >= BUNDLE_TABLE_BYTES
        && table.bytes > threshold
        && pages > 1
        && table.extension_filter.is_none()
    {
        table
            .bytes
            .div_ceil(threshold)
            .min(MAX_CHUNKS_PER_TABLE)
            .min(pages)
    } else {
        1
    }
}

/// One range of a split table: its page or key bounds and its conditions.
struct Cut {
    start_page: Option<u64>,
    end_page: Option<u64>,
    key_range: Option<KeyRange>,
    conditions: Vec<String>,
}

/// A table's cuts: ctid page ranges on 14+, else ranges of its key
/// bounds (one stream where it has none).
fn cuts(table: &TableInfo, count: u64, version_num: i32, bounds: Option<&KeyBounds>) -> Vec<Cut> {
    let whole = || Cut {
        start_page: None,
        end_page: None,
        key_range: None,
        conditions: Vec::new(),
    };
    if count <= 1 {
        return vec![whole()];
    }
    if has_tid_range_scans(version_num) {
        let pages = table.bytes.div_ceil(table.block_size);
        let pages_per = pages.div_ceil(count).max(1);
        return (0..count)
            .map(|i| {
                let start_page = (i > 0).then_some(i * pages_per);
                let end_page = (i + 1 < count).then_some((i + 1) * pages_per);
                let mut conditions = Vec::new();
                if let Some(start) = start_page {
                    conditions.push(format!("ctid >= '({start},0)'::tid"));
                }
                if let Some(end) = end_page {
                    conditions.push(format!("ctid < '({end},0)'::tid"));
                }
                Cut {
                    start_page,
                    end_page,
                    key_range: None,
                    conditions,
                }
            })
            .collect();
    }
    let Some(bounds) = bounds else {
        return vec![whole()];
    };
    let key = quote_ident(&bounds.column);
    key_ranges::cut(bounds, count)
        .into_iter()
        .map(|(start, end)| {
            let mut conditions = Vec::new();
            if let Some(start) = start {
                conditions.push(format!("{key} >= {start}"));
            }
            if let Some(end) = end {
                conditions.push(format!("{key} < {end}"));
            }
            Cut {
                start_page: None,
                end_page: None,
                key_range: Some(KeyRange {
                    column: bounds.column.clone(),
                    start,
                    end,
                }),
                conditions,
            }
        })
        .collect()
}

/// Cuts tables into objects, largest first. `key_bounds` (by table index;
/// may be shorter than `tables`) splits tables on servers before 14.
pub(crate) fn plan(
    tables: &[TableInfo],
    options: &EngineOptions,
    version_num: i32,
    key_bounds: &[Option<KeyBounds>],
) -> Vec<PlannedObject> {
    let mut objects = Vec::new();
    let mut small: Vec<usize> = Vec::new();
    for (t, table) in tables.iter().enumerate() {
        if table.bytes < BUNDLE_TABLE_BYTES {
            small.push(t);
            continue;
        }
        let count = chunk_count(table, options);
        let bounds = key_bounds.get(t).and_then(Option::as_ref);
        let cuts = cuts(table, count, version_num, bounds);
        let estimated_bytes = table.bytes / cuts.len() as u64;
        for (i, cut) in cuts.into_iter().enumerate() {
            objects.push(PlannedObject {
                relative: format!("data/{}/{i:05}.copy.zst", table.oid),
                estimated_bytes,
                chunks: vec![PlannedChunk {
                    table: t,
                    index: i as u32,
                    start_page: cut.start_page,
                    end_page: cut.end_page,
                    key_range: cut.key_range,
                    sql: copy_sql(table, &cut.conditions),
                }],
                bundle: false,
            });
        }
    }
    let mut bundle: Vec<usize> = Vec::new();
    let mut bundle_bytes = 0;
    let mut flush = |bundle: &mut Vec<usize>, bytes: &mut u64| {
        if bundle.is_empty() {
            return;
        }
        objects.push(PlannedObject {
            relative: format!("data/bundles/{:05}.copy.zst", objects.len()),
            estimated_bytes: *bytes,
            chunks: bundle
                .drain(..)
                .map(|t| PlannedChunk {
                    table: t,
                    index: 0,
                    start_page: None,
                    end_page: None,
                    key_range: None,
                    sql: copy_sql(&tables[t], &[]),
                })
                .collect(),
            bundle: true,
        });
        *bytes = 0;
    };
    for t in small {
        bundle.push(t);
        // An empty table still costs a COPY round trip: count it as a page.
        bundle_bytes += tables[t].bytes.max(tables[t].block_size);
        if bundle.len() >= BUNDLE_TABLES || bundle_bytes >= BUNDLE_BYTES {
            flush(&mut bundle, &mut bundle_bytes);
        }
    }
    flush(&mut bundle, &mut bundle_bytes);
    objects.sort_by(|a, b| {
        b.estimated_bytes
            .cmp(&a.estimated_bytes)
            .then(a.chunks[0].table.cmp(&b.chunks[0].table))
            .then(a.chunks[0].index.cmp(&b.chunks[0].index))
    });
    objects
}

fn copy_sql(table: &TableInfo, conditions: &[String]) -> String {
    let columns = table
        .columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let name = qualified(&table.schema, &table.name);
    if let Some(filter) = &table.extension_filter {
        // The extension's own condition, as pg_dump applies it.
        return format!("COPY (SELECT {columns} FROM ONLY {name} {filter}) TO STDOUT");
    }
    if conditions.is_empty() {
        // A whole table: plain COPY (never includes inheritance children)
        // skips the executor's query layer.
        return if table.columns.is_empty() {
            format!("COPY {name} TO STDOUT")
        } else {
            format!("COPY {name} ({columns}) TO STDOUT")
        };
    }
    format!(
        "COPY (SELECT {columns} FROM ONLY {name} WHERE {}) TO STDOUT",
        conditions.join(" AND ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(oid: u32, bytes: u64) -> TableInfo {
        TableInfo {
            oid,
            schema: "s".into(),
            name: "T x".into(),
            columns: vec!["a".into(), "B".into()],
            bytes,
            block_size: 8192,
            extension_filter: None,
            int_key: Some("a".into()),
        }
    }

    #[test]
    fn splits_large_tables_into_page_ranges_largest_first() {
        let options = EngineOptions {
            split_threshold_bytes: 1024 * 1024,
            ..EngineOptions::default()
        };
        let big = 8192 * 128 * 3 + 8192 * 100;
        let objects = plan(&[table(6, 8192), table(7, big)], &options, 150000, &[]);
        assert_eq!(objects.len(), 5);
        assert!(
            objects[..4]
                .iter()
                .all(|o| !o.bundle && o.chunks[0].table == 1)
        );
        let last = objects.last().unwrap();
        assert!(last.bundle && last.chunks[0].table == 0);
        let chunks: Vec<_> = objects[..4].iter().map(|o| &o.chunks[0]).collect();
        assert_eq!(
            (chunks[0].start_page, chunks[0].end_page),
            (None, Some(121))
        );
        assert_eq!(
            (chunks[3].start_page, chunks[3].end_page),
            (Some(363), None)
        );
        assert_eq!(
            chunks[1].sql,
            r#"COPY (SELECT "a", "B" FROM ONLY "s"."T x" WHERE ctid >= '(121,0)'::tid AND ctid < '(242,0)'::tid) TO STDOUT"#
        );
        assert_eq!(objects[1].relative, "data/7/00001.copy.zst");
    }

    #[test]
    fn old_servers_split_by_integer_key_or_dump_whole_tables() {
        let options = EngineOptions {
            split_threshold_bytes: 1024 * 1024,
            ..EngineOptions::default()
        };
        let keyed = table(7, 2 * 1024 * 1024);
        let bounds = [Some(KeyBounds {
            column: "a".into(),
            min: 1,
            max: 1000,
        })];
        let objects = plan(std::slice::from_ref(&keyed), &options, 130000, &bounds);
        assert_eq!(objects.len(), 2);
        let chunks: Vec<_> = objects.iter().map(|o| &o.chunks[0]).collect();
        assert_eq!(
            chunks[0].sql,
            r#"COPY (SELECT "a", "B" FROM ONLY "s"."T x" WHERE "a" < 501) TO STDOUT"#
        );
        assert_eq!(
            chunks[1].sql,
            r#"COPY (SELECT "a", "B" FROM ONLY "s"."T x" WHERE "a" >= 501) TO STDOUT"#
        );
        let range = chunks[1].key_range.clone().unwrap();
        assert_eq!((range.start, range.end), (Some(501), None));
        assert_eq!(chunks[1].start_page, None);
        // Without key bounds (no integer primary key): one stream.
        let objects = plan(&[keyed], &options, 130000, &[None]);
        assert_eq!(objects.len(), 1);
        assert_eq!(
            objects[0].chunks[0].sql,
            r#"COPY "s"."T x" ("a", "B") TO STDOUT"#
        );
    }

    #[test]
    fn small_tables_share_bundles_of_bounded_count_and_size() {
        let options = EngineOptions::default();
        let mut tables: Vec<TableInfo> = (0..600).map(|i| table(100 + i, 8192)).collect();
        // Big enough to fill a bundle by bytes long before its count.
        tables.extend((0..20).map(|i| table(900 + i, 900 * 1024)));
        tables.push(table(999, 0));
        let objects = plan(&tables, &options, 150000, &[]);
        assert!(objects.iter().all(|o| o.bundle));
        let sizes: Vec<usize> = objects.iter().map(|o| o.chunks.len()).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 621, "every table once");
        assert!(sizes.iter().all(|n| *n <= BUNDLE_TABLES), "{sizes:?}");
        assert!(
            objects
                .iter()
                .all(|o| o.estimated_bytes <= BUNDLE_BYTES + 1024 * 1024)
        );
        assert!(
            objects
                .windows(2)
                .all(|w| w[0].estimated_bytes >= w[1].estimated_bytes),
            "largest first"
        );
        let paths: std::collections::HashSet<&str> =
            objects.iter().map(|o| o.relative.as_str()).collect();
        assert_eq!(paths.len(), objects.len());
        assert!(objects[0].relative.starts_with("data/bundles/"));
    }
}
