//! The load function's environment.

use crate::config::{ConfigError, LAKE_BUCKET, parse_number};

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

/// Everything the load function needs.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub bucket: String,
    pub warehouse: crate::warehouse::Warehouse,
    pub data_api: crate::warehouse::DataApiSettings,
}

impl LoadConfig {
    /// Load function configuration: exactly one Redshift target, the COPY role, the bucket.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<LoadConfig, ConfigError> {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::env;

    #[test]
    fn load_config_needs_exactly_one_target_a_role_and_a_bucket() {
        let err = LoadConfig::from_env(env(&[])).unwrap_err();
        assert_eq!(err.problems.len(), 3, "{err}");
        let both = LoadConfig::from_env(env(&[
            (REDSHIFT_WORKGROUP, "w"),
            (REDSHIFT_CLUSTER_ID, "c"),
            (LAKE_BUCKET, "b"),
            (REDSHIFT_COPY_ROLE_ARN, "r"),
        ]));
        assert!(both.unwrap_err().to_string().contains("not both"));
        let ok = LoadConfig::from_env(env(&[
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
}
