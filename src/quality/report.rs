//! The quality report written to `quality/<dataset>/<batch_id>.json`: every check with its
//! severity, observed value, threshold and verdict, and the batch verdict that gates loading.

use serde::{Deserialize, Serialize};

use crate::contract::Severity;

pub const REPORT_VERSION: u32 = 1;
/// Most offending keys listed per check (keys only: never emails or names).
pub const MAX_OFFENDING_KEYS: usize = 10;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Pass,
    Warn,
    Fail,
    /// Not enough to judge (no history, empty batch); says why in `message`.
    Skipped,
}

/// The verdict of a whole batch: the worst of its checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The rule: file_rejected, reject_rate, completeness, key_uniqueness, referential_integrity,
    /// volume, freshness, schema_drift or distribution.
    pub check: String,
    /// The column the check looked at, for per-column rules.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub column: Option<String>,
    /// What a violation of this rule means.
    pub severity: Severity,
    pub status: CheckStatus,
    /// Machine-readable observation (a rate, a count, hours), when there is one.
    pub observed: Option<f64>,
    /// The observation as a person reads it, e.g. `7.3% (73 of 1000 rows)`.
    pub observed_text: String,
    pub threshold: String,
    pub message: String,
    pub offending_keys: Vec<String>,
    /// What the observation is made of, largest first: reject reasons with their row counts,
    /// missing parent keys with their orphan counts. Never a value of a data column beyond keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub breakdown: Vec<Tally>,
}

/// One line of a [`CheckResult::breakdown`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub what: String,
    pub count: u64,
}

/// The `n` largest of `counts` (ties by name), with the rest summed as one last line.
pub fn top_tallies<'a>(counts: impl IntoIterator<Item = (&'a str, u64)>, n: usize) -> Vec<Tally> {
    let mut all: Vec<(&str, u64)> = counts.into_iter().collect();
    all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let rest: u64 = all.iter().skip(n).map(|(_, c)| c).sum();
    let others = all.len().saturating_sub(n);
    let mut out: Vec<Tally> = all
        .into_iter()
        .take(n)
        .map(|(what, count)| Tally {
            what: what.to_owned(),
            count,
        })
        .collect();
    if others > 0 {
        out.push(Tally {
            what: format!("{others} other(s)"),
            count: rest,
        });
    }
    out
}

impl CheckResult {
    /// `reject_rate` or `completeness(country)`.
    pub fn display_name(&self) -> String {
        match &self.column {
            Some(c) => format!("{}({c})", self.check),
            None => self.check.clone(),
        }
    }

    /// As people write it: `reject rate` or `completeness(country)`.
    pub fn spoken_name(&self) -> String {
        let check = self.check.replace('_', " ");
        match &self.column {
            Some(c) => format!("{check}({c})"),
            None => check,
        }
    }
}

/// A person's decision to load a failed batch anyway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    pub by: String,
    pub reason: String,
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityReport {
    pub report_version: u32,
    pub dataset: String,
    pub batch_id: String,
    /// The day the source arrived (UTC), for subjects and deduplication.
    pub batch_date: String,
    pub source: String,
    pub manifest: String,
    pub evaluated_at: String,
    pub verdict: Verdict,
    /// Whether downstream loads may take this batch (not failed, or overridden).
    pub loadable: bool,
    /// One line for a subject: `2 of 9 checks failed (reject rate 7.3%)`.
    pub summary: String,
    pub rows_read: u64,
    pub rows_written: u64,
    pub rows_rejected: u64,
    pub duplicates_dropped: u64,
    pub rejects_file: Option<String>,
    pub quarantined_source: Option<String>,
    pub checks: Vec<CheckResult>,
    #[serde(rename = "override", skip_serializing_if = "Option::is_none", default)]
    pub override_: Option<Override>,
}

impl QualityReport {
    /// The batch verdict and its one-line summary from the checks.
    pub fn verdict_of(checks: &[CheckResult]) -> (Verdict, String) {
        let judged: Vec<&CheckResult> = checks
            .iter()
            .filter(|c| c.status != CheckStatus::Skipped)
            .collect();
        let count = |s: CheckStatus| judged.iter().filter(|c| c.status == s).count();
        let (fails, warns) = (count(CheckStatus::Fail), count(CheckStatus::Warn));
        let first = |s: CheckStatus| {
            judged
                .iter()
                .find(|c| c.status == s)
                .map(|c| match c.check.as_str() {
                    // "file rejected" says nothing alone: the reason is the useful part.
                    "file_rejected" => format!(" (file rejected: {})", c.message),
                    _ => format!(" ({} {})", c.spoken_name(), c.observed_text),
                })
                .unwrap_or_default()
        };
        let n = judged.len();
        if fails > 0 {
            (
                Verdict::Fail,
                format!("{fails} of {n} checks failed{}", first(CheckStatus::Fail)),
            )
        } else if warns > 0 {
            (
                Verdict::Warn,
                format!("{warns} of {n} checks warned{}", first(CheckStatus::Warn)),
            )
        } else {
            (Verdict::Pass, format!("all {n} checks passed"))
        }
    }
}
