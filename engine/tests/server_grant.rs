//! A backup and a restore granted 2 connections to their server (the
//! smallest share of a server's connection budget) against real
//! PostgreSQL: each server never sees more than 2 `pgvault` connections at
//! once (sampled from `pg_stat_activity`; pg_dump and pg_restore carry the
//! same application name), and the restore is identical.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pgvault_localpg::TempCluster;
use support::*;

/// Samples `cluster`'s pgvault connections until `stop`; returns the most
/// seen at once.
async fn sample(cluster: &TempCluster, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<i64> {
    let client = cluster.connect("postgres").await.expect("sampler connects");
    tokio::spawn(async move {
        let mut most = 0;
        while !stop.load(Ordering::Relaxed) {
            let row = client
                .query_one(
                    "SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE application_name = 'pgvault'",
                    &[],
                )
                .await
                .expect("sample pg_stat_activity");
            most = most.max(row.get::<_, i64>(0));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        most
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_and_a_restore_granted_two_connections_never_open_more() {
    let source = source("shop", MIXED_FIXTURE).await;
    let destination = cluster();
    let granted = |pg: &TempCluster| options(pg).within_server_grant(2);

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample(&source, stop.clone()).await;
    let point = back_up(&source, "shop", &granted(&source)).await;
    stop.store(true, Ordering::Relaxed);
    let most = sampler.await.expect("sampler");
    assert!((1..=2).contains(&most), "the source saw {most} connections");

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample(&destination, stop.clone()).await;
    point
        .restore(
            &destination,
            "shop restored",
            Some(&point.summary.manifest_sha256),
            &granted(&destination),
        )
        .await
        .expect("restore");
    stop.store(true, Ordering::Relaxed);
    let most = sampler.await.expect("sampler");
    assert!(
        (1..=2).contains(&most),
        "the destination saw {most} connections"
    );
    assert_identical(&source, "shop", &destination, "shop restored").await;
}
