//! Parsers for the scalar types of a contract. They are strict (a value either means exactly one
//! thing or is rejected with a reason) and allocation-free, because they run once per field.

use std::fmt;

use chrono::{Datelike, NaiveDate};

const MICROS_PER_SECOND: i64 = 1_000_000;
const SECONDS_PER_DAY: i64 = 86_400;
/// `NaiveDate::num_days_from_ce()` of 1970-01-01.
const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;

/// Why a value could not be read as its column's type. Displayed after the column name and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueError {
    Timestamp,
    FractionTooLong,
    Date,
    Decimal,
    DecimalScale { scale: u8 },
    DecimalPrecision { precision: u8, scale: u8 },
    Integer,
    IntegerRange,
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueError::Timestamp => f.write_str(
                "is not a valid timestamp (expected RFC 3339 like 2026-11-21T09:30:00Z or \
                 2026-11-21T09:30:00-05:00, or YYYY-MM-DD HH:MM:SS[.ffffff] read as UTC)",
            ),
            ValueError::FractionTooLong => {
                f.write_str("has more than 6 fractional second digits (microseconds are kept)")
            }
            ValueError::Date => f.write_str("is not a valid date (expected YYYY-MM-DD)"),
            ValueError::Decimal => f.write_str("is not a decimal number (expected e.g. 1234.56)"),
            ValueError::DecimalScale { scale } => {
                write!(f, "has more than {scale} fraction digits")
            }
            ValueError::DecimalPrecision { precision, scale } => {
                write!(f, "does not fit decimal({precision},{scale})")
            }
            ValueError::Integer => f.write_str("is not a whole number"),
            ValueError::IntegerRange => f.write_str("is outside the 32-bit integer range"),
        }
    }
}

impl std::error::Error for ValueError {}

fn digits(b: &[u8]) -> Option<u32> {
    let mut n = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u32::from(c - b'0');
    }
    Some(n)
}

fn days_since_epoch(year: u32, month: u32, day: u32) -> Option<i32> {
    let date = NaiveDate::from_ymd_opt(year as i32, month, day)?;
    Some(date.num_days_from_ce() - UNIX_EPOCH_DAYS_FROM_CE)
}

fn parse_ymd(b: &[u8]) -> Option<i32> {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    days_since_epoch(digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?)
}

/// `YYYY-MM-DD` → days since 1970-01-01.
pub fn parse_date(s: &str) -> Result<i32, ValueError> {
    parse_ymd(s.as_bytes()).ok_or(ValueError::Date)
}

/// RFC 3339 (`Z` or `±HH:MM`) or a naive `YYYY-MM-DD[T ]HH:MM:SS[.ffffff]` read as UTC
/// → microseconds since the Unix epoch, UTC.
pub fn parse_timestamp(s: &str) -> Result<i64, ValueError> {
    let b = s.as_bytes();
    if b.len() < 19 || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return Err(ValueError::Timestamp);
    }
    let days = parse_ymd(&b[..10]).ok_or(ValueError::Timestamp)?;
    let (h, m, sec) = (|| {
        Some((
            digits(&b[11..13])?,
            digits(&b[14..16])?,
            digits(&b[17..19])?,
        ))
    })()
    .ok_or(ValueError::Timestamp)?;
    if h > 23 || m > 59 || sec > 59 {
        return Err(ValueError::Timestamp);
    }
    let mut rest = &b[19..];
    let mut micros = 0i64;
    if let Some(after_dot) = rest.strip_prefix(b".") {
        let n = after_dot.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return Err(ValueError::Timestamp);
        }
        if n > 6 {
            return Err(ValueError::FractionTooLong);
        }
        let frac = digits(&after_dot[..n]).ok_or(ValueError::Timestamp)?;
        micros = i64::from(frac) * 10i64.pow(6 - n as u32);
        rest = &after_dot[n..];
    }
    let offset_seconds = match rest {
        [] | [b'Z'] | [b'z'] => 0,
        [sign @ (b'+' | b'-'), hh @ ..] if hh.len() == 5 && hh[2] == b':' => {
            let oh = digits(&hh[0..2]).ok_or(ValueError::Timestamp)?;
            let om = digits(&hh[3..5]).ok_or(ValueError::Timestamp)?;
            if oh > 23 || om > 59 {
                return Err(ValueError::Timestamp);
            }
            let secs = i64::from(oh * 3600 + om * 60);
            if *sign == b'-' { -secs } else { secs }
        }
        _ => return Err(ValueError::Timestamp),
    };
    let local_seconds =
        i64::from(days) * SECONDS_PER_DAY + i64::from(h * 3600 + m * 60 + sec) - offset_seconds;
    Ok(local_seconds * MICROS_PER_SECOND + micros)
}

