//! Configuration read once from the environment into typed structs. Every variable is named in
//! a constant here; all problems are reported together so a deploy is fixed in one go.

use std::path::PathBuf;

use crate::alert::AlertSettings;
use crate::ingest::{DEFAULT_MEMORY_BUDGET_BYTES, IngestSettings};

/// Memory budget per ingested file, in MiB (default: 40% of the Lambda's memory, else 512).
pub const MEMORY_BUDGET_MB: &str = "LAKE_MEMORY_BUDGET_MB";
/// Scratch directory for spill and staged files (default: the system temp dir, `/tmp` in Lambda).
pub const WORK_DIR: &str = "LAKE_WORK_DIR";
/// Set by Lambda: the function's memory size in MiB.
pub const LAMBDA_MEMORY_MB: &str = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE";

/// Redshift Serverless workgroup (give this or REDSHIFT_CLUSTER_ID).
pub const REDSHIFT_WORKGROUP: &str = "REDSHIFT_WORKGROUP";
/// Provisioned cluster identifier (give this or REDSHIFT_WORKGROUP), with REDSHIFT_DB_USER.
pub const REDSHIFT_CLUSTER_ID: &str = "REDSHIFT_CLUSTER_ID";
pub const REDSHIFT_DB_USER: &str = "REDSHIFT_DB_USER";
/// Database (default `dev`), credentials secret (optional), schema (default `shoplake`).
pub const REDSHIFT_DATABASE: &str = "REDSHIFT_DATABASE";
pub const REDSHIFT_SECRET_ARN: &str = "REDSHIFT_SECRET_ARN";
pub const REDSHIFT_SCHEMA: &str = "REDSHIFT_SCHEMA";
/// IAM role Redshift assumes to read the bucket in COPY (required by the load function).
pub const REDSHIFT_COPY_ROLE_ARN: &str = "REDSHIFT_COPY_ROLE_ARN";
/// Longest a load statement may run, in seconds (default 900).
pub const REDSHIFT_STATEMENT_TIMEOUT_SECONDS: &str = "REDSHIFT_STATEMENT_TIMEOUT_SECONDS";
/// Glue database the ingest function registers partitions in (none: no registration).
pub const GLUE_DATABASE: &str = "GLUE_DATABASE";
/// SNS topic the alert function publishes to (required by the alert function).
pub const ALERT_TOPIC_ARN: &str = "ALERT_TOPIC_ARN";
/// The data bucket: alert deduplication state and load run records live there.
pub const LAKE_BUCKET: &str = "LAKE_BUCKET";
/// The same alert for the same dataset and date is sent once per this many minutes (360).
pub const ALERT_DEDUP_WINDOW_MINUTES: &str = "ALERT_DEDUP_WINDOW_MINUTES";
/// Window, in minutes, in which a burst of alerts is grouped into a digest (5).
pub const ALERT_DIGEST_WINDOW_MINUTES: &str = "ALERT_DIGEST_WINDOW_MINUTES";
/// Alerts sent within the digest window before further ones are held for a digest (3).
pub const ALERT_DIGEST_THRESHOLD: &str = "ALERT_DIGEST_THRESHOLD";
/// Hour (UTC) by which a day's load must have succeeded (4).
pub const SLA_HOUR_UTC: &str = "SLA_HOUR_UTC";

/// Share of a Lambda's memory given to the row budget; the rest is runtime, encoder and I/O.
const LAMBDA_BUDGET_PERCENT: usize = 40;
const MIB: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {}", .problems.join("; "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

fn parse_mib(name: &str, value: Option<String>, problems: &mut Vec<String>) -> Option<usize> {
    let value = value?;
    match value.trim().parse::<usize>() {
        Ok(n) if n > 0 => Some(n),
        _ => {
            problems.push(format!(
                "{name} must be a positive whole number of MiB, got {value:?}"
            ));
            None
        }
    }
}

