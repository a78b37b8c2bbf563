//! When a dataset's exports are expected: declared in its contract (`[arrival]`), checked by the
//! alert stage's scheduled arrival check (`export_missing`, `export_late`).

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use serde::Deserialize;

/// `[arrival]` in a contract: one export per UTC day, by a time of day, with a grace period.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ArrivalSpec {
    /// `"HH:MM"`, UTC: an export that arrived by then (plus the grace) is on time.
    by: String,
    #[serde(default)]
    grace_minutes: u32,
}

/// A dataset's expected arrival: an export every UTC day, landed in `raw/` by `by` + `grace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    pub by: NaiveTime,
    pub grace: Duration,
}

impl ArrivalSpec {
    pub(super) fn compile(self, problems: &mut Vec<String>) -> Option<Arrival> {
        let by = NaiveTime::parse_from_str(&self.by, "%H:%M");
        match by {
            Ok(by) if self.grace_minutes < 24 * 60 => Some(Arrival {
                by,
                grace: Duration::minutes(i64::from(self.grace_minutes)),
            }),
            Ok(_) => {
                problems.push("arrival.grace_minutes must be under a day (1440)".into());
                None
            }
            Err(_) => {
                problems.push(format!(
                    "arrival.by `{}` must be a UTC time of day as HH:MM",
                    self.by
                ));
                None
            }
        }
    }
}

impl Arrival {
    /// The moment the export of `day` is late: `by` on that day, plus the grace.
    pub fn deadline(&self, day: NaiveDate) -> DateTime<Utc> {
        day.and_time(self.by).and_utc() + self.grace
    }

    /// `"02:00 UTC"` or `"02:00 UTC (+30 min grace)"`, for emails.
    pub fn describe(&self) -> String {
        let by = self.by.format("%H:%M UTC");
        match self.grace.num_minutes() {
            0 => by.to_string(),
            m => format!("{by} (+{m} min grace)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(by: &str, grace: u32) -> Result<Arrival, Vec<String>> {
        let mut problems = vec![];
        let spec = ArrivalSpec {
            by: by.into(),
            grace_minutes: grace,
        };
        spec.compile(&mut problems).ok_or(problems)
    }

    #[test]
    fn the_deadline_is_the_time_of_day_plus_the_grace() {
        let a = compile("02:00", 30).unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 11, 21).unwrap();
        assert_eq!(a.deadline(day).to_rfc3339(), "2026-11-21T02:30:00+00:00");
        assert_eq!(a.describe(), "02:00 UTC (+30 min grace)");
        assert_eq!(compile("23:15", 0).unwrap().describe(), "23:15 UTC");
    }

    #[test]
    fn bad_times_and_graces_are_named() {
        assert!(compile("2am", 0).unwrap_err()[0].contains("arrival.by `2am`"));
        assert!(compile("25:00", 0).is_err());
        assert!(compile("02:00", 1440).unwrap_err()[0].contains("grace_minutes"));
    }
}