/// A decimal string → integer scaled by `10^scale`. At most `scale` fraction digits and
/// `precision - scale` integer digits; a sign is allowed, thousands separators are not.
pub fn parse_decimal(s: &str, precision: u8, scale: u8) -> Result<i64, ValueError> {
    let b = s.as_bytes();
    let (negative, body) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        Some(b'+') => (false, &b[1..]),
        _ => (false, b),
    };
    let (int_part, frac_part) = match body.iter().position(|&c| c == b'.') {
        Some(dot) => (&body[..dot], Some(&body[dot + 1..])),
        None => (body, None),
    };
    let all_digits = |p: &[u8]| !p.is_empty() && p.iter().all(u8::is_ascii_digit);
    if !all_digits(int_part) || frac_part.is_some_and(|f| !all_digits(f)) {
        return Err(ValueError::Decimal);
    }
    let frac = frac_part.unwrap_or_default();
    if frac.len() > usize::from(scale) {
        return Err(ValueError::DecimalScale { scale });
    }
    let significant = int_part.iter().skip_while(|&&c| c == b'0').count();
    if significant > usize::from(precision - scale) {
        return Err(ValueError::DecimalPrecision { precision, scale });
    }
    // At most 18 digits in total, so i64 arithmetic cannot overflow.
    let mut value: i64 = 0;
    for &c in &int_part[int_part.len() - significant..] {
        value = value * 10 + i64::from(c - b'0');
    }
    for i in 0..usize::from(scale) {
        value = value * 10 + frac.get(i).map_or(0, |&c| i64::from(c - b'0'));
    }
    Ok(if negative { -value } else { value })
}

/// A whole number in the signed 32-bit range.
pub fn parse_int32(s: &str) -> Result<i32, ValueError> {
    let b = s.as_bytes();
    let body = match b.first() {
        Some(b'-' | b'+') => &b[1..],
        _ => b,
    };
    if body.is_empty() || !body.iter().all(u8::is_ascii_digit) {
        return Err(ValueError::Integer);
    }
    s.parse::<i32>().map_err(|_| ValueError::IntegerRange)
}

/// Scaled integer → plain decimal text (`-1234` at scale 2 → `-12.34`).
pub fn format_decimal(value: i64, scale: u8) -> String {
    let factor = 10i64.pow(u32::from(scale));
    let sign = if value < 0 { "-" } else { "" };
    let abs = value.unsigned_abs();
    let (int, frac) = (abs / factor as u64, abs % factor as u64);
    if scale == 0 {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac:0width$}", width = usize::from(scale))
    }
}

/// Days since the epoch → the date (None out of chrono's range).
pub fn naive_date(days: i32) -> Option<NaiveDate> {
    NaiveDate::from_num_days_from_ce_opt(days.checked_add(UNIX_EPOCH_DAYS_FROM_CE)?)
}

/// The date → days since the epoch (polars' `Date`).
pub fn epoch_days(date: NaiveDate) -> i32 {
    chrono::Datelike::num_days_from_ce(&date) - UNIX_EPOCH_DAYS_FROM_CE
}

/// Days since the epoch → `YYYY-MM-DD`.
pub fn format_date(days: i32) -> String {
    NaiveDate::from_num_days_from_ce_opt(days + UNIX_EPOCH_DAYS_FROM_CE)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| format!("day {days}"))
}

/// The UTC date (days since the epoch) of a timestamp in microseconds.
pub fn utc_day_of(micros: i64) -> i32 {
    micros
        .div_euclid(MICROS_PER_SECOND * SECONDS_PER_DAY)
        .try_into()
        .unwrap_or(i32::MAX)
}

/// Microseconds since the epoch → RFC 3339 in UTC.
pub fn format_timestamp(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        .unwrap_or_else(|| format!("{micros}us"))
}