/// Ingest settings from environment variables looked up through `var`.
pub fn ingest_settings(
    var: impl Fn(&str) -> Option<String>,
) -> Result<IngestSettings, ConfigError> {
    let mut problems = Vec::new();
    let budget = parse_mib(MEMORY_BUDGET_MB, var(MEMORY_BUDGET_MB), &mut problems);
    let lambda_memory = parse_mib(LAMBDA_MEMORY_MB, var(LAMBDA_MEMORY_MB), &mut problems);
    if !problems.is_empty() {
        return Err(ConfigError { problems });
    }
    let memory_budget_bytes = match (budget, lambda_memory) {
        (Some(mb), _) => mb * MIB,
        (None, Some(mb)) => mb * MIB * LAMBDA_BUDGET_PERCENT / 100,
        (None, None) => DEFAULT_MEMORY_BUDGET_BYTES,
    };
    Ok(IngestSettings {
        memory_budget_bytes,
        work_dir: var(WORK_DIR).filter(|v| !v.is_empty()).map(PathBuf::from),
        force: false,
    })
}

/// Everything the alert function needs.
#[derive(Debug, Clone)]
pub struct AlertConfig {
    pub topic_arn: String,
    pub bucket: String,
    pub settings: AlertSettings,
}

fn parse_number(
    name: &str,
    value: Option<String>,
    problems: &mut Vec<String>,
    valid: impl Fn(i64) -> bool,
) -> Option<i64> {
    let value = value?;
    match value.trim().parse::<i64>() {
        Ok(n) if valid(n) => Some(n),
        _ => {
            problems.push(format!(
                "{name} is out of range or not a whole number: {value:?}"
            ));
            None
        }
    }
}

