//! The alert function's environment.

use chrono::Duration;

use super::service::AlertSettings;
use crate::config::{ConfigError, LAKE_BUCKET, parse_number, required};

/// SNS topic the alert function publishes to (required).
pub const ALERT_TOPIC_ARN: &str = "ALERT_TOPIC_ARN";
/// The same alert for the same dataset and date is sent once per this many minutes (360).
pub const ALERT_DEDUP_WINDOW_MINUTES: &str = "ALERT_DEDUP_WINDOW_MINUTES";
/// Window, in minutes, in which a burst of alerts is grouped into a digest (5).
pub const ALERT_DIGEST_WINDOW_MINUTES: &str = "ALERT_DIGEST_WINDOW_MINUTES";
/// Alerts sent within the digest window before further ones are held for a digest (3).
pub const ALERT_DIGEST_THRESHOLD: &str = "ALERT_DIGEST_THRESHOLD";
/// Hour (UTC) by which a day's load must have succeeded (4).
pub const SLA_HOUR_UTC: &str = "SLA_HOUR_UTC";

/// Everything the alert function needs.
#[derive(Debug, Clone)]
pub struct AlertConfig {
    pub topic_arn: String,
    /// Alert deduplication state and load run records live in the data bucket.
    pub bucket: String,
    pub settings: AlertSettings,
}

impl AlertConfig {
    /// Alert function configuration from environment variables looked up through `var`.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let topic_arn = required(&var, ALERT_TOPIC_ARN, &mut problems);
        let bucket = required(&var, LAKE_BUCKET, &mut problems);
        let defaults = AlertSettings::default();
        let minutes = |name, problems: &mut Vec<String>| {
            parse_number(name, var(name), problems, |n| n > 0).map(Duration::minutes)
        };
        let settings = AlertSettings {
            dedup_window: minutes(ALERT_DEDUP_WINDOW_MINUTES, &mut problems)
                .unwrap_or(defaults.dedup_window),
            digest_window: minutes(ALERT_DIGEST_WINDOW_MINUTES, &mut problems)
                .unwrap_or(defaults.digest_window),
            digest_threshold: parse_number(
                ALERT_DIGEST_THRESHOLD,
                var(ALERT_DIGEST_THRESHOLD),
                &mut problems,
                |n| n > 0,
            )
            .map_or(defaults.digest_threshold, |n| n as usize),
            sla_hour: parse_number(SLA_HOUR_UTC, var(SLA_HOUR_UTC), &mut problems, |n| {
                (0..24).contains(&n)
            })
            .map_or(defaults.sla_hour, |n| n as u32),
        };
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        Ok(AlertConfig {
            topic_arn,
            bucket,
            settings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::env;

    #[test]
    fn alert_config_requires_topic_and_bucket_and_checks_numbers() {
        let err =
            AlertConfig::from_env(env(&[(ALERT_DIGEST_THRESHOLD, "0"), (SLA_HOUR_UTC, "25")]))
                .unwrap_err();
        assert_eq!(err.problems.len(), 4, "{err}");
        let ok = AlertConfig::from_env(env(&[
            (ALERT_TOPIC_ARN, "arn:t"),
            (LAKE_BUCKET, "b"),
            (ALERT_DEDUP_WINDOW_MINUTES, "60"),
        ]))
        .unwrap();
        assert_eq!(ok.settings.dedup_window, chrono::Duration::minutes(60));
        assert_eq!((ok.settings.digest_threshold, ok.settings.sla_hour), (3, 4));
    }
}
