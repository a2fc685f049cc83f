//! Tests of the selection rules on a TOC shaped like the round-trip fixture's.

use pgvault_manifest::RelationKind;

use super::*;
use crate::manifest::{ChunkEntry, ObjectEntry, SequenceEntry, TableEntry};

fn entry(id: i64, oid: u32, desc: &str, ns: &str, tag: &str, deps: &[i64]) -> TocEntry {
    TocEntry {
        dump_id: id,
        oid,
        desc: desc.into(),
        namespace: ns.into(),
        tag: tag.into(),
        deps: deps.to_vec(),
    }
}

/// The shape pg_dump gives the round-trip fixture (trimmed).
fn toc() -> Vec<TocEntry> {
    vec![
        entry(1, 0, "ENCODING", "", "ENCODING", &[]),
        entry(6, 16387, "SCHEMA", "", "app", &[]),
        entry(7, 16388, "SCHEMA", "", "other", &[]),
        entry(857, 16390, "TYPE", "app", "mood", &[6]),
        entry(234, 16480, "FUNCTION", "app", "refuse()", &[6]),
        entry(220, 16414, "TABLE", "app", "child", &[6]),
        entry(219, 16413, "SEQUENCE", "app", "child_id_seq", &[6, 220]),
        entry(3426, 0, "SEQUENCE OWNED BY", "app", "child_id_seq", &[219]),
        entry(218, 16404, "TABLE", "app", "everything", &[857, 6]),
        entry(3427, 0, "COMMENT", "app", "TABLE everything", &[218]),
        entry(232, 16472, "MATERIALIZED VIEW", "app", "mv", &[218, 6]),
        entry(222, 16432, "TABLE", "app", "parent", &[6]),
        entry(223, 16435, "TABLE", "app", "parent_a", &[222, 6]),
        entry(224, 16440, "TABLE", "app", "parent_b", &[6, 222]),
        entry(240, 16500, "TABLE", "other", "t", &[7]),
        entry(3262, 0, "TABLE ATTACH", "app", "parent_a", &[223, 222]),
        entry(3263, 0, "TABLE ATTACH", "app", "parent_b", &[224, 222]),
        entry(3265, 16417, "DEFAULT", "app", "child id", &[219, 220]),
        entry(3270, 16421, "CONSTRAINT", "app", "child child_pkey", &[220]),
        entry(
            3267,
            16411,
            "CONSTRAINT",
            "app",
            "everything everything_pkey",
            &[218],
        ),
        entry(
            3272,
            16481,
            "TRIGGER",
            "app",
            "child refuse_insert",
            &[220, 234],
        ),
        entry(
            3271,
            16422,
            "FK CONSTRAINT",
            "app",
            "child child_fkey",
            &[220, 218, 3267],
        ),
    ]
}

fn manifest() -> Manifest {
    let table = |oid: u32, schema: &str, name: &str| TableEntry {
        extension_config: false,
        oid,
        schema: schema.into(),
        name: name.into(),
        columns: vec![],
        chunks: vec![ChunkEntry {
            index: 0,
            start_page: None,
            end_page: None,
            key_range: None,
            rows: 1,
            raw_bytes: 1,
            object: ObjectEntry {
                path: format!("data/{oid}/00000.copy.zst"),
                size: 1,
                sha256: String::new(),
            },
            segment: None,
            row_digest: None,
        }],
    };
    let json = serde_json::json!({
        "format_version": 1, "tool": "pgvault", "tool_version": "0", "server_version": "15",
        "server_version_num": 150000, "snapshot_time": "2024-01-01T00:00:00Z", "database": "d",
        "encoding": "UTF8", "collate": "C", "ctype": "C",
        "schema": {"path": "schema.dump", "size": 0, "sha256": ""},
        "roles": [], "tables": [], "sequences": [], "materialized_views": [], "large_objects": null
    });
    let mut m: Manifest = serde_json::from_value(json).unwrap();
    m.tables = vec![
        table(16414, "app", "child"),
        table(16404, "app", "everything"),
        table(16435, "app", "parent_a"),
        table(16440, "app", "parent_b"),
        table(16500, "other", "t"),
    ];
    m.sequences = vec![SequenceEntry {
        schema: "app".into(),
        name: "child_id_seq".into(),
        last_value: 3,
        is_called: true,
    }];
    // What a backup records: every relation of the TOC and every schema.
    let relation = |schema: &str, name: &str, kind| RelationEntry {
        schema: schema.into(),
        name: name.into(),
        kind,
    };
    m.relations = Some(vec![
        relation("app", "child", RelationKind::Table),
        relation("app", "everything", RelationKind::Table),
        relation("app", "mv", RelationKind::MaterializedView),
        relation("app", "parent", RelationKind::PartitionedTable),
        relation("app", "parent_a", RelationKind::Table),
        relation("app", "parent_b", RelationKind::Table),
        relation("other", "t", RelationKind::Table),
    ]);
    m.schemas = Some(vec!["app".into(), "other".into()]);
    m
}

