//! The compact function's environment.

use crate::compact::SETTLE_HOURS;
use crate::config::{ConfigError, GLUE_DATABASE, LAKE_BUCKET, optional, parse_number, required};

#[derive(Debug, Clone)]
pub struct CompactConfig {
    pub bucket: String,
    /// Partitions with fewer eligible files than this are left alone (`COMPACT_MIN_FILES`,
    /// default 8; eligible: of loaded batches, written within [`crate::compact::MAX_INPUT_AGE`]).
    pub min_files: usize,
    /// Hours without a new file after which a partition of two or more eligible files is
    /// compacted whatever `min_files` says, for a week after ([`crate::compact::SETTLED_FOR`];
    /// `COMPACT_SETTLE_HOURS`, default [`SETTLE_HOURS`]).
    pub settle_hours: u32,
    /// The Glue database whose expired silver partitions are removed (`GLUE_DATABASE`; unset:
    /// no catalog is touched).
    pub glue_database: Option<String>,
}

/// Environment variable: the fewest eligible files that make a partition worth rewriting.
pub const COMPACT_MIN_FILES: &str = "COMPACT_MIN_FILES";
/// Environment variable: the hours without a new file that make a partition settled.
pub const COMPACT_SETTLE_HOURS: &str = "COMPACT_SETTLE_HOURS";

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
        let settle_hours = parse_number(
            COMPACT_SETTLE_HOURS,
            optional(&var, COMPACT_SETTLE_HOURS),
            &mut problems,
            |n| (1..=i64::from(u32::MAX)).contains(&n),
        )
        .map_or(SETTLE_HOURS, |n| n as u32);
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        Ok(CompactConfig {
            bucket,
            min_files,
            settle_hours,
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
        assert_eq!(c.settle_hours, SETTLE_HOURS);
        let c = CompactConfig::from_env(env(&[(LAKE_BUCKET, "b"), (COMPACT_SETTLE_HOURS, "72")]))
            .unwrap();
        assert_eq!(c.settle_hours, 72);
        for bad in ["0", "-1", "two days"] {
            let err =
                CompactConfig::from_env(env(&[(LAKE_BUCKET, "b"), (COMPACT_SETTLE_HOURS, bad)]))
                    .unwrap_err();
            assert!(err.to_string().contains(COMPACT_SETTLE_HOURS), "{err}");
        }
    }
}
