//! Jobs' specs: what each says about its operation, point, stage and route.

use super::*;

#[test]
fn the_spec_says_the_operation() {
    let instance_id = Uuid::new_v4();
    let on_demand = JobSpec::Backup {
        instance_id,
        trigger: BackupTrigger::OnDemand {
            rule: RuleKind::Monthly,
        },
        produced_point_id: None,
    };
    assert_eq!(on_demand.operation(), Operation::OnDemandBackup);
    assert_eq!(on_demand.point_id(), None);
    let point_id = Uuid::new_v4();
    let delete = JobSpec::Delete {
        instance_id,
        point_id,
        scope: DeleteScope::ArchiveExpiry,
    };
    assert_eq!(delete.operation(), Operation::Delete);
    assert_eq!(delete.point_id(), Some(point_id));
    assert_eq!(delete.lifecycle_stage().as_deref(), Some("ARCHIVE_EXPIRY"));
}

#[test]
fn delete_scopes_round_trip_through_their_stage() {
    for scope in [
        DeleteScope::StandardExpiry,
        DeleteScope::ArchiveExpiry,
        DeleteScope::RehydratedCopy {
            prefix: "v/i/p-rehydrated-1".into(),
        },
        DeleteScope::Copy {
            datastore_url: "az://copies/root?emulator=true".into(),
        },
    ] {
        assert_eq!(DeleteScope::from_stage(&scope.stage()), Some(scope));
    }
    assert_eq!(DeleteScope::from_stage(stage::REHYDRATE), None);
    assert_eq!(DeleteScope::from_stage(stage::REHYDRATED_EXPIRY), None);
    assert_eq!(DeleteScope::from_stage(stage::COPY_EXPIRY), None);
    assert_eq!(DeleteScope::from_stage("COPY/az://copies"), None);
}

#[test]
fn a_copy_carries_its_datastore_in_its_stage_and_runs_on_workers() {
    let copy = JobSpec::Copy {
        instance_id: Uuid::nil(),
        point_id: Uuid::nil(),
        datastore_url: "az://copies".into(),
    };
    assert_eq!(copy.operation(), Operation::Copy);
    assert_eq!(copy.point_id(), Some(Uuid::nil()));
    assert_eq!(copy.lifecycle_stage().as_deref(), Some("COPY/az://copies"));
    assert_eq!(copy.route(), Route::Workers);
}

#[test]
fn backups_and_restores_follow_their_server_and_lifecycle_jobs_stay_on_workers() {
    let instance_id = Uuid::new_v4();
    let backup = JobSpec::Backup {
        instance_id,
        trigger: BackupTrigger::Scheduled,
        produced_point_id: None,
    };
    assert_eq!(backup.route(), Route::InstanceServer(instance_id));
    let restore = |target| {
        JobSpec::Restore(Box::new(RestoreSpec {
            instance_id,
            point_id: Uuid::nil(),
            target,
            copy_datastore: None,
            schemas: Vec::new(),
            tables: Vec::new(),
            warnings: Vec::new(),
        }))
    };
    let as_database = restore(RestoreTarget::Database {
        server_id: "target".into(),
        database: "copy".into(),
        secret: SecretRef::Env("X".into()),
    });
    assert_eq!(as_database.route(), Route::Server("target".into()));
    let as_files = restore(RestoreTarget::Files {
        url: "file:///out".into(),
        file: "f.sql".into(),
        output: None,
    });
    assert_eq!(as_files.route(), Route::InstanceServer(instance_id));
    let point_id = Uuid::new_v4();
    for lifecycle in [
        JobSpec::TierMove {
            instance_id,
            point_id,
        },
        JobSpec::Rehydrate {
            instance_id,
            point_id,
            days: 10,
        },
        JobSpec::Delete {
            instance_id,
            point_id,
            scope: DeleteScope::StandardExpiry,
        },
    ] {
        assert_eq!(lifecycle.route(), Route::Workers, "{lifecycle:?}");
    }
}

#[test]
fn a_drill_reads_its_point_runs_on_its_server_and_names_its_scratch_database_after_the_job() {
    let instance_id = Uuid::new_v4();
    let point_id = Uuid::new_v4();
    let drill = JobSpec::Drill(Box::new(DrillSpec {
        instance_id,
        point_id,
        server_id: "drill-db".into(),
        secret: SecretRef::Stored {
            id: "drill".into(),
            version: None,
        },
    }));
    assert_eq!(drill.operation(), Operation::Drill);
    assert_eq!(drill.point_id(), Some(point_id));
    assert_eq!(drill.instance_id(), Some(instance_id));
    assert_eq!(drill.lifecycle_stage(), None);
    assert_eq!(drill.route(), Route::Server("drill-db".into()));
    let job = Uuid::parse_str("0197c1d2-aaaa-7bbb-8ccc-123456789abc").unwrap();
    assert_eq!(drill_database(job), "pgvault_drill_0197c1d2");
    assert!(drill_database(job).starts_with(DRILL_DATABASE_PREFIX));
}
