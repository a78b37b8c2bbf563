//! The aggregate function's environment.

use std::path::PathBuf;

use crate::config::{
    ConfigError, GLUE_DATABASE, LAKE_BUCKET, WORK_DIR, memory_budget_bytes, optional, required,
};
use crate::gold::incremental::group_bytes;

/// Without a Lambda or [`crate::config::MEMORY_BUDGET_MB`]: a nightly recompute's budget.
pub const DEFAULT_MEMORY_BUDGET_BYTES: usize = 1024 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct AggregateConfig {
    pub bucket: String,
    /// Months written are registered in this Glue database when set.
    pub glue_database: Option<String>,
    /// Where silver is mirrored (`<LAKE_WORK_DIR>/silver`, default `/tmp/silver`).
    pub work_dir: PathBuf,
    /// The most silver (bytes on disk) a nightly run recomputes at once, from the memory budget.
    pub group_bytes: u64,
}

impl AggregateConfig {
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let bucket = required(&var, LAKE_BUCKET, &mut problems);
        let group_bytes = group_bytes_of(&var, &mut problems);
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        let work = optional(&var, WORK_DIR).unwrap_or_else(|| "/tmp".into());
        Ok(AggregateConfig {
            bucket,
            glue_database: optional(&var, GLUE_DATABASE),
            work_dir: PathBuf::from(work).join("silver"),
            group_bytes,
        })
    }
}

/// The nightly group size the memory budget allows (what `lake aggregate` reads too).
pub fn nightly_group_bytes(var: impl Fn(&str) -> Option<String>) -> Result<u64, ConfigError> {
    let mut problems = Vec::new();
    let bytes = group_bytes_of(&var, &mut problems);
    if problems.is_empty() {
        Ok(bytes)
    } else {
        Err(ConfigError { problems })
    }
}

fn group_bytes_of(var: &impl Fn(&str) -> Option<String>, problems: &mut Vec<String>) -> u64 {
    group_bytes(memory_budget_bytes(var, problems).unwrap_or(DEFAULT_MEMORY_BUDGET_BYTES))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LAMBDA_MEMORY_MB, MEMORY_BUDGET_MB, env};

    #[test]
    fn the_bucket_is_required_and_the_mirror_sits_in_the_work_dir() {
        assert!(AggregateConfig::from_env(env(&[])).is_err());
        let c =
            AggregateConfig::from_env(env(&[(LAKE_BUCKET, "b"), (GLUE_DATABASE, " ")])).unwrap();
        assert_eq!((c.bucket.as_str(), c.glue_database), ("b", None));
        assert_eq!(c.work_dir, PathBuf::from("/tmp/silver"));
        assert_eq!(c.group_bytes, group_bytes(DEFAULT_MEMORY_BUDGET_BYTES));
    }

    #[test]
    fn the_nightly_groups_follow_the_memory_budget() {
        let with = |vars: &[(&str, &str)]| {
            let mut all = vec![(LAKE_BUCKET, "b")];
            all.extend_from_slice(vars);
            AggregateConfig::from_env(env(&all))
        };
        let mib = 1024 * 1024;
        let lambda = with(&[(LAMBDA_MEMORY_MB, "3008")]).unwrap();
        assert_eq!(lambda.group_bytes, group_bytes(3008 * mib * 40 / 100));
        let set = with(&[(LAMBDA_MEMORY_MB, "3008"), (MEMORY_BUDGET_MB, "256")]).unwrap();
        assert_eq!(set.group_bytes, group_bytes(256 * mib));
        let err = with(&[(MEMORY_BUDGET_MB, "0")]).unwrap_err();
        assert!(err.to_string().contains(MEMORY_BUDGET_MB), "{err}");
    }
}
