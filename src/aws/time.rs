//! The SigV4 timestamp (`YYYYMMDDTHHMMSSZ`, UTC) without a date-time crate.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// A UTC instant to the second, as SigV4 writes it. Kept as calendar fields because signing
/// only ever needs the `X-Amz-Date` text and its date part (the credential scope).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmzDate {
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

/// A timestamp that is not `YYYYMMDDTHHMMSSZ` with a valid date and time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid timestamp {0:?}: expected YYYYMMDDTHHMMSSZ in UTC, e.g. 20260102T030405Z")]
pub struct TimestampError(pub String);

impl AmzDate {
    /// The current time (a clock before 1970 counts as 1970: signing then fails visibly at RDS).
    pub fn now() -> Self {
        let seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        Self::from_unix(seconds)
    }

    /// The instant `seconds` after 1970-01-01T00:00:00Z.
    pub fn from_unix(seconds: u64) -> Self {
        let days = seconds / 86_400;
        let in_day = seconds % 86_400;
        let (year, month, day) = civil_from_days(days);
        Self {
            year,
            month,
            day,
            hour: (in_day / 3600) as u32,
            minute: (in_day / 60 % 60) as u32,
            second: (in_day % 60) as u32,
        }
    }

    /// Parses `YYYYMMDDTHHMMSSZ`, so a token can be reproduced for a given instant.
    pub fn parse(text: &str) -> Result<Self, TimestampError> {
        let invalid = || TimestampError(text.to_owned());
        let bytes = text.as_bytes();
        if bytes.len() != 16 || bytes[8] != b'T' || bytes[15] != b'Z' {
            return Err(invalid());
        }
        let number = |range: std::ops::Range<usize>| -> Result<u32, TimestampError> {
            let part = &text[range];
            if !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid());
            }
            part.parse().map_err(|_| invalid())
        };
        let date = Self {
            year: number(0..4)?,
            month: number(4..6)?,
            day: number(6..8)?,
            hour: number(9..11)?,
            minute: number(11..13)?,
            second: number(13..15)?,
        };
        let valid = (1..=12).contains(&date.month)
            && date.day >= 1
            && date.day <= days_in_month(date.year, date.month)
            && date.hour < 24
            && date.minute < 60
            && date.second < 60;
        valid.then_some(date).ok_or_else(invalid)
    }

    /// The date part, `YYYYMMDD`, used in the credential scope.
    pub fn date(&self) -> String {
        format!("{:04}{:02}{:02}", self.year, self.month, self.day)
    }
}

impl fmt::Display for AmzDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}T{:02}{:02}{:02}Z",
            self.date(),
            self.hour,
            self.minute,
            self.second
        )
    }
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 to (year, month, day): Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: u64) -> (u32, u32, u32) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = (yoe + era * 400) as u32 + u32::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_seconds_become_calendar_time() {
        assert_eq!(AmzDate::from_unix(0).to_string(), "19700101T000000Z");
        assert_eq!(
            AmzDate::from_unix(1_440_938_160).to_string(),
            "20150830T123600Z"
        );
        // 2024-02-29T23:59:59Z: a leap day.
        assert_eq!(
            AmzDate::from_unix(1_709_251_199).to_string(),
            "20240229T235959Z"
        );
        assert_eq!(
            AmzDate::from_unix(1_709_251_200).to_string(),
            "20240301T000000Z"
        );
    }

    #[test]
    fn parse_round_trips_and_rejects_nonsense() {
        let date = AmzDate::parse("20240229T235959Z").unwrap();
        assert_eq!(date, AmzDate::from_unix(1_709_251_199));
        assert_eq!(date.date(), "20240229");
        for bad in [
            "",
            "20230229T000000Z",
            "20241301T000000Z",
            "20240101T240000Z",
            "20240101T000060Z",
            "20240101 000000Z",
            "2024010aT000000Z",
            "20240101T000000",
            "+2024101T000000Z",
        ] {
            assert_eq!(
                AmzDate::parse(bad),
                Err(TimestampError(bad.into())),
                "{bad}"
            );
        }
    }
}
