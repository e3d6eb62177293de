//! Time: timestamps for audit events, consents and retention, and an
//! injectable [`Clock`] so tests can cross a retention boundary without waiting.
//!
//! ```
//! use privacy_pledge::time::{Clock, FixedClock, Timestamp};
//!
//! let clock = FixedClock::new(Timestamp::from_unix_seconds(1_530_316_800));
//! assert_eq!(clock.now().to_string(), "2018-06-30T00:00:00Z");
//! clock.advance_seconds(86_400);
//! assert_eq!(clock.now().to_string(), "2018-07-01T00:00:00Z");
//! ```

use core::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::data::Date;

/// A point in time: nanoseconds since the Unix epoch (UTC), from 1970-01-01
/// to 2554-07-21T23:34:33Z (the end of a `u64`).
///
/// Serialized as that integer. `Display` shows RFC 3339 to the whole second
/// (`2018-06-30T00:00:00Z`); `Debug` wraps the same form in `Timestamp(…)`
/// and adds the fraction of a second when there is one, in groups of three
/// digits (milli-, micro- or nanoseconds), so two different timestamps never
/// look alike in a test failure or a log.
///
/// ```
/// use privacy_pledge::time::Timestamp;
///
/// let t = Timestamp::from_unix_seconds(1_795_664_070);
/// assert_eq!(t.to_string(), "2026-11-26T03:34:30Z");
/// assert_eq!(format!("{t:?}"), "Timestamp(2026-11-26T03:34:30Z)");
///
/// let t = Timestamp::from_unix_nanos(1_795_664_070_250_000_000);
/// assert_eq!(t.to_string(), "2026-11-26T03:34:30Z");
/// assert_eq!(format!("{t:?}"), "Timestamp(2026-11-26T03:34:30.250Z)");
/// assert_eq!(
///     format!("{:?}", Timestamp::from_unix_nanos(7)),
///     "Timestamp(1970-01-01T00:00:00.000000007Z)"
/// );
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// From nanoseconds since the Unix epoch.
    pub const fn from_unix_nanos(nanos: u64) -> Self {
        Timestamp(nanos)
    }

    /// From whole seconds since the Unix epoch (saturating far in the future).
    pub const fn from_unix_seconds(secs: u64) -> Self {
        Timestamp(secs.saturating_mul(1_000_000_000))
    }

    /// Nanoseconds since the Unix epoch.
    pub const fn unix_nanos(self) -> u64 {
        self.0
    }

    /// Whole seconds since the Unix epoch.
    pub const fn unix_seconds(self) -> u64 {
        self.0 / 1_000_000_000
    }

    /// This time plus `secs` seconds, saturating.
    pub const fn plus_seconds(self, secs: u64) -> Self {
        Timestamp(self.0.saturating_add(secs.saturating_mul(1_000_000_000)))
    }

    /// The calendar date (UTC) of this time: today's date, for
    /// `Timestamp::now()` or a custodian's clock, with no text to parse.
    ///
    /// Every timestamp has one, from [`Date::FIRST`] (1970-01-01) to
    /// [`Date::LAST`] (2554-07-21), and it is the date its RFC 3339 form
    /// (`Display`) starts with.
    ///
    /// ```
    /// use privacy_pledge::data::Date;
    /// use privacy_pledge::time::Timestamp;
    ///
    /// let t = Timestamp::from_unix_seconds(1_530_316_800);
    /// assert_eq!(t.date(), Date::new(2018, 6, 30)?);
    /// assert_eq!(t.date().to_string(), "2018-06-30");
    /// // The last second of a day is still that day.
    /// assert_eq!(t.plus_seconds(86_399).date(), Date::new(2018, 6, 30)?);
    /// assert_eq!(t.plus_seconds(86_400).date(), Date::new(2018, 7, 1)?);
    /// // A date's midnight is on that date.
    /// assert_eq!(Date::new(2000, 2, 29)?.start().date(), Date::new(2000, 2, 29)?);
    ///
    /// // Today (UTC), e.g. for a purchase record.
    /// let today: Date = Timestamp::now().date();
    /// assert!(today >= Date::new(2024, 1, 1)?);
    /// # Ok::<(), privacy_pledge::data::InvalidData>(())
    /// ```
    pub fn date(self) -> Date {
        // At most u64::MAX / 10^9 / 86 400 = 213 503 days: 2554-07-21.
        let (y, m, d) = civil_from_days((self.unix_seconds() / 86_400) as i64);
        // In range by construction: year 1970..=2554, month 1..=12, day 1..=31.
        Date::from_checked_parts(y as u16, m as u8, d as u8)
    }

    /// The current system time.
    pub fn now() -> Self {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}

