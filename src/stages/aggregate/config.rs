//! The aggregate function's environment.

use std::path::PathBuf;

use crate::config::{ConfigError, GLUE_DATABASE, LAKE_BUCKET, WORK_DIR, optional, required};

#[derive(Debug, Clone)]
pub struct AggregateConfig {
    pub bucket: String,
    /// Months written are registered in this Glue database when set.
    pub glue_database: Option<String>,
    /// Where silver is mirrored (`<LAKE_WORK_DIR>/silver`, default `/tmp/silver`).
    pub work_dir: PathBuf,
}

impl AggregateConfig {
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let bucket = required(&var, LAKE_BUCKET, &mut problems);
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        let work = optional(&var, WORK_DIR).unwrap_or_else(|| "/tmp".into());
        Ok(AggregateConfig {
            bucket,
            glue_database: optional(&var, GLUE_DATABASE),
            work_dir: PathBuf::from(work).join("silver"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::env;

    #[test]
    fn the_bucket_is_required_and_the_mirror_sits_in_the_work_dir() {
        assert!(AggregateConfig::from_env(env(&[])).is_err());
        let c =
            AggregateConfig::from_env(env(&[(LAKE_BUCKET, "b"), (GLUE_DATABASE, " ")])).unwrap();
        assert_eq!((c.bucket.as_str(), c.glue_database), ("b", None));
        assert_eq!(c.work_dir, PathBuf::from("/tmp/silver"));
    }
}
