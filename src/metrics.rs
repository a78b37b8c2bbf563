//! CloudWatch metrics in the Embedded Metric Format (EMF): each invocation's outcome becomes one
//! JSON line on stdout, which CloudWatch Logs turns into metrics for the dashboard and alarms.
//! No PutMetricData call, so no extra latency, IAM permission or failure mode in the functions.
//!
//! Dimensions are `Stage` and `Dataset` (each metric is also rolled up by `Stage` alone). Values
//! are counts only; row contents never appear here.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Map, Value, json};

use crate::alert::AlertOutcome;
use crate::gold::AggregateReport;
use crate::handlers::alert::AlertResponse;
use crate::handlers::ingest::IngestResponse;
use crate::handlers::quality::QualityResponse;
use crate::manifest::BatchStatus;
use crate::quality::{CheckStatus, Verdict};
use crate::warehouse::{BatchLoad, LoadReport};

/// CloudWatch namespace of the metrics (default `shoplake`); the template sets one per stage.
pub const NAMESPACE_VAR: &str = "LAKE_METRICS_NAMESPACE";
const DEFAULT_NAMESPACE: &str = "shoplake";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns emission on; only Lambda processes do this (the CLI's stdout is for its results).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Counts for one stage and dataset, emitted as one EMF document.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSet {
    pub stage: &'static str,
    pub dataset: String,
    pub values: Vec<(&'static str, u64)>,
}

impl MetricSet {
    fn new(stage: &'static str, dataset: impl Into<String>) -> Self {
        Self {
            stage,
            dataset: dataset.into(),
            values: Vec::new(),
        }
    }

    fn with(mut self, name: &'static str, value: u64) -> Self {
        self.values.push((name, value));
        self
    }

    /// The EMF document: `_aws` metadata plus the dimension and metric values as top-level members.
    pub fn to_emf(&self, namespace: &str, timestamp_ms: i64) -> Value {
        let metrics: Vec<Value> = self
            .values
            .iter()
            .map(|(name, _)| json!({ "Name": name, "Unit": "Count" }))
            .collect();
        let mut doc = Map::new();
        doc.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": namespace,
                    "Dimensions": [["Stage", "Dataset"], ["Stage"]],
                    "Metrics": metrics,
                }],
            }),
        );
        doc.insert("Stage".into(), self.stage.into());
        doc.insert("Dataset".into(), self.dataset.clone().into());
        for (name, value) in &self.values {
            doc.insert((*name).into(), (*value).into());
        }
        Value::Object(doc)
    }
}

/// Writes each set as one EMF line on stdout when [`enable`]d. A failed write loses a data
/// point, never the invocation, so it is ignored.
pub fn emit(sets: &[MetricSet]) {
    if !ENABLED.load(Ordering::Relaxed) || sets.is_empty() {
        return;
    }
    let namespace = std::env::var(NAMESPACE_VAR)
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| DEFAULT_NAMESPACE.into());
    let now = chrono::Utc::now().timestamp_millis();
    let mut out = std::io::stdout().lock();
    for set in sets {
        let _ = writeln!(out, "{}", set.to_emf(&namespace, now));
    }
}

fn flag(condition: bool) -> u64 {
    u64::from(condition)
}

/// Rows in, out, rejected and dropped per ingested file. Replays of an already-ingested file
/// count as `Replays` only, so redelivered events do not inflate the row counts.
pub fn for_ingest(response: &IngestResponse) -> Vec<MetricSet> {
    response
        .batches
        .iter()
        .map(|b| {
            let set = MetricSet::new("ingest", &b.dataset);
            if b.replayed {
                return set.with("Replays", 1);
            }
            set.with("RowsRead", b.rows_read)
                .with("RowsWritten", b.rows_written)
                .with("RowsRejected", b.rows_rejected)
                .with("DuplicatesDropped", b.duplicates_dropped)
                .with("FilesRejected", flag(b.status == BatchStatus::Rejected))
                .with("Batches", 1)
        })
        .collect()
}

/// One set per checked batch: verdict counts and the number of failing and warning checks.
pub fn for_quality(response: &QualityResponse) -> Vec<MetricSet> {
    response
        .reports
        .iter()
        .map(|r| {
            let count = |s: CheckStatus| r.checks.iter().filter(|c| c.status == s).count() as u64;
            MetricSet::new("quality", &r.dataset)
                .with("BatchesChecked", 1)
                .with("BatchesFailed", flag(r.verdict == Verdict::Fail))
                .with("BatchesWarned", flag(r.verdict == Verdict::Warn))
                .with("ChecksFailed", count(CheckStatus::Fail))
                .with("ChecksWarned", count(CheckStatus::Warn))
                .with("RowsChecked", r.rows_written)
        })
        .collect()
}

pub fn for_aggregate(report: &AggregateReport) -> Vec<MetricSet> {
    vec![
        MetricSet::new("aggregate", "daily_kpis")
            .with("KpiRows", report.kpi_rows as u64)
            .with("MonthsWritten", report.months_written.len() as u64)
            .with("NewBatches", report.new_batches as u64),
    ]
}

