//! What every stage's configuration shares: the error that reports all problems at once (so a
//! deploy is fixed in one go), number parsing, and the variables more than one stage reads.
//! Each stage's own variables are named in its `config.rs`.

/// Set by Lambda: the function's memory size in MiB.
pub const LAMBDA_MEMORY_MB: &str = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE";
/// Memory budget of a stage's data, in MiB (default: 40% of the Lambda's memory, else the
/// stage's own default).
pub const MEMORY_BUDGET_MB: &str = "LAKE_MEMORY_BUDGET_MB";
/// Share of a Lambda's memory given to a stage's data; the rest is runtime, encoders and I/O.
const LAMBDA_BUDGET_PERCENT: usize = 40;
const MIB: usize = 1024 * 1024;
/// The data bucket of the stages that are not told it by an event (aggregate, load, alert).
pub const LAKE_BUCKET: &str = "LAKE_BUCKET";
/// Scratch directory for spill, staged and mirrored files (default: the system temp dir,
/// `/tmp` in Lambda).
pub const WORK_DIR: &str = "LAKE_WORK_DIR";
/// Glue database partitions are registered in (none: no registration).
pub const GLUE_DATABASE: &str = "GLUE_DATABASE";

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {}", .problems.join("; "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

/// A positive whole number of MiB, or a problem naming the variable.
pub fn parse_mib(name: &str, value: Option<String>, problems: &mut Vec<String>) -> Option<usize> {
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

/// The memory budget in bytes [`MEMORY_BUDGET_MB`] or the Lambda's memory size allow (None:
/// neither is set; problems noted for bad values).
pub fn memory_budget_bytes(
    var: &impl Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> Option<usize> {
    let budget = parse_mib(MEMORY_BUDGET_MB, var(MEMORY_BUDGET_MB), problems);
    let lambda_memory = parse_mib(LAMBDA_MEMORY_MB, var(LAMBDA_MEMORY_MB), problems);
    match (budget, lambda_memory) {
        (Some(mb), _) => Some(mb * MIB),
        (None, Some(mb)) => Some(mb * MIB * LAMBDA_BUDGET_PERCENT / 100),
        (None, None) => None,
    }
}

/// A whole number that passes `valid`, or a problem naming the variable.
pub fn parse_number(
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

/// A variable that must be set and not blank; a problem otherwise.
pub fn required(
    var: &impl Fn(&str) -> Option<String>,
    name: &str,
    problems: &mut Vec<String>,
) -> String {
    match var(name).filter(|v| !v.trim().is_empty()) {
        Some(v) => v,
        None => {
            problems.push(format!("{name} is required"));
            String::new()
        }
    }
}

/// A variable that is set and not blank.
pub fn optional(var: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    var(name).filter(|v| !v.trim().is_empty())
}

#[cfg(test)]
pub(crate) fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: std::collections::HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}
