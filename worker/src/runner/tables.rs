//! The progress of each table a running job has reported, kept one entry
//! per table, and which changes the coordinator has not acknowledged yet. A
//! heartbeat sends at most [`BATCH`] pending entries; they stop being
//! pending only when that heartbeat succeeded (a failed one is resent), and
//! an entry changed again meanwhile stays pending.

use std::collections::HashMap;

use pgvault_engine::{TableProgress, TableState};
use pgvault_proto::v1::{TableProgress as WireTable, TableState as WireState};

/// Most tables one heartbeat carries (the coordinator accepts more).
pub const BATCH: usize = 1000;

struct Entry {
    table: WireTable,
    /// Bumped on every change.
    version: u64,
    /// Latest version the coordinator acknowledged.
    acked: u64,
}

/// Tables by name with their acknowledgement state.
#[derive(Default)]
pub struct TableLog {
    entries: HashMap<String, Entry>,
}

/// What one call carried: (name, version) pairs to acknowledge on success.
#[derive(Debug, Default)]
pub struct Receipt(Vec<(String, u64)>);

impl TableLog {
    pub fn record(&mut self, table: &TableProgress) {
        let wire = to_wire(table);
        match self.entries.get_mut(&table.name) {
            Some(entry) => {
                entry.table = wire;
                entry.version += 1;
            }
            None => {
                self.entries.insert(
                    table.name.clone(),
                    Entry {
                        table: wire,
                        version: 1,
                        acked: 0,
                    },
                );
            }
        }
    }

    /// Up to `max` tables changed since their last acknowledgement.
    pub fn pending(&self, max: usize) -> (Vec<WireTable>, Receipt) {
        let mut tables = Vec::new();
        let mut receipt = Vec::new();
        for (name, entry) in &self.entries {
            if tables.len() >= max {
                break;
            }
            if entry.version > entry.acked {
                tables.push(entry.table.clone());
                receipt.push((name.clone(), entry.version));
            }
        }
        (tables, Receipt(receipt))
    }

    pub fn pending_count(&self) -> usize {
        self.entries
            .values()
            .filter(|e| e.version > e.acked)
            .count()
    }

    /// The coordinator stored what `receipt` lists.
    pub fn acknowledge(&mut self, receipt: Receipt) {
        for (name, version) in receipt.0 {
            if let Some(entry) = self.entries.get_mut(&name) {
                entry.acked = entry.acked.max(version);
            }
        }
    }
}

fn to_wire(t: &TableProgress) -> WireTable {
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| pgvault_proto::Timestamp {
            seconds: t.timestamp(),
            nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
        })
    };
    WireTable {
        name: t.name.clone(),
        state: match t.state {
            TableState::Queued => WireState::Queued,
            TableState::Running => WireState::Running,
            TableState::Done => WireState::Done,
            TableState::Failed => WireState::Failed,
        } as i32,
        chunks_done: t.chunks_done,
        chunks_total: t.chunks_total,
        rows: t.rows,
        raw_bytes: t.raw_bytes,
        stored_bytes: t.stored_bytes,
        start_time: time(t.start_time),
        end_time: time(t.end_time),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, rows: u64) -> TableProgress {
        TableProgress {
            name: name.into(),
            state: TableState::Running,
            chunks_done: 0,
            chunks_total: 1,
            rows,
            raw_bytes: 0,
            stored_bytes: 0,
            start_time: None,
            end_time: None,
        }
    }

    #[test]
    fn only_unacknowledged_changes_are_pending_and_a_failed_send_is_resent() {
        let mut log = TableLog::default();
        log.record(&table("a", 1));
        log.record(&table("b", 1));
        let (sent, receipt) = log.pending(BATCH);
        assert_eq!(sent.len(), 2);
        log.acknowledge(receipt);
        assert_eq!(log.pending_count(), 0);

        log.record(&table("a", 2));
        let (lost, _dropped_receipt) = log.pending(BATCH);
        assert_eq!(lost.len(), 1);
        // The heartbeat failed: nothing acknowledged, "a" is sent again.
        let (again, receipt) = log.pending(BATCH);
        assert_eq!(again[0].rows, 2);
        // "a" changed again while the heartbeat was in flight: still pending.
        log.record(&table("a", 3));
        log.acknowledge(receipt);
        let (latest, _) = log.pending(BATCH);
        assert_eq!(latest.iter().map(|t| t.rows).collect::<Vec<_>>(), vec![3]);
    }

    #[test]
    fn a_heartbeat_carries_at_most_one_batch() {
        let mut log = TableLog::default();
        for i in 0..(BATCH + 5) {
            log.record(&table(&format!("t{i}"), 0));
        }
        let (sent, receipt) = log.pending(BATCH);
        assert_eq!(sent.len(), BATCH);
        log.acknowledge(receipt);
        assert_eq!(log.pending_count(), 5);
        let (rest, _) = log.pending(BATCH);
        assert_eq!(rest[0].state, WireState::Running as i32);
    }
}
