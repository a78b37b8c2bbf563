//! Quality rules: the `[quality]` section of a contract. Every rule has a severity and
//! thresholds; anything not declared takes the defaults documented on each field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Column, ColumnKind};

/// How bad a failed check is: `warn` pages nobody at night, `fail` blocks the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warn,
    Fail,
}

/// Share of rejected rows: warn above `warn`, fail above `fail` (defaults 1% and 5%).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RejectRateRule {
    pub warn: f64,
    pub fail: f64,
}

impl Default for RejectRateRule {
    fn default() -> Self {
        RejectRateRule {
            warn: 0.01,
            fail: 0.05,
        }
    }
}

/// Null rate per optional column (default: at most 50%, warn), with per-column overrides.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompletenessRule {
    pub max_null_rate: f64,
    pub severity: Severity,
    pub columns: BTreeMap<String, f64>,
}

impl Default for CompletenessRule {
    fn default() -> Self {
        CompletenessRule {
            max_null_rate: 0.5,
            severity: Severity::Warn,
            columns: BTreeMap::new(),
        }
    }
}

impl CompletenessRule {
    pub fn max_for(&self, column: &str) -> f64 {
        self.columns
            .get(column)
            .copied()
            .unwrap_or(self.max_null_rate)
    }
}

/// Rows in a batch against the median of the last `history` batches: outside
/// `[low, high]` times the median is an anomaly. Skipped with fewer than `min_history` batches.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VolumeRule {
    pub history: usize,
    pub min_history: usize,
    pub low: f64,
    pub high: f64,
    pub severity: Severity,
}

impl Default for VolumeRule {
    fn default() -> Self {
        VolumeRule {
            history: 7,
            min_history: 3,
            low: 0.5,
            high: 2.0,
            severity: Severity::Warn,
        }
    }
}

/// The newest version timestamp of a batch must be younger than `max_age_hours` (default 48, warn).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FreshnessRule {
    pub max_age_hours: f64,
    pub severity: Severity,
}

impl Default for FreshnessRule {
    fn default() -> Self {
        FreshnessRule {
            max_age_hours: 48.0,
            severity: Severity::Warn,
        }
    }
}

/// Severity of extra source columns and of missing optional ones (missing required columns
/// reject the whole file, which always fails).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchemaDriftRule {
    pub extra: Severity,
    pub missing: Severity,
}

impl Default for SchemaDriftRule {
    fn default() -> Self {
        SchemaDriftRule {
            extra: Severity::Warn,
            missing: Severity::Warn,
        }
    }
}

/// Values of `column` must exist as keys of `dataset` in silver (default: warn on any orphan).
///
/// With `window_days`, a row may only reference a parent whose date partition (the parent's
/// first partition, a `utc_date` one) lies at most that many days before the row's own date
/// partition (and not after it): the check then reads only those parent partitions, so its cost
/// does not grow with history. A row whose window reaches before the oldest parent date still in
/// silver cannot be verified and is counted as such, not as an orphan.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceRule {
    pub column: String,
    pub dataset: String,
    #[serde(default)]
    pub max_orphan_rate: f64,
    #[serde(default = "warn")]
    pub severity: Severity,
    #[serde(default)]
    pub window_days: Option<u32>,
}

/// The share of each value of an enum column may move at most `max_shift` (absolute, e.g. 0.15
/// for 15 points) from its mean over the volume rule's history.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistributionRule {
    pub column: String,
    pub max_shift: f64,
    #[serde(default = "warn")]
    pub severity: Severity,
}

fn warn() -> Severity {
    Severity::Warn
}

/// All quality rules of one dataset.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QualityRules {
    pub reject_rate: RejectRateRule,
    pub completeness: CompletenessRule,
    pub volume: VolumeRule,
    pub freshness: FreshnessRule,
    pub schema_drift: SchemaDriftRule,
    pub references: Vec<ReferenceRule>,
    pub distribution: Vec<DistributionRule>,
}

impl QualityRules {
    /// Problems with the rules given the contract's columns (cross-dataset references are
    /// checked by the registry).
    pub(super) fn problems(&self, columns: &[Column]) -> Vec<String> {
        let mut out = Vec::new();
        let rate = |name: &str, v: f64, out: &mut Vec<String>| {
            if !(0.0..=1.0).contains(&v) {
                out.push(format!("quality.{name} must be between 0 and 1, got {v}"));
            }
        };
        rate("reject_rate.warn", self.reject_rate.warn, &mut out);
        rate("reject_rate.fail", self.reject_rate.fail, &mut out);
        if self.reject_rate.warn > self.reject_rate.fail {
            out.push("quality.reject_rate.warn must not exceed fail".into());
        }
        rate(
            "completeness.max_null_rate",
            self.completeness.max_null_rate,
            &mut out,
        );
        let find = |name: &str| columns.iter().find(|c| c.name == name);
        for (name, v) in &self.completeness.columns {
            rate(&format!("completeness.columns.{name}"), *v, &mut out);
            match find(name) {
                Some(c) if !c.required => {}
                Some(_) => out.push(format!(
                    "quality.completeness: `{name}` is required, so never null"
                )),
                None => out.push(format!("quality.completeness: unknown column `{name}`")),
            }
        }
        let v = &self.volume;
        if v.history == 0
            || v.min_history == 0
            || v.min_history > v.history
            || v.low < 0.0
            || v.low >= v.high
        {
            out.push("quality.volume needs 0 < min_history <= history and 0 <= low < high".into());
        }
        if self.freshness.max_age_hours <= 0.0 {
            out.push("quality.freshness.max_age_hours must be positive".into());
        }
        for r in &self.references {
            rate(
                &format!("references.{}.max_orphan_rate", r.column),
                r.max_orphan_rate,
                &mut out,
            );
            if find(&r.column).is_none() {
                out.push(format!("quality.references: unknown column `{}`", r.column));
            }
        }
        for d in &self.distribution {
            rate(
                &format!("distribution.{}.max_shift", d.column),
                d.max_shift,
                &mut out,
            );
            if !matches!(
                find(&d.column).map(|c| &c.kind),
                Some(ColumnKind::Enum { .. })
            ) {
                out.push(format!(
                    "quality.distribution: `{}` is not an enum column",
                    d.column
                ));
            }
        }
        out
    }
}
