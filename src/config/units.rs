//! Human-friendly durations ("250ms", "5s", "2m") and sizes ("64MiB", "10kB").
//!
//! Operators write timeouts and limits by hand; accepting units avoids silent factor-of-1000
//! mistakes. Plain numbers mean seconds (durations) or bytes (sizes), as documented.

use std::time::Duration;

/// Duration units: (suffix, milliseconds per unit); the suffix must match exactly.
const DURATION_UNITS: &[(&str, u64)] = &[
    ("ms", 1),
    ("min", 60_000),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];

/// Size units: decimal (kB = 1000) and binary (KiB = 1024), case-sensitive as written.
const SIZE_UNITS: &[(&str, u64)] = &[
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("kB", 1_000),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("B", 1),
];

/// Parses `"250ms"`, `"5s"`, `"2m"`/`"2min"`, `"1h"`, `"1d"` or a bare integer (seconds).
/// The error is a reason suitable for `<file>: <key>: <reason>`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = split_number(text)?;
    let per_unit_ms = match unit {
        "" => 1_000,
        u => lookup(DURATION_UNITS, u).ok_or_else(|| {
            format!("unknown duration unit {u:?} in {text:?} (use ms, s, m, h or d)")
        })?,
    };
    number
        .checked_mul(per_unit_ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("duration {text:?} is too large"))
}

/// Parses `"64MiB"`, `"10kB"`, `"1GB"` or a bare integer (bytes).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (number, unit) = split_number(text)?;
    let per_unit = match unit {
        "" => 1,
        u => lookup(SIZE_UNITS, u).ok_or_else(|| {
            format!("unknown size unit {u:?} in {text:?} (use B, kB, MB, GB, KiB, MiB or GiB)")
        })?,
    };
    number
        .checked_mul(per_unit)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

/// Formats a duration with the largest unit that divides it exactly ("5s", "250ms", "10m").
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    let units: [(&str, u128); 4] = [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];
    for (name, per) in units {
        if ms != 0 && ms.is_multiple_of(per) {
            return format!("{}{name}", ms / per);
        }
    }
    "0s".to_string()
}

/// Splits "  12ms " into (12, "ms"); the unit may be separated by spaces.
fn split_number(text: &str) -> Result<(u64, &str), String> {
    let t = text.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!(
            "expected a whole number with an optional unit, got {text:?}"
        ));
    }
    let number = digits
        .parse::<u64>()
        .map_err(|_| format!("number in {text:?} is too large"))?;
    Ok((number, unit.trim_start()))
}

fn lookup(table: &[(&str, u64)], unit: &str) -> Option<u64> {
    table
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("2min"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration(" 30 "), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10 s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_durations() {
        assert_eq!(
            parse_duration("5x"),
            Err("unknown duration unit \"x\" in \"5x\" (use ms, s, m, h or d)".into())
        );
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("1.5s").is_err());
        assert!(parse_duration("99999999999999999999").is_err());
        assert_eq!(
            parse_duration("18446744073709551615h"),
            Err("duration \"18446744073709551615h\" is too large".into())
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Ok(64 * 1024 * 1024));
        assert_eq!(parse_size("10kB"), Ok(10_000));
        assert_eq!(parse_size("10KB"), Ok(10_000));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("10000"), Ok(10_000));
        assert_eq!(parse_size("512B"), Ok(512));
        assert!(parse_size("10mb").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("18446744073709551615GiB").is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(format_duration(Duration::from_secs(5)), "5s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(600)), "10m");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }
}