/// Per dataset: batches loaded and skipped and rows loaded; `LoadSucceeded` backs the
/// "no successful load today" alarm.
pub fn for_load(report: &LoadReport) -> Vec<MetricSet> {
    // dataset → (batches loaded, batches skipped, rows loaded)
    let mut per_dataset: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
    for load in &report.batches {
        match load {
            BatchLoad::Loaded { dataset, rows, .. } => {
                let entry = per_dataset.entry(dataset).or_default();
                entry.0 += 1;
                entry.2 += rows;
            }
            BatchLoad::Skipped { dataset, .. } => per_dataset.entry(dataset).or_default().1 += 1,
        }
    }
    let mut sets: Vec<MetricSet> = per_dataset
        .into_iter()
        .map(|(dataset, (loaded, skipped, rows))| {
            MetricSet::new("load", dataset)
                .with("BatchesLoaded", loaded)
                .with("BatchesSkipped", skipped)
                .with("RowsLoaded", rows)
        })
        .collect();
    sets.push(
        MetricSet::new("load", "all")
            .with("LoadSucceeded", 1)
            .with("MonthsLoaded", report.months.len() as u64),
    );
    sets
}

/// Alerts sent, suppressed and held, and `SlaBreaches` (an SLA alert in any of those states):
/// the SLA alarm fires on it even if the email itself is deduplicated.
pub fn for_alert(response: &AlertResponse) -> Vec<MetricSet> {
    let mut sent = 0;
    let mut suppressed = 0;
    let mut queued = 0;
    let mut sla = 0;
    for outcome in &response.outcomes {
        let alert_type = match outcome {
            AlertOutcome::Sent { alert_type, .. } => {
                sent += 1;
                Some(alert_type)
            }
            AlertOutcome::DigestSent { .. } => {
                sent += 1;
                None
            }
            AlertOutcome::Suppressed { alert_type, .. } => {
                suppressed += 1;
                Some(alert_type)
            }
            AlertOutcome::Queued { alert_type, .. } => {
                queued += 1;
                Some(alert_type)
            }
            _ => None,
        };
        sla += flag(alert_type.is_some_and(|t| t == "sla_breach"));
    }
    vec![
        MetricSet::new("alert", "all")
            .with("AlertsSent", sent)
            .with("AlertsSuppressed", suppressed)
            .with("AlertsQueued", queued)
            .with("SlaBreaches", sla),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_document_declares_every_value_it_carries() {
        let set = MetricSet::new("ingest", "orders")
            .with("RowsRead", 10)
            .with("RowsRejected", 2);
        let doc = set.to_emf("shoplake/prod", 1_700_000_000_000);
        let meta = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(meta["Namespace"], "shoplake/prod");
        assert_eq!(doc["_aws"]["Timestamp"], 1_700_000_000_000_i64);
        for dims in meta["Dimensions"].as_array().unwrap() {
            for d in dims.as_array().unwrap() {
                assert!(
                    doc.get(d.as_str().unwrap()).is_some(),
                    "dimension {d} has no value"
                );
            }
        }
        let names: Vec<&str> = meta["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["RowsRead", "RowsRejected"]);
        assert_eq!(doc["RowsRead"], 10);
        assert_eq!(doc["RowsRejected"], 2);
        assert_eq!(doc["Stage"], "ingest");
        assert_eq!(doc["Dataset"], "orders");
    }

    #[test]
    fn load_metrics_add_up_per_dataset() {
        let report = LoadReport {
            batches: vec![
                BatchLoad::Loaded {
                    dataset: "orders".into(),
                    batch_id: "a".into(),
                    rows: 5,
                    statements: 3,
                },
                BatchLoad::Loaded {
                    dataset: "orders".into(),
                    batch_id: "b".into(),
                    rows: 7,
                    statements: 3,
                },
                BatchLoad::Skipped {
                    dataset: "orders".into(),
                    batch_id: "c".into(),
                    reason: "quality gate".into(),
                },
            ],
            months: vec!["2026-11".into()],
        };
        let sets = for_load(&report);
        assert_eq!(
            sets[0].values,
            [
                ("BatchesLoaded", 2),
                ("BatchesSkipped", 1),
                ("RowsLoaded", 12)
            ]
        );
        assert_eq!(sets[1].values, [("LoadSucceeded", 1), ("MonthsLoaded", 1)]);
    }

    #[test]
    fn sla_breaches_count_even_when_the_email_is_suppressed() {
        let response = AlertResponse {
            outcomes: vec![
                AlertOutcome::Suppressed {
                    alert_type: "sla_breach".into(),
                    dedup_key: "k".into(),
                },
                AlertOutcome::Sent {
                    alert_type: "quality_fail".into(),
                    subject: "s".into(),
                },
            ],
        };
        let set = &for_alert(&response)[0];
        assert_eq!(
            set.values,
            [
                ("AlertsSent", 1),
                ("AlertsSuppressed", 1),
                ("AlertsQueued", 0),
                ("SlaBreaches", 1)
            ]
        );
    }
}
