//! Intra-table parallelism where ctid ranges are slow: before PostgreSQL 14
//! a `ctid` condition scans the whole table, so a big table with a single
//! integer primary key is cut into ranges of that key instead. The bounds
//! are read inside the backup's snapshot (by the snapshot holder), and each
//! range is one `COPY (SELECT … WHERE key >= a AND key < b)` on that same
//! snapshot, so the chunks together hold exactly the table's rows. Tables
//! without such a key are dumped as one stream.

use tokio_postgres::Client;

use super::catalog::TableInfo;
use super::error::EngineError;
use super::ident::{qualified, quote_ident};

/// An integer key's smallest and largest value in the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyBounds {
    pub column: String,
    pub min: i64,
    pub max: i64,
}

/// The key bounds of every table `wanted` says is to be split (same
/// order as `tables`; `None`: not split by key).
pub(crate) async fn bounds(
    client: &Client,
    describe: &str,
    tables: &[TableInfo],
    wanted: impl Fn(&TableInfo) -> bool,
) -> Result<Vec<Option<KeyBounds>>, EngineError> {
    let mut out = Vec::with_capacity(tables.len());
    for table in tables {
        let Some(column) = table.int_key.as_ref().filter(|_| wanted(table)) else {
            out.push(None);
            continue;
        };
        let sql = format!(
            "SELECT min({key})::int8, max({key})::int8 FROM ONLY {name}",
            key = quote_ident(column),
            name = qualified(&table.schema, &table.name)
        );
        let row = client
            .query_one(&sql, &[])
            .await
            .map_err(|e| EngineError::from_pg(&e, describe))?;
        let (min, max): (Option<i64>, Option<i64>) = (row.get(0), row.get(1));
        out.push(match (min, max) {
            (Some(min), Some(max)) => Some(KeyBounds {
                column: column.clone(),
                min,
                max,
            }),
            _ => None,
        });
    }
    Ok(out)
}

/// At most `count` ranges `[start, end)` covering every key (the first
/// and last open), of equal width.
pub(crate) fn cut(bounds: &KeyBounds, count: u64) -> Vec<(Option<i64>, Option<i64>)> {
    let span = i128::from(bounds.max) - i128::from(bounds.min) + 1;
    let count = i128::from(count.max(1)).min(span).max(1);
    let width = (span + count - 1) / count;
    let boundary = |i: i128| i64::try_from(i128::from(bounds.min) + i * width).ok();
    (0..count)
        .map(|i| {
            let start = if i > 0 { boundary(i) } else { None };
            let end = if i + 1 < count { boundary(i + 1) } else { None };
            (start, end)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(min: i64, max: i64) -> KeyBounds {
        KeyBounds {
            column: "id".into(),
            min,
            max,
        }
    }

    #[test]
    fn ranges_cover_every_key_once_with_open_ends() {
        assert_eq!(
            cut(&bounds(1, 400), 4),
            vec![
                (None, Some(101)),
                (Some(101), Some(201)),
                (Some(201), Some(301)),
                (Some(301), None)
            ]
        );
    }

    #[test]
    fn never_more_ranges_than_keys_and_extremes_do_not_overflow() {
        assert_eq!(
            cut(&bounds(5, 6), 10),
            vec![(None, Some(6)), (Some(6), None)]
        );
        assert_eq!(cut(&bounds(7, 7), 3), vec![(None, None)]);
        let wide = cut(&bounds(i64::MIN, i64::MAX), 2);
        assert_eq!(wide, vec![(None, Some(0)), (Some(0), None)]);
    }
}
