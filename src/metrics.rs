//! CloudWatch metrics in the Embedded Metric Format (EMF): each invocation's outcome becomes one
//! JSON line on stdout, which CloudWatch Logs turns into metrics for the dashboard and alarms.
//! No PutMetricData call, so no extra latency, IAM permission or failure mode in the functions.
//!
//! Dimensions are `Stage` and `Dataset` (each metric is also rolled up by `Stage` alone). Values
//! are counts only; row contents never appear here. Each stage says which counts it reports
//! (`Stage::metrics`).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Map, Value, json};

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
    pub fn new(stage: &'static str, dataset: impl Into<String>) -> Self {
        Self {
            stage,
            dataset: dataset.into(),
            values: Vec::new(),
        }
    }

    pub fn with(mut self, name: &'static str, value: u64) -> Self {
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

/// 1 when `condition` holds: a count of one event.
pub fn flag(condition: bool) -> u64 {
    u64::from(condition)
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
}
