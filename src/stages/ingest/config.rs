//! The ingest function's environment.

use std::path::PathBuf;

use crate::config::{ConfigError, memory_budget_bytes, parse_number};
pub use crate::config::{GLUE_DATABASE, MEMORY_BUDGET_MB, WORK_DIR};
use crate::ingest::{DEFAULT_MEMORY_BUDGET_BYTES, IngestSettings, InputLimits};

/// Longest CSV record in KiB before a file is rejected whole (default 1024).
pub const MAX_RECORD_KB: &str = "LAKE_MAX_RECORD_KB";
/// Most a gzip export may expand, as a multiple of its compressed size (default 100).
pub const MAX_GZIP_EXPANSION: &str = "LAKE_MAX_GZIP_EXPANSION";

#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub settings: IngestSettings,
    pub glue_database: Option<String>,
}

impl IngestConfig {
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(IngestConfig {
            settings: ingest_settings(&var)?,
            glue_database: var(GLUE_DATABASE).filter(|d| !d.trim().is_empty()),
        })
    }
}

/// Ingest settings from environment variables looked up through `var`.
pub fn ingest_settings(
    var: impl Fn(&str) -> Option<String>,
) -> Result<IngestSettings, ConfigError> {
    let mut problems = Vec::new();
    let budget = memory_budget_bytes(&var, &mut problems);
    let defaults = InputLimits::default();
    let limits = InputLimits {
        max_record_bytes: parse_number(MAX_RECORD_KB, var(MAX_RECORD_KB), &mut problems, |n| {
            (1..=1 << 20).contains(&n)
        })
        .map_or(defaults.max_record_bytes, |kb| kb as usize * 1024),
        max_gzip_expansion: parse_number(
            MAX_GZIP_EXPANSION,
            var(MAX_GZIP_EXPANSION),
            &mut problems,
            |n| n >= 2,
        )
        .map_or(defaults.max_gzip_expansion, |n| n as u64),
    };
    if !problems.is_empty() {
        return Err(ConfigError { problems });
    }
    Ok(IngestSettings {
        memory_budget_bytes: budget.unwrap_or(DEFAULT_MEMORY_BUDGET_BYTES),
        work_dir: var(WORK_DIR).filter(|v| !v.is_empty()).map(PathBuf::from),
        force: false,
        limits,
        progress: None,
    })
}

/// [`ingest_settings`] from the process environment (what `lake ingest` starts from).
pub fn ingest_settings_from_env() -> Result<IngestSettings, ConfigError> {
    ingest_settings(|name| std::env::var(name).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LAMBDA_MEMORY_MB, env};

    const MIB: usize = 1024 * 1024;

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
    fn every_bad_variable_is_reported_at_once() {
        let err = ingest_settings(env(&[(MEMORY_BUDGET_MB, "lots"), (LAMBDA_MEMORY_MB, "0")]))
            .unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        assert!(err.to_string().contains(MEMORY_BUDGET_MB));
    }
}
