//! The scheduler's batches against a real state database: when more
//! instances are due in one slot than fit in one batch, two schedulers
//! ticking at the same time still give every instance exactly one schedule
//! run, one job and one outbox row, and a later tick adds nothing.
//! Time is passed to the scheduler; nothing sleeps for a schedule.

use crate::common;

use std::time::Duration;

use chrono::Utc;
use common::Harness;
use pgvault_coordinator::scheduler;
use pgvault_coordinator::store::Store;
use sqlx::PgPool;
use tokio::sync::Notify;

/// More than two of the scheduler's batches.
const INSTANCES: i64 = 2_500;

#[tokio::test]
async fn instances_due_in_one_slot_beyond_one_batch_are_queued_exactly_once_by_concurrent_schedulers()
 {
    let mut h = Harness::start().await;
    h.fixture().await;
    let pool = PgPool::connect(&h.cluster.url("postgres"))
        .await
        .expect("pool");
    // What ConfigureBackup leaves for rows that passed their checks, on the
    // fixture's weekly policy, scheduled from now.
    sqlx::query(
        "INSERT INTO backup_instances (id, vault_id, server_id, database, short_name, policy_id,
                                       secret_id, protection_state, schedule_since)
         SELECT gen_random_uuid(), 'v', 'pg1', 'db_' || g, 'pg1-db-' || g, 'daily', 'pg1-admin',
                'PROTECTION_CONFIGURED', now()
           FROM generate_series(1, $1::bigint) g",
    )
    .bind(INSTANCES)
    .execute(&pool)
    .await
    .expect("seed instances");
    // Only the schedulers below act on the state database from here on.
    if let Some(handle) = h.handle.take() {
        handle.shutdown().await.expect("stop coordinator");
    }

    // Eight days on, the weekly slot of the last seven days is due.
    let now = Utc::now() + chrono::Duration::days(8);
    let lateness = Duration::from_secs(8 * 86_400);
    let first = Store::new(pool.clone());
    let second = Store::new(
        PgPool::connect(&h.cluster.url("postgres"))
            .await
            .expect("pool"),
    );
    let wake = Notify::new();
    let (a, b) = tokio::join!(
        scheduler::tick(&first, now, lateness, &wake),
        scheduler::tick(&second, now, lateness, &wake)
    );
    let queued = a.expect("first scheduler") + b.expect("second scheduler");
    assert_eq!(queued, INSTANCES as usize);
    let again = scheduler::tick(&first, now, lateness, &wake)
        .await
        .expect("later tick");
    assert_eq!(again, 0);

    let (jobs, instances): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT backup_instance_id) FROM jobs
          WHERE operation = 'SCHEDULED_BACKUP' AND state = 'QUEUED' AND attempt = 1 AND vault_id = 'v'",
    )
    .fetch_one(&pool)
    .await
    .expect("count jobs");
    assert_eq!((jobs, instances), (INSTANCES, INSTANCES));
    let (runs, linked): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(j.id) FROM schedule_runs r
           LEFT JOIN jobs j ON j.id = r.job_id AND j.backup_instance_id = r.backup_instance_id
          WHERE r.status = 'QUEUED'",
    )
    .fetch_one(&pool)
    .await
    .expect("count runs");
    assert_eq!((runs, linked), (INSTANCES, INSTANCES));
    let (tasks, distinct): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT o.job_id) FROM outbox o JOIN jobs j ON j.id = o.job_id
          WHERE o.attempt = 1",
    )
    .fetch_one(&pool)
    .await
    .expect("count outbox");
    assert_eq!((tasks, distinct), (INSTANCES, INSTANCES));
    h.stop().await;
}
