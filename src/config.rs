//! Configuration read once from the environment into typed structs. Every variable is named in
//! a constant here; all problems are reported together so a deploy is fixed in one go.

use std::path::PathBuf;

use crate::ingest::{DEFAULT_MEMORY_BUDGET_BYTES, IngestSettings};

/// Memory budget per ingested file, in MiB (default: 40% of the Lambda's memory, else 512).
pub const MEMORY_BUDGET_MB: &str = "LAKE_MEMORY_BUDGET_MB";
/// Scratch directory for spill and staged files (default: the system temp dir, `/tmp` in Lambda).
pub const WORK_DIR: &str = "LAKE_WORK_DIR";
/// Set by Lambda: the function's memory size in MiB.
pub const LAMBDA_MEMORY_MB: &str = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE";

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
    fn every_bad_variable_is_reported_at_once() {
        let err = ingest_settings(env(&[(MEMORY_BUDGET_MB, "lots"), (LAMBDA_MEMORY_MB, "0")]))
            .unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        assert!(err.to_string().contains(MEMORY_BUDGET_MB));
    }
}