impl Timestamp {
    /// Writes the RFC 3339 form, with the fraction of a second in groups of
    /// three digits if `fraction` is set and there is one.
    fn write_rfc3339(self, f: &mut fmt::Formatter<'_>, fraction: bool) -> fmt::Result {
        let secs = self.unix_seconds();
        let rem = secs % 86_400;
        let (y, m, d) = civil_from_days((secs / 86_400) as i64);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            rem / 3600,
            rem / 60 % 60,
            rem % 60
        )?;
        let nanos = self.0 % 1_000_000_000;
        if fraction && nanos != 0 {
            if nanos.is_multiple_of(1_000_000) {
                write!(f, ".{:03}", nanos / 1_000_000)?;
            } else if nanos.is_multiple_of(1_000) {
                write!(f, ".{:06}", nanos / 1_000)?;
            } else {
                write!(f, ".{nanos:09}")?;
            }
        }
        f.write_str("Z")
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC to the whole second: `2018-06-30T00:00:00Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_rfc3339(f, false)
    }
}

impl fmt::Debug for Timestamp {
    /// `Timestamp(` RFC 3339 `)`, with the fraction of a second if any:
    /// `Timestamp(2018-06-30T00:00:00Z)`, `Timestamp(2018-06-30T00:00:00.250Z)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Timestamp(")?;
        self.write_rfc3339(f, true)?;
        f.write_str(")")
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A proleptic Gregorian date to days since 1970-01-01.
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A source of the current time. The custodian reads every timestamp from one.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that stands still until moved: for tests and replays.
#[derive(Debug)]
pub struct FixedClock(AtomicU64);

impl FixedClock {
    /// A clock showing `at`.
    pub fn new(at: Timestamp) -> Self {
        FixedClock(AtomicU64::new(at.0))
    }

    /// Moves the clock to `at`.
    pub fn set(&self, at: Timestamp) {
        self.0.store(at.0, Ordering::SeqCst);
    }

    /// Moves the clock forward by `secs` seconds.
    pub fn advance_seconds(&self, secs: u64) {
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(Timestamp(t).plus_seconds(secs).0)
            });
    }
}

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for days in [-1_000_000i64, -1, 0, 1, 11_016, 17_712, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(17_712), (2018, 6, 30));
    }

    /// A date with the calendar walked one day at a time: an oracle that
    /// shares nothing with `civil_from_days`.
    fn next_day((y, m, d): (u16, u8, u8)) -> (u16, u8, u8) {
        let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let len = match m {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        match (d < len, m < 12) {
            (true, _) => (y, m, d + 1),
            (false, true) => (y, m + 1, 1),
            (false, false) => (y + 1, 1, 1),
        }
    }

    fn ymd(date: Date) -> (u16, u8, u8) {
        (date.year(), date.month(), date.day())
    }

    #[test]
    fn date_of_known_times() {
        for (secs, want) in [
            (0, (1970, 1, 1)),
            (86_399, (1970, 1, 1)),
            (86_400, (1970, 1, 2)),
            (68_169_600, (1972, 2, 29)),
            (946_684_799, (1999, 12, 31)),
            (946_684_800, (2000, 1, 1)),
            (951_782_400, (2000, 2, 29)),
            (951_868_799, (2000, 2, 29)),
            (951_868_800, (2000, 3, 1)),
            (1_530_316_800, (2018, 6, 30)),
            (1_709_164_800, (2024, 2, 29)),
            (1_795_664_070, (2026, 11, 26)),
            (4_107_456_000, (2100, 2, 28)),
            (4_107_542_399, (2100, 2, 28)),
            (4_107_542_400, (2100, 3, 1)),
            (13_574_563_200, (2400, 2, 29)),
            (18_446_659_200, (2554, 7, 21)),
        ] {
            let t = Timestamp::from_unix_seconds(secs);
            assert_eq!(ymd(t.date()), want, "{secs}");
            assert_eq!(t.date(), Date::new(want.0, want.1, want.2).unwrap());
        }
    }

    #[test]
    fn date_at_the_ends_of_the_range() {
        assert_eq!(Timestamp::EPOCH.date(), Date::FIRST);
        assert_eq!(Timestamp::from_unix_nanos(u64::MAX).date(), Date::LAST);
        assert_eq!(Date::FIRST.start().date(), Date::FIRST);
        assert_eq!(Date::LAST.start().date(), Date::LAST);
        // The last second of every year is on 31 December, the next on 1 January.
        let mut year = Date::FIRST;
        while let Ok(next) = Date::new(year.year() + 1, 1, 1) {
            let last_second = Timestamp::from_unix_seconds(next.start().unix_seconds() - 1);
            assert_eq!(ymd(last_second.date()), (year.year(), 12, 31));
            assert_eq!(next.start().date(), next);
            year = next;
        }
        assert_eq!(year.year(), 2554);
    }

    #[test]
    fn date_of_every_day_matches_a_day_by_day_count() {
        let mut want = (1970, 1, 1);
        let last_day = Timestamp::from_unix_nanos(u64::MAX).unix_seconds() / 86_400;
        for day in 0..=last_day {
            let midnight = Timestamp::from_unix_seconds(day * 86_400);
            assert_eq!(ymd(midnight.date()), want, "day {day}");
            assert_eq!(midnight.plus_seconds(86_399).date(), midnight.date());
            assert_eq!(midnight.date().start(), midnight);
            want = next_day(want);
        }
        assert_eq!(want, (2554, 7, 22));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

        #[test]
        fn date_agrees_with_display(nanos in proptest::prelude::any::<u64>()) {
            let t = Timestamp::from_unix_nanos(nanos);
            let shown = t.to_string();
            let date = t.date();
            proptest::prop_assert_eq!(&shown[..10], date.to_string());
            proptest::prop_assert_eq!(
                Date::new(date.year(), date.month(), date.day()),
                Ok(date)
            );
            proptest::prop_assert!(date.start() <= t);
            proptest::prop_assert!(t.unix_seconds() - date.start().unix_seconds() < 86_400);
            let debug = format!("{t:?}");
            let prefix = format!("Timestamp({}", &shown[..19]);
            proptest::prop_assert!(debug.starts_with(&prefix), "{} vs {}", debug, shown);
            proptest::prop_assert!(debug.ends_with("Z)"), "{}", debug);
        }
    }

    #[test]
    fn debug_is_rfc3339_with_the_fraction() {
        let t = Timestamp::from_unix_seconds(1_795_664_070);
        for (nanos, shown) in [
            (0, "Timestamp(2026-11-26T03:34:30Z)"),
            (250_000_000, "Timestamp(2026-11-26T03:34:30.250Z)"),
            (1_000_000, "Timestamp(2026-11-26T03:34:30.001Z)"),
            (120_000, "Timestamp(2026-11-26T03:34:30.000120Z)"),
            (999_999_999, "Timestamp(2026-11-26T03:34:30.999999999Z)"),
            (5, "Timestamp(2026-11-26T03:34:30.000000005Z)"),
        ] {
            let at = Timestamp::from_unix_nanos(t.unix_nanos() + nanos);
            assert_eq!(format!("{at:?}"), shown);
            assert_eq!(at.to_string(), "2026-11-26T03:34:30Z");
        }
        assert_eq!(
            format!("{:?}", Timestamp::from_unix_nanos(u64::MAX)),
            "Timestamp(2554-07-21T23:34:33.709551615Z)"
        );
        assert_eq!(
            format!("{:?}", Some(Timestamp::EPOCH)),
            "Some(Timestamp(1970-01-01T00:00:00Z))"
        );
    }

    #[test]
    fn display_is_rfc3339() {
        assert_eq!(Timestamp::EPOCH.to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(
            Timestamp::from_unix_seconds(951_782_400).to_string(),
            "2000-02-29T00:00:00Z"
        );
    }
}
