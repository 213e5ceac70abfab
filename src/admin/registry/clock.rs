//! A coarse clock: milliseconds since the proxy started, advanced by a background tick, so
//! sessions can stamp "last request" times with one atomic load instead of a clock read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

/// How often the clock advances: the resolution of request and wait times on the console.
pub const TICK: Duration = Duration::from_millis(100);

/// Milliseconds since `started`, refreshed every [`TICK`].
pub struct Clock {
    started: Instant,
    started_wall: SystemTime,
    now_ms: AtomicU64,
}

impl Clock {
    pub(super) fn new() -> Arc<Clock> {
        Arc::new(Clock {
            started: Instant::now(),
            started_wall: SystemTime::now(),
            now_ms: AtomicU64::new(0),
        })
    }

    /// Starts the tick on the current runtime; it ends when the clock is dropped.
    pub fn start(self: &Arc<Self>) {
        tokio::spawn(tick(Arc::downgrade(self)));
    }

    /// The coarse time: one Relaxed load (hot path safe).
    pub fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::Relaxed)
    }

    /// Exact milliseconds since the start, for the console's own (rare) reads.
    pub fn precise_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The wall-clock time of a coarse stamp.
    pub fn wall(&self, ms: u64) -> SystemTime {
        self.started_wall + Duration::from_millis(ms)
    }
}

async fn tick(clock: Weak<Clock>) {
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticks.tick().await;
        let Some(clock) = clock.upgrade() else {
            return;
        };
        clock.now_ms.store(clock.precise_ms(), Ordering::Relaxed);
    }
}

/// `time` as PgBouncer prints console times: `YYYY-MM-DD HH:MM:SS UTC` (pgferry always UTC).
pub fn format_time(time: SystemTime) -> String {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_like_pgbouncer_in_utc() {
        let at = |secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(format_time(at(0)), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_time(at(951_782_400)), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_time(at(1_796_300_000)), "2026-12-03 12:13:20 UTC");
    }

    #[tokio::test]
    async fn the_clock_advances_while_it_lives() {
        let clock = Clock::new();
        clock.start();
        let deadline = Instant::now() + Duration::from_secs(5);
        while clock.now_ms() == 0 {
            assert!(Instant::now() < deadline, "the clock never ticked");
            tokio::time::sleep(TICK).await;
        }
    }
}