/// FNV-1a: stable across builds and platforms, so what is placed by it (ingest's buckets and
/// file names, the first-order state's buckets) stays where it was put.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> String {
        parse_timestamp(s)
            .map(format_timestamp)
            .unwrap_or_else(|e| format!("ERR {e:?}"))
    }

    #[test]
    fn timestamps_in_every_accepted_form() {
        let cases = [
            ("2026-11-21T09:30:00Z", "2026-11-21T09:30:00.000000Z"),
            ("2026-11-21t09:30:00z", "2026-11-21T09:30:00.000000Z"),
            ("2026-11-21T09:30:00+02:00", "2026-11-21T07:30:00.000000Z"),
            ("2026-11-21T23:30:00-05:00", "2026-11-22T04:30:00.000000Z"),
            ("2026-11-21 09:30:00", "2026-11-21T09:30:00.000000Z"),
            ("2026-11-21T09:30:00", "2026-11-21T09:30:00.000000Z"),
            ("2026-11-21 09:30:00.5", "2026-11-21T09:30:00.500000Z"),
            ("2026-11-21T09:30:00.123456", "2026-11-21T09:30:00.123456Z"),
            (
                "2026-11-21T09:30:00.123456+00:00",
                "2026-11-21T09:30:00.123456Z",
            ),
            ("1969-12-31T23:59:59.999999Z", "1969-12-31T23:59:59.999999Z"),
            ("2024-02-29T00:00:00Z", "2024-02-29T00:00:00.000000Z"),
        ];
        for (input, want) in cases {
            assert_eq!(ts(input), want, "{input}");
        }
    }

    #[test]
    fn timestamps_that_are_rejected() {
        for bad in [
            "",
            "2026-11-21",
            "2026-11-21T9:30:00Z",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-11-21T24:00:00Z",
            "2026-11-21T23:60:00Z",
            "2026-11-21T23:59:60Z",
            "2026-11-21T09:30:00.Z",
            "2026-11-21T09:30:00+0200",
            "2026-11-21T09:30:00+24:00",
            "2026-11-21T09:30:00 Z",
            "2026-11-21T09:30:00Zjunk",
            "21/11/2026 09:30",
            "1763717400",
            "2026-11-21T09:30:00\u{00e9}",
        ] {
            assert_eq!(parse_timestamp(bad), Err(ValueError::Timestamp), "{bad:?}");
        }
        assert_eq!(
            parse_timestamp("2026-11-21T09:30:00.1234567Z"),
            Err(ValueError::FractionTooLong)
        );
    }

    #[test]
    fn an_order_late_in_the_evening_west_of_utc_belongs_to_the_next_utc_day() {
        let micros = parse_timestamp("2026-11-21T23:30:00-05:00").unwrap();
        assert_eq!(format_date(utc_day_of(micros)), "2026-11-22");
        let before_epoch = parse_timestamp("1969-12-31T23:00:00Z").unwrap();
        assert_eq!(format_date(utc_day_of(before_epoch)), "1969-12-31");
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("1970-01-01"), Ok(0));
        assert_eq!(
            parse_date("2026-11-21").map(format_date),
            Ok("2026-11-21".into())
        );
        for bad in [
            "2026-11-31",
            "2026-1-01",
            "2026/11/21",
            "20261121",
            "2026-11-21 ",
            "",
        ] {
            assert_eq!(parse_date(bad), Err(ValueError::Date), "{bad:?}");
        }
    }

    #[test]
    fn decimals_are_exact() {
        let ok = [
            ("0", 0),
            ("12", 1200),
            ("12.5", 1250),
            ("12.50", 1250),
            ("-3.07", -307),
            ("+3.07", 307),
            ("0009.99", 999),
            ("9999999999999999.99", 999_999_999_999_999_999),
            ("0.1", 10),
        ];
        for (s, want) in ok {
            assert_eq!(parse_decimal(s, 18, 2), Ok(want), "{s}");
        }
        let bad = [
            ("12.345", ValueError::DecimalScale { scale: 2 }),
            ("1.000", ValueError::DecimalScale { scale: 2 }),
            (
                "10000000000000000",
                ValueError::DecimalPrecision {
                    precision: 18,
                    scale: 2,
                },
            ),
            ("1,234.50", ValueError::Decimal),
            ("12.", ValueError::Decimal),
            (".5", ValueError::Decimal),
            ("1e3", ValueError::Decimal),
            ("NaN", ValueError::Decimal),
            ("", ValueError::Decimal),
            ("-", ValueError::Decimal),
            ("$5", ValueError::Decimal),
        ];
        for (s, want) in bad {
            assert_eq!(parse_decimal(s, 18, 2), Err(want), "{s}");
        }
        // 0.1 + 0.2 is exactly 0.3 in cents, unlike f64.
        assert_eq!(
            parse_decimal("0.1", 18, 2).unwrap() + parse_decimal("0.2", 18, 2).unwrap(),
            parse_decimal("0.3", 18, 2).unwrap()
        );
    }

    #[test]
    fn decimal_formatting_round_trips() {
        for s in ["0.00", "12.50", "-3.07", "9999999999999999.99", "-0.05"] {
            assert_eq!(format_decimal(parse_decimal(s, 18, 2).unwrap(), 2), s);
        }
        assert_eq!(format_decimal(42, 0), "42");
    }

    #[test]
    fn int32s() {
        assert_eq!(parse_int32("3"), Ok(3));
        assert_eq!(parse_int32("-2147483648"), Ok(i32::MIN));
        assert_eq!(parse_int32("+007"), Ok(7));
        assert_eq!(parse_int32("2147483648"), Err(ValueError::IntegerRange));
        for bad in ["1.0", "", "-", "1 2", "0x10", "one"] {
            assert_eq!(parse_int32(bad), Err(ValueError::Integer), "{bad:?}");
        }
    }
}