/// Alert function configuration from environment variables looked up through `var`.
pub fn alert_config(var: impl Fn(&str) -> Option<String>) -> Result<AlertConfig, ConfigError> {
    let mut problems = Vec::new();
    let mut required = |name: &str| match var(name).filter(|v| !v.trim().is_empty()) {
        Some(v) => v,
        None => {
            problems.push(format!("{name} is required"));
            String::new()
        }
    };
    let (topic_arn, bucket) = (required(ALERT_TOPIC_ARN), required(LAKE_BUCKET));
    let defaults = AlertSettings::default();
    let minutes = |name, problems: &mut Vec<String>| {
        parse_number(name, var(name), problems, |n| n > 0).map(chrono::Duration::minutes)
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

/// Everything the load function needs.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub bucket: String,
    pub warehouse: crate::warehouse::Warehouse,
    pub data_api: crate::warehouse::DataApiSettings,
}

/// Load function configuration: exactly one Redshift target, the COPY role, the bucket.
pub fn load_config(var: impl Fn(&str) -> Option<String>) -> Result<LoadConfig, ConfigError> {
    use crate::warehouse::{DataApiSettings, Target, Warehouse};
    let mut problems = Vec::new();
    let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    let target = match (get(REDSHIFT_WORKGROUP), get(REDSHIFT_CLUSTER_ID)) {
        (Some(w), None) => Some(Target::Workgroup(w)),
        (None, Some(c)) => Some(Target::Cluster {
            identifier: c,
            db_user: get(REDSHIFT_DB_USER),
        }),
        (Some(_), Some(_)) => {
            problems.push(format!(
                "give {REDSHIFT_WORKGROUP} or {REDSHIFT_CLUSTER_ID}, not both"
            ));
            None
        }
        (None, None) => {
            problems.push(format!(
                "{REDSHIFT_WORKGROUP} or {REDSHIFT_CLUSTER_ID} is required"
            ));
            None
        }
    };
    let bucket = get(LAKE_BUCKET).unwrap_or_else(|| {
        problems.push(format!("{LAKE_BUCKET} is required"));
        String::new()
    });
    let role = get(REDSHIFT_COPY_ROLE_ARN).unwrap_or_else(|| {
        problems.push(format!("{REDSHIFT_COPY_ROLE_ARN} is required"));
        String::new()
    });
    let timeout = parse_number(
        REDSHIFT_STATEMENT_TIMEOUT_SECONDS,
        var(REDSHIFT_STATEMENT_TIMEOUT_SECONDS),
        &mut problems,
        |n| n > 0,
    );
    if !problems.is_empty() {
        return Err(ConfigError { problems });
    }
    let mut data_api = DataApiSettings::new(
        target.expect("checked above"),
        get(REDSHIFT_DATABASE).unwrap_or_else(|| "dev".into()),
    );
    data_api.secret_arn = get(REDSHIFT_SECRET_ARN);
    if let Some(t) = timeout {
        data_api.timeout = std::time::Duration::from_secs(t as u64);
    }
    Ok(LoadConfig {
        bucket,
        warehouse: Warehouse {
            schema: get(REDSHIFT_SCHEMA).unwrap_or_else(|| "shoplake".into()),
            copy_role_arn: role,
        },
        data_api,
    })
}

/// [`ingest_settings`] from the process environment.
pub fn ingest_settings_from_env() -> Result<IngestSettings, ConfigError> {
    ingest_settings(|name| std::env::var(name).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn budget_defaults_follow_the_lambda_size() {
        assert_eq!(
            ingest_settings(env(&[])).unwrap().memory_budget_bytes,
            512 * MIB
        );
        let s = ingest_settings(env(&[(LAMBDA_MEMORY_MB, "1024")])).unwrap();
        assert_eq!(s.memory_budget_bytes, 1024 * MIB * 40 / 100);
        let s = ingest_settings(env(&[
            (LAMBDA_MEMORY_MB, "1024"),
            (MEMORY_BUDGET_MB, "256"),
            (WORK_DIR, "/scratch"),
        ]))
        .unwrap();
        assert_eq!(s.memory_budget_bytes, 256 * MIB);
        assert_eq!(s.work_dir, Some(PathBuf::from("/scratch")));
    }

    #[test]
    fn alert_config_requires_topic_and_bucket_and_checks_numbers() {
        let err =
            alert_config(env(&[(ALERT_DIGEST_THRESHOLD, "0"), (SLA_HOUR_UTC, "25")])).unwrap_err();
        assert_eq!(err.problems.len(), 4, "{err}");
        let ok = alert_config(env(&[
            (ALERT_TOPIC_ARN, "arn:t"),
            (LAKE_BUCKET, "b"),
            (ALERT_DEDUP_WINDOW_MINUTES, "60"),
        ]))
        .unwrap();
        assert_eq!(ok.settings.dedup_window, chrono::Duration::minutes(60));
        assert_eq!((ok.settings.digest_threshold, ok.settings.sla_hour), (3, 4));
    }

    #[test]
    fn load_config_needs_exactly_one_target_a_role_and_a_bucket() {
        let err = load_config(env(&[])).unwrap_err();
        assert_eq!(err.problems.len(), 3, "{err}");
        let both = load_config(env(&[
            (REDSHIFT_WORKGROUP, "w"),
            (REDSHIFT_CLUSTER_ID, "c"),
            (LAKE_BUCKET, "b"),
            (REDSHIFT_COPY_ROLE_ARN, "r"),
        ]));
        assert!(both.unwrap_err().to_string().contains("not both"));
        let ok = load_config(env(&[
            (REDSHIFT_WORKGROUP, "w"),
            (LAKE_BUCKET, "b"),
            (REDSHIFT_COPY_ROLE_ARN, "arn:r"),
        ]))
        .unwrap();
        assert_eq!(
            ok.data_api.target,
            crate::warehouse::Target::Workgroup("w".into())
        );
        assert_eq!(
            (ok.data_api.database.as_str(), ok.warehouse.schema.as_str()),
            ("dev", "shoplake")
        );
    }

    #[test]
    fn every_bad_variable_is_reported_at_once() {
        let err = ingest_settings(env(&[(MEMORY_BUDGET_MB, "lots"), (LAMBDA_MEMORY_MB, "0")]))
            .unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        assert!(err.to_string().contains(MEMORY_BUDGET_MB));
    }
}