fn ids(plan: &SelectionPlan) -> Vec<i64> {
    let list = plan.list.as_deref().unwrap();
    list.lines()
        .map(|l| l.trim_end_matches(';').parse().unwrap())
        .collect()
}

fn tables(plan: &SelectionPlan) -> Vec<&str> {
    plan.manifest
        .tables
        .iter()
        .map(|t| t.name.as_str())
        .collect()
}

#[test]
fn a_table_brings_its_needs_and_skips_foreign_keys_to_others() {
    let selection = Selection {
        schemas: vec![],
        tables: vec!["app.child".into()],
    };
    let plan = plan(&toc(), &manifest(), &selection).unwrap();
    assert_eq!(
        ids(&plan),
        vec![1, 6, 234, 220, 219, 3426, 3265, 3270, 3272]
    );
    assert_eq!(tables(&plan), vec!["child"]);
    assert_eq!(plan.manifest.sequences.len(), 1);
    assert_eq!(plan.skipped, vec!["FK CONSTRAINT app.child child_fkey"]);
}

#[test]
fn parents_bring_partitions_and_partitions_bring_parents() {
    let parent = Selection {
        schemas: vec![],
        tables: vec!["\"app\".\"parent\"".into()],
    };
    let plan = plan(&toc(), &manifest(), &parent).unwrap();
    assert_eq!(tables(&plan), vec!["parent_a", "parent_b"]);
    assert!(ids(&plan).contains(&3262) && ids(&plan).contains(&3263));

    let one = Selection {
        schemas: vec![],
        tables: vec!["app.parent_a".into()],
    };
    let plan = super::plan(&toc(), &manifest(), &one).unwrap();
    assert_eq!(tables(&plan), vec!["parent_a"]);
    assert_eq!(ids(&plan), vec![1, 6, 222, 223, 3262]);
}

#[test]
fn schemas_and_views_select_whole_sets_and_unknown_names_fail() {
    let schema = Selection {
        schemas: vec!["app".into()],
        tables: vec![],
    };
    let plan = plan(&toc(), &manifest(), &schema).unwrap();
    assert_eq!(
        tables(&plan),
        vec!["child", "everything", "parent_a", "parent_b"]
    );
    assert!(plan.skipped.is_empty(), "{:?}", plan.skipped);
    assert!(!ids(&plan).contains(&240) && !ids(&plan).contains(&7));

    let view = Selection {
        schemas: vec![],
        tables: vec!["app.mv".into()],
    };
    let plan = super::plan(&toc(), &manifest(), &view).unwrap();
    assert_eq!(tables(&plan), vec!["everything"]);
    assert!(ids(&plan).contains(&3427) && ids(&plan).contains(&3267));

    let bad = Selection {
        schemas: vec!["nope".into()],
        tables: vec!["app.missing".into()],
    };
    let err = super::plan(&toc(), &manifest(), &bad).unwrap_err();
    assert_eq!(err.code, ErrorCode::UserErrorSelectionInvalid);
    assert!(err.message.contains("app.missing"), "{err}");

    let all = super::plan(&toc(), &manifest(), &Selection::default()).unwrap();
    assert!(all.list.is_none() && all.manifest == manifest());
}

#[test]
fn points_without_recorded_relations_offer_only_what_holds_data() {
    let mut old = manifest();
    old.relations = None;
    old.schemas = None;
    let parent = Selection {
        schemas: vec![],
        tables: vec!["app.parent".into()],
    };
    let err = plan(&toc(), &old, &parent).unwrap_err();
    assert_eq!(err.code, ErrorCode::UserErrorSelectionInvalid);
    let partition = Selection {
        schemas: vec![],
        tables: vec!["app.parent_a".into()],
    };
    assert_eq!(
        tables(&plan(&toc(), &old, &partition).unwrap()),
        vec!["parent_a"]
    );
}

#[test]
fn a_relation_the_archive_lacks_is_a_broken_point_not_a_typo() {
    let mut broken = manifest();
    broken.relations.as_mut().unwrap().push(RelationEntry {
        schema: "app".into(),
        name: "ghost".into(),
        kind: RelationKind::View,
    });
    let ghost = Selection {
        schemas: vec![],
        tables: vec!["app.ghost".into()],
    };
    let err = plan(&toc(), &broken, &ghost).unwrap_err();
    assert_eq!(err.code, ErrorCode::ManifestInvalid);
    assert!(err.message.contains("app.ghost"), "{err}");
}
