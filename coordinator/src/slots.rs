//! Schedule slots: the instants a weekly schedule fires, computed in the
//! policy's IANA time zone. One slot per scheduled local date, whatever
//! daylight-saving time does to that date:
//! - a time that does not exist (spring-forward gap) fires at the first
//!   minute after the gap (02:30 on the day Berlin skips 02:00–03:00 fires at
//!   03:00 CEST);
//! - a time that exists twice (fall-back overlap) fires at the earlier one.
//!
//! A slot is identified by its UTC instant; the scheduler records each
//! (instance, slot) once.

use std::str::FromStr;

use chrono::offset::LocalResult;
use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::model::Schedule;

/// Longest daylight-saving gap searched for a valid local time (some zones
/// skipped a whole day when they changed sides of the date line).
const MAX_GAP_MINUTES: i64 = 26 * 60;

/// A validated schedule, ready for slot arithmetic.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotSchedule {
    /// ISO weekdays (1 = Monday).
    weekdays: Vec<u8>,
    time: NaiveTime,
    zone: Tz,
}

impl SlotSchedule {
    /// `None` when the stored schedule does not parse (it was validated on
    /// the way in, so only a corrupt row gets here).
    pub fn new(schedule: &Schedule) -> Option<SlotSchedule> {
        let time = NaiveTime::parse_from_str(&schedule.time_of_day, "%H:%M").ok()?;
        let zone = Tz::from_str(&schedule.time_zone).ok()?;
        let weekdays: Vec<u8> = schedule
            .weekdays
            .iter()
            .copied()
            .filter(|d| (1..=7).contains(d))
            .collect();
        if weekdays.is_empty() {
            return None;
        }
        Some(SlotSchedule {
            weekdays,
            time,
            zone,
        })
    }

    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// The slot of local date `date`, if the schedule runs on its weekday.
    pub fn slot_on(&self, date: NaiveDate) -> Option<DateTime<Utc>> {
        let weekday = u8::try_from(date.weekday().number_from_monday()).ok()?;
        if !self.weekdays.contains(&weekday) {
            return None;
        }
        let local = date.and_time(self.time);
        match self.zone.from_local_datetime(&local) {
            LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
            LocalResult::Ambiguous(first, second) => Some(first.min(second).with_timezone(&Utc)),
            LocalResult::None => (1..=MAX_GAP_MINUTES).find_map(|m| {
                let later = local.checked_add_signed(Duration::minutes(m))?;
                self.zone
                    .from_local_datetime(&later)
                    .earliest()
                    .map(|t| t.with_timezone(&Utc))
            }),
        }
    }

    fn candidates(&self, around: DateTime<Utc>, back: i64, ahead: i64) -> Vec<DateTime<Utc>> {
        let today = around.with_timezone(&self.zone).date_naive();
        (-back..=ahead)
            .filter_map(|offset| today.checked_add_signed(Duration::days(offset)))
            .filter_map(|date| self.slot_on(date))
            .collect()
    }

    /// The latest slot at or before `time` (there is one every week).
    pub fn latest_at_or_before(&self, time: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.candidates(time, 9, 2)
            .into_iter()
            .filter(|slot| *slot <= time)
            .max()
    }

