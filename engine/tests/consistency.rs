//! Snapshot consistency under load: while a backup with several connections
//! and a tiny split threshold runs, other tasks keep moving money between
//! accounts in two tables, logging each transfer in a ledger and bumping a
//! counter, all in one transaction. The restored copy must hold exactly the
//! money there was, agree with its own ledger account by account, and have
//! as many ledger rows as its counter says: one moment in time.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use support::*;

const ACCOUNTS: i64 = 20_000;
const START_BALANCE: i64 = 1_000;
const TRANSFER_TASKS: usize = 3;

const SCHEMA: &str = "
CREATE TABLE accounts_a (id int PRIMARY KEY, balance bigint NOT NULL, pad text) WITH (fillfactor = 100);
CREATE TABLE accounts_b (id int PRIMARY KEY, balance bigint NOT NULL, pad text) WITH (fillfactor = 100);
CREATE TABLE ledger (id bigserial PRIMARY KEY, a_id int NOT NULL, b_id int NOT NULL, amount bigint NOT NULL);
CREATE TABLE counter (n bigint NOT NULL);
INSERT INTO counter VALUES (0);
";

/// Small xorshift: deterministic per task, no extra dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: i64) -> i64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as i64
    }
}

/// Moves money from accounts_a to accounts_b (or back) until `stop`;
/// returns the transfers committed.
async fn transfers(client: tokio_postgres::Client, seed: u64, stop: Arc<AtomicBool>) -> u64 {
    let mut rng = Rng(seed);
    let mut committed = 0;
    while !stop.load(Ordering::Relaxed) {
        let (a, b) = (1 + rng.below(ACCOUNTS), 1 + rng.below(ACCOUNTS));
        let amount = rng.below(200) - 100;
        let sql = format!(
            "BEGIN; \
             UPDATE accounts_a SET balance = balance - {amount} WHERE id = {a}; \
             UPDATE accounts_b SET balance = balance + {amount} WHERE id = {b}; \
             INSERT INTO ledger (a_id, b_id, amount) VALUES ({a}, {b}, {amount}); \
             UPDATE counter SET n = n + 1; \
             COMMIT"
        );
        match client.batch_execute(&sql).await {
            Ok(()) => committed += 1,
            Err(_) => {
                let _ = client.batch_execute("ROLLBACK").await;
            }
        }
    }
    committed
}

async fn counter(cluster: &pgvault_localpg::TempCluster, database: &str) -> i64 {
    cluster
        .connect(database)
        .await
        .unwrap()
        .query_one("SELECT n FROM counter", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_concurrent_transfers_is_one_moment_in_time() {
    let pg = source("bank", SCHEMA).await;
    let setup = pg.connect("bank").await.unwrap();
    setup
        .batch_execute(&format!(
            "INSERT INTO accounts_a SELECT g, {START_BALANCE}, repeat(md5(g::text), 6) FROM generate_series(1, {ACCOUNTS}) g; \
             INSERT INTO accounts_b SELECT g, {START_BALANCE}, repeat(md5(g::text), 6) FROM generate_series(1, {ACCOUNTS}) g;"
        ))
        .await
        .unwrap();
    setup.batch_execute("VACUUM ANALYZE").await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for seed in 0..TRANSFER_TASKS {
        let client = pg.connect("bank").await.unwrap();
        tasks.push(tokio::spawn(transfers(
            client,
            0x9E37_79B9_7F4A_7C15 ^ (seed as u64 + 1),
            stop.clone(),
        )));
    }
    // Let transfers get going so the backup starts in the middle of them.
    while counter(&pg, "bank").await < 200 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let mut opts = options(&pg);
    opts.connections = 4;
    opts.split_threshold_bytes = 8192 * 8;
    let before = counter(&pg, "bank").await;
    let point = try_back_up(&target(&pg, "bank"), "rp", &opts)
        .await
        .expect("backup under load");
    let after = counter(&pg, "bank").await;
    stop.store(true, Ordering::Relaxed);
    let mut committed = 0;
    for task in tasks {
        committed += task.await.unwrap();
    }
    assert!(
        after > before,
        "transfers must run during the backup ({before} → {after})"
    );
    assert!(committed > 0);

    let manifest = point.manifest();
    for name in ["accounts_a", "accounts_b"] {
        let table = manifest.tables.iter().find(|t| t.name == name).unwrap();
        assert!(
            table.chunks.len() >= 8,
            "{name} must be cut into many ctid ranges, got {}",
            table.chunks.len()
        );
    }

    point
        .restore(&pg, "bank copy", None, &opts)
        .await
        .expect("restore");
    let copy = pg.connect("bank copy").await.unwrap();
    let row = copy
        .query_one(
            "SELECT (SELECT sum(balance) FROM accounts_a)::int8 + (SELECT sum(balance) FROM accounts_b)::int8, \
                    (SELECT count(*) FROM accounts_a), (SELECT count(*) FROM accounts_b), \
                    (SELECT count(*) FROM ledger), (SELECT n FROM counter), \
                    (SELECT count(*) FROM accounts_a a LEFT JOIN (SELECT a_id, sum(amount) s FROM ledger GROUP BY a_id) l \
                       ON l.a_id = a.id WHERE a.balance <> $1::int8 - coalesce(l.s, 0)::int8), \
                    (SELECT count(*) FROM accounts_b b LEFT JOIN (SELECT b_id, sum(amount) s FROM ledger GROUP BY b_id) l \
                       ON l.b_id = b.id WHERE b.balance <> $1::int8 + coalesce(l.s, 0)::int8)",
            &[&START_BALANCE],
        )
        .await
        .unwrap();
    let (total, count_a, count_b, ledger, n, wrong_a, wrong_b): (
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
    ) = (
        row.get(0),
        row.get(1),
        row.get(2),
        row.get(3),
        row.get(4),
        row.get(5),
        row.get(6),
    );
    assert_eq!(total, 2 * ACCOUNTS * START_BALANCE, "money is conserved");
    assert_eq!((count_a, count_b), (ACCOUNTS, ACCOUNTS));
    assert_eq!(ledger, n, "ledger rows and counter come from one moment");
    assert!(
        (before..=after).contains(&n),
        "the snapshot lies within the backup ({before} ≤ {n} ≤ {after})"
    );
    assert_eq!(
        (wrong_a, wrong_b),
        (0, 0),
        "every balance agrees with the ledger"
    );
}
