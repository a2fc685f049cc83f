//! The coordinator's one source of "now" for schedules and retention. The
//! scheduler, tagging and the retention sweeper read time only through
//! [`Clock`], so tests move time forward instead of sleeping:
//! - [`SystemClock`]: the machine's clock (the default of
//!   `CoordinatorConfig::clock`);
//! - [`ManualClock`]: an in-process test clock set and advanced by the test;
//! - [`ShiftedClock`]: the system clock plus an offset the test sets, shared
//!   by in-process coordinators;
//! - `OffsetFileClock` (only with the `test-clock` cargo feature): the system
//!   clock plus a number of seconds read from a file on every call, so
//!   out-of-process end-to-end tests can move a running coordinator's clock
//!   by writing a number to a file (`coordinator.clock_offset_file` of a
//!   `pgvault` built with `--features test-clock`). Production builds have
//!   neither the type nor the setting.
//!
//! Leases are not on this clock: they are measured on the state database's
//! clock (`now()`), see `store::jobs`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Duration, Utc};

/// Where the coordinator reads the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// The machine's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock {
            now: Mutex::new(start),
        }
    }

    pub fn set(&self, time: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) = time;
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The system clock shifted by whole seconds the test sets: time flows, and
/// jumps when told to.
#[derive(Debug, Default)]
pub struct ShiftedClock {
    offset_seconds: AtomicI64,
}

impl ShiftedClock {
    pub fn new() -> Self {
        ShiftedClock::default()
    }

    /// From now on, `seconds` ahead of (or, negative, behind) the system clock.
    pub fn set_offset(&self, seconds: i64) {
        self.offset_seconds.store(seconds, Ordering::SeqCst);
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> DateTime<Utc> {
        shifted(self.offset_seconds.load(Ordering::SeqCst))
    }
}

/// The system clock plus `seconds` (unshifted when that overflows).
fn shifted(seconds: i64) -> DateTime<Utc> {
    let offset = Duration::try_seconds(seconds).unwrap_or_else(Duration::zero);
    Utc::now()
        .checked_add_signed(offset)
        .unwrap_or_else(Utc::now)
}

#[cfg(feature = "test-clock")]
pub use offset_file::OffsetFileClock;

#[cfg(feature = "test-clock")]
mod offset_file {
    use std::path::PathBuf;

    use chrono::{DateTime, Utc};

    use super::{Clock, shifted};

    /// The system clock shifted by the whole seconds written in a file. A
    /// missing or unreadable file means no shift.
    #[derive(Debug, Clone)]
    pub struct OffsetFileClock {
        path: PathBuf,
    }

    impl OffsetFileClock {
        pub fn new(path: PathBuf) -> Self {
            OffsetFileClock { path }
        }

        /// The current shift in seconds (0 when the file is absent or not a number).
        pub fn offset_seconds(&self) -> i64 {
            std::fs::read_to_string(&self.path)
                .ok()
                .and_then(|text| text.trim().parse::<i64>().ok())
                .unwrap_or(0)
        }
    }

    impl Clock for OffsetFileClock {
        fn now(&self) -> DateTime<Utc> {
            shifted(self.offset_seconds())
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let start = Utc.with_ymd_and_hms(2025, 3, 30, 0, 0, 0).unwrap();
        let clock = ManualClock::new(start);
        assert_eq!(clock.now(), start);
        clock.advance(Duration::hours(2));
        assert_eq!(clock.now(), start + Duration::hours(2));
    }

    #[test]
    fn shifted_clock_flows_with_the_system_clock_plus_its_offset() {
        let clock = ShiftedClock::new();
        assert!((clock.now() - Utc::now()).num_seconds().abs() < 5);
        clock.set_offset(-3600);
        let behind = Utc::now() - clock.now();
        assert!(
            (behind - Duration::hours(1)).num_seconds().abs() < 5,
            "{behind}"
        );
    }

    #[cfg(feature = "test-clock")]
    #[test]
    fn offset_file_shifts_the_system_clock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("offset");
        let clock = OffsetFileClock::new(path.clone());
        assert_eq!(clock.offset_seconds(), 0);
        std::fs::write(&path, "86400\n").unwrap();
        let shifted = clock.now() - Utc::now();
        assert!(
            (shifted - Duration::days(1)).num_seconds().abs() < 5,
            "{shifted}"
        );
        std::fs::write(&path, "not a number").unwrap();
        assert_eq!(clock.offset_seconds(), 0);
    }
}
