//! The checks, as pure functions of what is known about a batch: its manifest, the manifests
//! of earlier batches, and facts read from silver. No I/O here, so every edge case is a unit test.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use super::report::{CheckResult, CheckStatus, MAX_OFFENDING_KEYS, top_tallies};
use crate::contract::quality::ReferenceRule;
use crate::contract::{ColumnKind, Contract, Severity};
use crate::manifest::{BatchStatus, Manifest};
use crate::values;

/// Orphans found for one reference rule.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceFacts {
    pub rule: ReferenceRule,
    /// Rows of the batch whose reference was looked up.
    pub checked: u64,
    pub orphans: u64,
    /// Rows whose parent was not found where it may still be but cannot be looked for: their
    /// reference window reaches before the retained silver history. Neither passed nor orphans.
    pub unverifiable: u64,
    /// Keys of the batch's orphan rows (at most [`MAX_OFFENDING_KEYS`]).
    pub sample: Vec<String>,
    /// The referenced values not found, with the orphan rows naming each (`None`: no value).
    pub missing: HashMap<Option<String>, u64>,
}

/// Everything the checks look at.
#[derive(Debug)]
pub struct Facts<'a> {
    pub contract: &'a Contract,
    pub manifest: &'a Manifest,
    /// Earlier successful batches of the dataset, oldest first.
    pub history: &'a [Manifest],
    /// Keys that appear more than once in the batch's silver files (`None`: not read).
    pub duplicate_keys: Option<Vec<String>>,
    pub references: Vec<ReferenceFacts>,
    pub now: DateTime<Utc>,
}

