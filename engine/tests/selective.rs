//! Selective restores of the mixed fixture: only the chosen tables' chunks
//! are read (a corrupted chunk of an unselected table does not matter), a
//! foreign key to an unselected table is skipped and reported, partitions
//! follow their parent, whole schemas restore as SQL files too, and unknown
//! names fail clearly.

use crate::support;

use pgvault_engine::{ErrorCode, Selection};
use support::*;

const ODD_TABLE: &str = r#""Odd.Schema ü"."Mixed Case ""quoted"" tbl""#;

/// Flips a byte in the middle of `range` of a stored object.
fn corrupt_stored(path: &std::path::Path, range: std::ops::Range<u64>) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[((range.start + range.end) / 2) as usize] ^= 0x55;
    std::fs::write(path, bytes).unwrap();
}

fn lines_for<'a>(fingerprint: &'a [String], relations: &[&str]) -> Vec<&'a String> {
    fingerprint
        .iter()
        .filter(|l| relations.iter().any(|r| l.starts_with(&format!("{r} "))))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selected_tables_restore_without_reading_other_chunks() {
    let pg = source("shop", MIXED_FIXTURE).await;
    let opts = options(&pg);
    let point = back_up(&pg, "shop", &opts).await;
    let manifest = point.manifest();
    // Corrupt every chunk of app.everything, which is not selected (its
    // bytes only: small tables share bundle objects with others).
    let everything = manifest
        .tables
        .iter()
        .find(|t| t.name == "everything")
        .unwrap();
    for chunk in &everything.chunks {
        corrupt_stored(&point.object_path(&chunk.object.path), chunk.stored_range());
    }

    let selection = Selection {
        schemas: vec![],
        tables: vec!["app.child".into(), "app.parent".into(), ODD_TABLE.into()],
    };
    let restored = point
        .restore_selected(
            &pg,
            "partial",
            Some(&point.summary.manifest_sha256),
            &selection,
            &opts,
        )
        .await
        .expect("selective restore ignores unselected chunks");
    assert_eq!(restored.tables, 4, "child, odd table and two partitions");
    assert_eq!(restored.rows, 3 + 3 + 50);
    assert!(
        restored
            .skipped_objects
            .iter()
            .any(|s| s.starts_with("FK CONSTRAINT app.child")),
        "{:?}",
        restored.skipped_objects
    );
    assert!(
        restored
            .skipped_objects
            .iter()
            .any(|s| s.contains("large objects")),
        "{:?}",
        restored.skipped_objects
    );

    let kept = [
        "app.child",
        "app.child_id_seq",
        "app.parent_a",
        "app.parent_b",
        r#""Odd.Schema ü"."Mixed Case ""quoted"" tbl""#,
    ];
    let source = data_fingerprint(&pg, "shop").await;
    let partial = data_fingerprint(&pg, "partial").await;
    assert_eq!(lines_for(&source, &kept), lines_for(&partial, &kept));
    assert_eq!(lines_for(&partial, &kept).len(), kept.len());
    assert!(
        lines_for(&partial, &["app.everything", "app.base", "app.mv"]).is_empty(),
        "{partial:?}"
    );
    let db = pg.connect("partial").await.unwrap();
    let err = db
        .batch_execute("INSERT INTO app.child (note) VALUES ('x')")
        .await
        .unwrap_err();
    assert!(
        err.as_db_error()
            .unwrap()
            .message()
            .contains("trigger fired"),
        "the trigger and its function come along: {err}"
    );
    let indexes: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'child_pkey'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(indexes, 1);

    // The full restore does read the corrupted chunks.
    let err = point
        .restore_selected(&pg, "full", None, &Selection::default(), &opts)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::ChecksumMismatch, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_restores_as_sql_and_unknown_names_fail() {
    let pg = source("shop", MIXED_FIXTURE).await;
    let opts = options(&pg);
    let point = back_up(&pg, "shop", &opts).await;

    let out_dir = tempfile::tempdir().unwrap();
    let selection = Selection {
        schemas: vec!["Odd.Schema ü".into()],
        tables: vec!["app.parent_a".into()],
    };
    let restored = point
        .restore_as_sql(None, &out_dir, "odd.sql", &selection, &opts)
        .await
        .expect("selective restore as sql");
    assert_eq!((restored.tables, restored.rows), (2, 3 + 25));
    create_database(&pg, "odd").await;
    psql_file(&pg, "odd", &out_dir.path().join("odd.sql"));
    let relations = [ODD_TABLE, "app.parent_a"];
    assert_eq!(
        lines_for(&data_fingerprint(&pg, "shop").await, &relations),
        lines_for(&data_fingerprint(&pg, "odd").await, &relations)
    );
    let partitions: i64 = pg
        .connect("odd")
        .await
        .unwrap()
        .query_one(
            "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE c.relkind = 'r'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(partitions, 1, "parent_a is attached to its parent");

    let bad = Selection {
        schemas: vec![],
        tables: vec!["app.nope".into()],
    };
    let err = point
        .restore_selected(&pg, "never", None, &bad, &opts)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::UserErrorSelectionInvalid, "{err}");
    assert!(err.message.contains("app.nope"), "{err}");
    assert!(!database_exists(&pg, "never").await);
}

/// The manifest records every relation a selection may name, and the rule
/// deciding whether a name exists is the one the coordinator applies before
/// queueing a job: what it accepts restores, what it refuses the engine
/// refuses with the same words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_foreign_tables_and_partitioned_parents_are_selectable_as_the_coordinator_says() {
    let pg = source(
        "shop",
        &format!(
            "{MIXED_FIXTURE}
             CREATE FOREIGN DATA WRAPPER dummy_fdw;
             CREATE SERVER elsewhere FOREIGN DATA WRAPPER dummy_fdw;
             CREATE FOREIGN TABLE app.remote (id int) SERVER elsewhere;
             CREATE SCHEMA only_views;
             CREATE VIEW only_views.counts AS SELECT count(*) AS n FROM app.child;"
        ),
    )
    .await;
    let opts = options(&pg);
    let point = back_up(&pg, "shop", &opts).await;
    let manifest = point.manifest();
    let wanted = [
        "app.v",
        "app.remote",
        "app.parent",
        "app.mv_empty",
        "only_views.counts",
    ];
    let selection = Selection {
        schemas: vec!["only_views".into()],
        tables: wanted.iter().map(|s| s.to_string()).collect(),
    };
    let named = selection.check(&manifest).expect("the coordinator accepts");
    assert_eq!(named.len(), wanted.len(), "{named:?}");

    let restored = point
        .restore_selected(
            &pg,
            "picked",
            Some(&point.summary.manifest_sha256),
            &selection,
            &opts,
        )
        .await
        .expect("what the check accepts restores");
    assert!(restored.tables >= 3, "{restored:?}");
    let db = pg.connect("picked").await.unwrap();
    for relation in wanted {
        let exists: bool = db
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&relation])
            .await
            .unwrap()
            .get(0);
        assert!(exists, "{relation} restored");
    }
    // The view's base table came along with all its rows.
    let n: i64 = db
        .query_one("SELECT n FROM only_views.counts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);

    let typo = Selection {
        schemas: vec![],
        tables: vec!["app.vv".into()],
    };
    let refused = typo.check(&manifest).expect_err("the coordinator refuses");
    let err = point
        .restore_selected(
            &pg,
            "typo",
            Some(&point.summary.manifest_sha256),
            &typo,
            &opts,
        )
        .await
        .expect_err("the engine refuses too");
    assert_eq!(err.code, ErrorCode::UserErrorSelectionInvalid);
    assert_eq!(err.message, refused.to_string());
}
