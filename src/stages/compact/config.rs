//! The compact function's environment.

use crate::config::{ConfigError, GLUE_DATABASE, LAKE_BUCKET, optional, required};

#[derive(Debug, Clone)]
pub struct CompactConfig {
    pub bucket: String,
    /// Partitions with fewer eligible files than this are left alone (`COMPACT_MIN_FILES`,
    /// default 8).
    pub min_files: usize,
    /// The Glue database whose expired silver partitions are removed (`GLUE_DATABASE`; unset:
    /// no catalog is touched).
    pub glue_database: Option<String>,
}

/// Environment variable: the fewest eligible files that make a partition worth rewriting.
pub const COMPACT_MIN_FILES: &str = "COMPACT_MIN_FILES";

impl CompactConfig {
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let bucket = required(&var, LAKE_BUCKET, &mut problems);
        let min_files = match optional(&var, COMPACT_MIN_FILES) {
            None => 8,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if n >= 2 => n,
                _ => {
                    problems.push(format!(
                        "{COMPACT_MIN_FILES} must be a whole number of at least 2, got {text:?}"
                    ));
                    8
                }
            },
        };
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        Ok(CompactConfig {
            bucket,
            min_files,
            glue_database: optional(&var, GLUE_DATABASE),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::env;

    #[test]
    fn the_bucket_is_required_and_min_files_is_checked() {
        assert!(CompactConfig::from_env(env(&[])).is_err());
        let c = CompactConfig::from_env(env(&[(LAKE_BUCKET, "b")])).unwrap();
        assert_eq!((c.bucket.as_str(), c.min_files), ("b", 8));
        let c =
            CompactConfig::from_env(env(&[(LAKE_BUCKET, "b"), (COMPACT_MIN_FILES, "20")])).unwrap();
        assert_eq!(c.min_files, 20);
        assert_eq!(c.glue_database, None);
        let c = CompactConfig::from_env(env(&[(LAKE_BUCKET, "b"), (GLUE_DATABASE, "db")])).unwrap();
        assert_eq!(c.glue_database.as_deref(), Some("db"));
        let err = CompactConfig::from_env(env(&[(LAKE_BUCKET, "b"), (COMPACT_MIN_FILES, "1")]))
            .unwrap_err();
        assert!(err.to_string().contains(COMPACT_MIN_FILES), "{err}");
    }
}