pub fn pct(rate: f64) -> String {
    let p = rate * 100.0;
    if p != 0.0 && p.abs() < 0.1 {
        format!("{p:.2}%")
    } else {
        format!("{p:.1}%")
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn status_for(violated: bool, severity: Severity) -> CheckStatus {
    match (violated, severity) {
        (false, _) => CheckStatus::Pass,
        (true, Severity::Warn) => CheckStatus::Warn,
        (true, Severity::Fail) => CheckStatus::Fail,
    }
}

struct Check {
    check: &'static str,
    column: Option<String>,
    severity: Severity,
}

impl Check {
    fn new(check: &'static str, severity: Severity) -> Self {
        Check {
            check,
            column: None,
            severity,
        }
    }
    fn on(mut self, column: &str) -> Self {
        self.column = Some(column.to_owned());
        self
    }
    fn result(
        self,
        status: CheckStatus,
        observed: Option<f64>,
        observed_text: String,
        threshold: String,
        message: String,
    ) -> CheckResult {
        CheckResult {
            check: self.check.into(),
            column: self.column,
            severity: self.severity,
            status,
            observed,
            observed_text,
            threshold,
            message,
            offending_keys: vec![],
            breakdown: vec![],
        }
    }
    fn skipped(self, threshold: String, why: &str) -> CheckResult {
        self.result(
            CheckStatus::Skipped,
            None,
            "n/a".into(),
            threshold,
            format!("skipped: {why}"),
        )
    }
}

/// Runs every check of the contract's rules against the batch.
pub fn evaluate(f: &Facts<'_>) -> Vec<CheckResult> {
    let m = f.manifest;
    let mut out = vec![file_rejected(m), reject_rate(f)];
    out.extend(schema_drift(f));
    if m.status == BatchStatus::Rejected {
        // Nothing was written: the remaining checks have no rows to look at.
        return out;
    }
    out.extend(completeness(f));
    out.push(key_uniqueness(f));
    out.extend(f.references.iter().map(|r| referential_integrity(m, r)));
    out.push(volume(f));
    out.push(freshness(f));
    out.extend(distribution(f));
    out
}

fn file_rejected(m: &Manifest) -> CheckResult {
    let c = Check::new("file_rejected", Severity::Fail);
    match m.status {
        BatchStatus::Rejected => {
            let why = m.error.clone().unwrap_or_default();
            c.result(
                CheckStatus::Fail,
                Some(1.0),
                "file rejected".into(),
                "file readable with all required columns".into(),
                why,
            )
        }
        BatchStatus::Succeeded => c.result(
            CheckStatus::Pass,
            Some(0.0),
            "file accepted".into(),
            "file readable with all required columns".into(),
            "the file was read".into(),
        ),
    }
}

fn reject_rate(f: &Facts<'_>) -> CheckResult {
    let (m, rule) = (f.manifest, f.contract.quality.reject_rate);
    let rate = ratio(m.rows_rejected, m.rows_read);
    let threshold = format!("warn > {}, fail > {}", pct(rule.warn), pct(rule.fail));
    let (status, severity) = if rate > rule.fail {
        (CheckStatus::Fail, Severity::Fail)
    } else if rate > rule.warn {
        (CheckStatus::Warn, Severity::Warn)
    } else {
        (CheckStatus::Pass, Severity::Fail)
    };
    let c = Check::new("reject_rate", severity);
    let message = format!("{} of {} rows rejected", m.rows_rejected, m.rows_read);
    let mut result = c.result(status, Some(rate), pct(rate), threshold, message);
    result.breakdown = top_tallies(
        m.reject_reasons.iter().map(|(r, n)| (r.as_str(), *n)),
        TOP_REASONS,
    );
    result
}

/// Reject reasons a report (and its email) lists by name.
const TOP_REASONS: usize = 5;

fn schema_drift(f: &Facts<'_>) -> Vec<CheckResult> {
    let (drift, rule) = (&f.manifest.schema_drift, f.contract.quality.schema_drift);
    let list = |cols: &[String]| {
        if cols.is_empty() {
            "none".to_owned()
        } else {
            cols.join(", ")
        }
    };
    let extra = Check::new("schema_drift", rule.extra)
        .on("extra_columns")
        .result(
            status_for(!drift.extra_columns.is_empty(), rule.extra),
            Some(drift.extra_columns.len() as f64),
            list(&drift.extra_columns),
            "no columns beyond the contract".into(),
            format!(
                "{} column(s) in the source header that the contract does not know (ignored)",
                drift.extra_columns.len()
            ),
        );
    let missing = Check::new("schema_drift", rule.missing)
        .on("missing_columns")
        .result(
            status_for(!drift.missing_columns.is_empty(), rule.missing),
            Some(drift.missing_columns.len() as f64),
            list(&drift.missing_columns),
            "every optional contract column present".into(),
            format!(
                "{} optional column(s) absent from the source header (stored as null)",
                drift.missing_columns.len()
            ),
        );
    vec![extra, missing]
}

fn completeness(f: &Facts<'_>) -> Vec<CheckResult> {
    let (m, rule) = (f.manifest, &f.contract.quality.completeness);
    m.column_stats
        .null_counts
        .iter()
        .map(|(column, &nulls)| {
            let max = rule.max_for(column);
            let c = Check::new("completeness", rule.severity).on(column);
            let threshold = format!("null rate <= {}", pct(max));
            if m.rows_written == 0 {
                return c.skipped(threshold, "no rows written");
            }
            let rate = ratio(nulls, m.rows_written);
            let message = format!(
                "{nulls} of {} written rows have no {column}",
                m.rows_written
            );
            c.result(
                status_for(rate > max, rule.severity),
                Some(rate),
                pct(rate),
                threshold,
                message,
            )
        })
        .collect()
}

fn key_uniqueness(f: &Facts<'_>) -> CheckResult {
    let key = &f.contract.key_column().name;
    let c = Check::new("key_uniqueness", Severity::Fail).on(key);
    let threshold = "every key once per batch".to_owned();
    let Some(dups) = &f.duplicate_keys else {
        return c.skipped(threshold, "silver files not read");
    };
    let mut r = c.result(
        status_for(!dups.is_empty(), Severity::Fail),
        Some(dups.len() as f64),
        format!("{} duplicate key(s)", dups.len()),
        threshold,
        format!(
            "{} key(s) appear more than once in the batch's silver files",
            dups.len()
        ),
    );
    r.offending_keys = dups.iter().take(MAX_OFFENDING_KEYS).cloned().collect();
    r
}

fn referential_integrity(m: &Manifest, facts: &ReferenceFacts) -> CheckResult {
    let rule = &facts.rule;
    let c = Check::new("referential_integrity", rule.severity).on(&rule.column);
    let threshold = format!(
        "orphan rate <= {} ({} must exist in {})",
        pct(rule.max_orphan_rate),
        rule.column,
        rule.dataset
    );
    if facts.checked == 0 {
        return c.skipped(threshold, "no rows written");
    }
    let rate = ratio(facts.orphans, facts.checked);
    let message = format!(
        "{} of {} rows of batch {} reference a {} value missing from {}",
        facts.orphans, facts.checked, m.batch_id, rule.column, rule.dataset
    );
    let mut message = message;
    if let Some(days) = rule.window_days {
        message.push_str(&format!(
            " (looked up among {} dated at most {days} days before the row)",
            rule.dataset
        ));
    }
    let violated = rate > rule.max_orphan_rate;
    let status = if !violated && facts.unverifiable > 0 {
        // Never passed silently: rows that could not be looked up are reported.
        CheckStatus::Warn
    } else {
        status_for(violated, rule.severity)
    };
    let mut r = c.result(status, Some(rate), pct(rate), threshold, message);
    if facts.unverifiable > 0 {
        r.message.push_str(&format!(
            "; {} row(s) unverifiable: their window reaches before the {} days of retained {} history",
            facts.unverifiable,
            crate::layout::SILVER_RETENTION_DAYS,
            rule.dataset
        ));
    }
    r.offending_keys = facts
        .sample
        .iter()
        .take(MAX_OFFENDING_KEYS)
        .cloned()
        .collect();
    if !facts.missing.is_empty() {
        r.message.push_str(&format!(
            "; {} distinct {} value(s) missing",
            facts.missing.len(),
            rule.column
        ));
    }
    // The referenced values are the parent's keys, which are never personal data.
    r.breakdown = top_tallies(
        facts
            .missing
            .iter()
            .map(|(k, n)| (k.as_deref().unwrap_or("(no value)"), *n)),
        MAX_OFFENDING_KEYS,
    );
    r
}

fn recent<'a>(f: &'a Facts<'_>) -> &'a [Manifest] {
    let n = f.contract.quality.volume.history;
    &f.history[f.history.len().saturating_sub(n)..]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn volume(f: &Facts<'_>) -> CheckResult {
    let rule = f.contract.quality.volume;
    let c = Check::new("volume", rule.severity);
    let threshold = format!(
        "{:.0}% to {:.0}% of the median of the last {} batches",
        rule.low * 100.0,
        rule.high * 100.0,
        rule.history
    );
    let history = recent(f);
    if history.len() < rule.min_history {
        return c.skipped(
            threshold,
            &format!(
                "only {} earlier batch(es), at least {} needed",
                history.len(),
                rule.min_history
            ),
        );
    }
    let med = median(history.iter().map(|m| m.rows_read as f64).collect());
    let rows = f.manifest.rows_read as f64;
    let share = if med == 0.0 {
        if rows == 0.0 { 1.0 } else { f64::INFINITY }
    } else {
        rows / med
    };
    let message = format!(
        "{rows} rows against a median of {med} over {} batches",
        history.len()
    );
    let observed = if share.is_finite() {
        pct(share)
    } else {
        "n/a (median 0)".into()
    };
    c.result(
        status_for(share < rule.low || share > rule.high, rule.severity),
        share.is_finite().then_some(share),
        observed,
        threshold,
        message,
    )
}

fn freshness(f: &Facts<'_>) -> CheckResult {
    let rule = f.contract.quality.freshness;
    let c = Check::new("freshness", rule.severity);
    let threshold = format!("newest updated_at younger than {}h", rule.max_age_hours);
    let newest = f
        .manifest
        .column_stats
        .max_version
        .as_deref()
        .and_then(|t| values::parse_timestamp(t).ok());
    let Some(newest) = newest else {
        return c.skipped(threshold, "no rows written");
    };
    let hours = (f.now.timestamp_micros() - newest) as f64 / 3.6e9;
    let message = format!(
        "newest {} in the batch is {}",
        f.contract.columns[f.contract.version].name,
        values::format_timestamp(newest)
    );
    c.result(
        status_for(hours > rule.max_age_hours, rule.severity),
        Some(hours),
        format!("{hours:.1}h old"),
        threshold,
        message,
    )
}

fn distribution(f: &Facts<'_>) -> Vec<CheckResult> {
    let m = f.manifest;
    let history = recent(f);
    let min_history = f.contract.quality.volume.min_history;
    f.contract
        .quality
        .distribution
        .iter()
        .map(|rule| {
            let c = Check::new("distribution", rule.severity).on(&rule.column);
            let threshold = format!(
                "each value's share within {} points of its recent mean",
                rule.max_shift * 100.0
            );
            let shares = |mf: &Manifest| -> Option<BTreeMap<String, f64>> {
                let counts = mf.column_stats.value_counts.get(&rule.column)?;
                let total: u64 = counts.values().sum();
                (total > 0).then(|| {
                    counts
                        .iter()
                        .map(|(v, n)| (v.clone(), *n as f64 / total as f64))
                        .collect()
                })
            };
            let Some(now) = shares(m) else {
                return c.skipped(threshold, "no rows written");
            };
            let past: Vec<BTreeMap<String, f64>> = history.iter().filter_map(shares).collect();
            if past.len() < min_history {
                return c.skipped(
                    threshold,
                    &format!(
                        "only {} earlier batch(es), at least {min_history} needed",
                        past.len()
                    ),
                );
            }
            let values: Vec<&str> = match &f.contract.columns
                [f.contract.column_index(&rule.column).unwrap_or(0)]
            .kind
            {
                ColumnKind::Enum { values } => values.iter().map(String::as_str).collect(),
                _ => now.keys().map(String::as_str).collect(),
            };
            let mut worst = (0.0f64, String::new(), 0.0, 0.0);
            for v in values {
                let current = now.get(v).copied().unwrap_or(0.0);
                let mean = past
                    .iter()
                    .map(|p| p.get(v).copied().unwrap_or(0.0))
                    .sum::<f64>()
                    / past.len() as f64;
                if (current - mean).abs() > worst.0 {
                    worst = ((current - mean).abs(), v.to_owned(), current, mean);
                }
            }
            let (shift, value, current, mean) = worst;
            let observed = if value.is_empty() {
                "no shift".to_owned()
            } else {
                format!("{value} {} (mean {})", pct(current), pct(mean))
            };
            let message = format!(
                "largest shift: {} points for {}",
                (shift * 1000.0).round() / 10.0,
                if value.is_empty() { "-" } else { &value }
            );
            c.result(
                status_for(shift > rule.max_shift, rule.severity),
                Some(shift),
                observed,
                threshold,
                message,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests;
