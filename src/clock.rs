//! Wall-clock time that follows tokio's clock, and the service's timestamp format.
//!
//! The service speaks in wall-clock timestamps (`AbsoluteTime`, `ConnectionExpiry`,
//! `Expiry`) while timers run on tokio's monotonic clock. A [`Clock`] ties the two
//! together at construction and then advances with tokio's `Instant`, so tests that
//! pause and advance tokio time see expiry timestamps move with it (the emulator and
//! the client each hold one), and a wall clock stepped by NTP cannot move a timer.

use std::time::Duration;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::OffsetDateTime;
use tokio::time::Instant;

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base_wall: OffsetDateTime,
    base_instant: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    /// A clock that reads the system time now and follows tokio's clock from then on.
    pub fn new() -> Self {
        Clock {
            base_wall: OffsetDateTime::now_utc(),
            base_instant: Instant::now(),
        }
    }

    /// The same clock, reading `offset` later (a skewed peer in tests).
    pub fn shifted(self, offset: time::Duration) -> Self {
        Clock {
            base_wall: self.base_wall + offset,
            ..self
        }
    }

    /// The current wall-clock time.
    pub fn now(&self) -> OffsetDateTime {
        self.wall_at(Instant::now())
    }

    /// The wall-clock time at a tokio instant.
    pub fn wall_at(&self, at: Instant) -> OffsetDateTime {
        if at >= self.base_instant {
            self.base_wall + (at - self.base_instant)
        } else {
            self.base_wall - (self.base_instant - at)
        }
    }

    /// The tokio instant at which the wall clock reads `at` (now, if that has passed).
    pub fn instant_at(&self, at: OffsetDateTime) -> Instant {
        let now = Instant::now();
        now + until(self.now(), at)
    }
}

/// How long from `from` until `to`; zero if `to` is not later.
pub fn until(from: OffsetDateTime, to: OffsetDateTime) -> Duration {
    let d = to - from;
    if d.is_positive() {
        Duration::try_from(d).unwrap_or(Duration::ZERO)
    } else {
        Duration::ZERO
    }
}

/// `2026-11-25T12:00:00.123Z`: UTC with milliseconds, as the service writes timestamps.
pub fn format_timestamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    t.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    ))
    .expect("a UTC timestamp always formats")
}

/// Parses an RFC 3339 timestamp such as `2019-11-08T02:41:28.172Z`.
pub fn parse_timestamp(s: &str) -> Result<OffsetDateTime, time::error::Parse> {
    OffsetDateTime::parse(s, &Rfc3339)
}

/// Formats an HTTP `Date` header (IMF-fixdate).
pub fn format_http_date(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    t.format(format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    ))
    .expect("a UTC timestamp always formats")
}

/// Parses an HTTP `Date` header (IMF-fixdate).
pub fn parse_http_date(s: &str) -> Option<OffsetDateTime> {
    time::PrimitiveDateTime::parse(
        s,
        format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        ),
    )
    .ok()
    .map(|t| t.assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_with_milliseconds() {
        let t = parse_timestamp("2019-11-08T02:41:28.172Z").unwrap();
        assert_eq!(format_timestamp(t), "2019-11-08T02:41:28.172Z");
        let t = parse_timestamp("2019-11-08T03:41:28.1+01:00").unwrap();
        assert_eq!(format_timestamp(t), "2019-11-08T02:41:28.100Z");
    }

    #[test]
    fn http_dates_round_trip() {
        let t = parse_timestamp("2026-11-25T13:05:09Z").unwrap();
        let s = format_http_date(t);
        assert_eq!(s, "Wed, 25 Nov 2026 13:05:09 GMT");
        assert_eq!(parse_http_date(&s), Some(t));
    }

    #[tokio::test(start_paused = true)]
    async fn clock_follows_tokio_time() {
        let c = Clock::new();
        let t0 = c.now();
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(c.now() - t0, time::Duration::hours(1));
        let at = c.instant_at(c.now() + time::Duration::seconds(10));
        assert_eq!(at - Instant::now(), Duration::from_secs(10));
    }
}