    /// The first slot strictly after `time`.
    pub fn next_after(&self, time: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.candidates(time, 2, 9)
            .into_iter()
            .filter(|slot| *slot > time)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use chrono::Timelike;
    use proptest::prelude::*;

    use super::*;

    fn schedule(days: &[u8], time: &str, zone: &str) -> SlotSchedule {
        SlotSchedule::new(&Schedule {
            weekdays: days.to_vec(),
            time_of_day: time.into(),
            time_zone: zone.into(),
        })
        .unwrap()
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn monday_and_thursday_in_berlin() {
        let s = schedule(&[1, 4], "02:30", "Europe/Berlin");
        // Wednesday 2025-01-15 12:00 UTC: the last slot was Monday 01:30 UTC.
        let now = utc(2025, 1, 15, 12, 0);
        assert_eq!(s.latest_at_or_before(now), Some(utc(2025, 1, 13, 1, 30)));
        assert_eq!(s.next_after(now), Some(utc(2025, 1, 16, 1, 30)));
    }

    #[test]
    fn a_missing_local_time_fires_once_after_the_gap() {
        // Sunday 2025-03-30: Berlin jumps from 02:00 CET to 03:00 CEST.
        let s = schedule(&[7], "02:30", "Europe/Berlin");
        let slot = s.slot_on(NaiveDate::from_ymd_opt(2025, 3, 30).unwrap());
        assert_eq!(slot, Some(utc(2025, 3, 30, 1, 0)));
        assert_eq!(s.next_after(utc(2025, 3, 29, 0, 0)), slot);
        assert_eq!(s.next_after(slot.unwrap()), Some(utc(2025, 4, 6, 0, 30)));
    }

    #[test]
    fn a_repeated_local_time_fires_once_at_the_first() {
        // Sunday 2025-10-26: Berlin repeats 02:00–03:00.
        let s = schedule(&[7], "02:30", "Europe/Berlin");
        let first = utc(2025, 10, 26, 0, 30);
        assert_eq!(s.next_after(utc(2025, 10, 25, 0, 0)), Some(first));
        // The second 02:30 (01:30 UTC) is not a slot.
        assert_eq!(s.next_after(first), Some(utc(2025, 11, 2, 1, 30)));
    }

    fn zones() -> impl Strategy<Value = Tz> {
        proptest::sample::select(vec![
            Tz::UTC,
            Tz::Europe__Berlin,
            Tz::America__New_York,
            Tz::America__Sao_Paulo,
            Tz::Australia__Lord_Howe,
            Tz::Asia__Kolkata,
            Tz::Pacific__Apia,
            Tz::America__St_Johns,
            Tz::Asia__Tehran,
        ])
    }

    proptest! {
        /// Walking slot to slot over two years visits each scheduled local
        /// date exactly once, at the scheduled local time when it exists.
        #[test]
        fn one_slot_per_scheduled_day(
            zone in zones(),
            days in proptest::sample::subsequence(vec![1u8, 2, 3, 4, 5, 6, 7], 1..=7),
            hour in 0u32..24,
            minute in 0u32..60,
            start_days in 0i64..(365 * 20),
        ) {
            let s = schedule(&days, &format!("{hour:02}:{minute:02}"), zone.name());
            let start = utc(2010, 1, 1, 0, 0) + Duration::days(start_days);
            let mut slot = s.next_after(start).unwrap();
            let mut seen_dates = std::collections::HashSet::new();
            for _ in 0..(2 * 52 * days.len()) {
                let local = slot.with_timezone(&zone);
                let scheduled = |date: NaiveDate| days.contains(&(date.weekday().number_from_monday() as u8));
                let missing = |date: NaiveDate| zone.from_local_datetime(&date.and_hms_opt(hour, minute, 0).unwrap()).earliest().is_none();
                let date = local.date_naive();
                if (local.hour(), local.minute()) == (hour, minute) && scheduled(date) {
                    prop_assert!(seen_dates.insert(date), "two slots on {}", date);
                } else {
                    // Only a scheduled date whose time fell in a gap fires elsewhere.
                    let yesterday = date.pred_opt().unwrap();
                    prop_assert!(
                        (scheduled(date) && missing(date)) || (scheduled(yesterday) && missing(yesterday)),
                        "unexpected slot {}", local
                    );
                }
                prop_assert_eq!(s.latest_at_or_before(slot), Some(slot));
                prop_assert_eq!(s.latest_at_or_before(slot - Duration::seconds(1)).map(|p| p < slot), Some(true));
                let next = s.next_after(slot).unwrap();
                prop_assert!(next > slot && next - slot <= Duration::days(8));
                // Nothing between two consecutive slots.
                let mid = slot + (next - slot) / 2;
                prop_assert_eq!(s.latest_at_or_before(mid), Some(slot));
                prop_assert_eq!(s.next_after(mid), Some(next));
                slot = next;
            }
        }
    }
}
