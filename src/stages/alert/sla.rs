//! The SLA check: by the SLA hour, every batch that arrived on the day before then must be in
//! the warehouse. A batch held back for a reason that was already paged (its quality verdict
//! failed, its load failed) is listed but breaches nothing by itself: one incident, one page.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use crate::contract::Registry;
use crate::layout;
use crate::quality::QualityReport;
use crate::state::{LakeState, StateError};

/// Where each of a day's batches stands at the SLA check.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DayStatus {
    /// Batches that arrived before the deadline.
    pub batches: usize,
    /// In the warehouse (or nothing to load: a rejected file, no rows).
    pub loaded: usize,
    /// Not in the warehouse for a reason that has its own alert: `dataset batch: why`.
    pub held: Vec<String>,
    /// Not in the warehouse, and nothing said why: what breaches the SLA.
    pub missing: Vec<String>,
}

/// The batch ids of `dataset` whose source arrived on `day` before `deadline`.
async fn arrived_before(
    state: &LakeState,
    dataset: &str,
    day: NaiveDate,
    deadline: DateTime<Utc>,
) -> Result<Vec<String>, StateError> {
    let day_text = day.format("%Y-%m-%d").to_string();
    let listed = state
        .store()
        .list(&layout::manifests_arrived_prefix(dataset, &day_text))
        .await?;
    Ok(listed
        .iter()
        .filter_map(|m| layout::parse_manifest_key(&m.key).map(|(_, b)| b.to_owned()))
        .filter(|b| {
            b.get(..16)
                .and_then(|t| NaiveDateTime::parse_from_str(t, "%Y%m%dT%H%M%SZ").ok())
                .is_some_and(|t| t.and_utc() < deadline)
        })
        .collect())
}

/// Where every batch that arrived on `day` before `deadline` stands.
pub async fn day_status(
    state: &LakeState,
    registry: &Registry,
    day: NaiveDate,
    deadline: DateTime<Utc>,
) -> Result<DayStatus, StateError> {
    let mut status = DayStatus::default();
    for contract in registry.load_order() {
        let dataset = contract.name.as_str();
        for batch in arrived_before(state, dataset, day, deadline).await? {
            status.batches += 1;
            if state
                .exists(&layout::loaded_marker_key(dataset, &batch))
                .await?
            {
                status.loaded += 1;
                continue;
            }
            let name = format!("{dataset} {batch}");
            if state
                .exists(&layout::load_failure_key(dataset, &batch))
                .await?
            {
                status
                    .held
                    .push(format!("{name}: failed to load (load_failed alert)"));
                continue;
            }
            let report: Option<QualityReport> = state
                .get_json(&layout::quality_report_key(dataset, &batch))
                .await?;
            match report {
                Some(r) if !r.loadable => status.held.push(format!(
                    "{name}: held back by its quality verdict (quality_fail alert)"
                )),
                Some(_) => status
                    .missing
                    .push(format!("{name}: passed quality, no load has taken it")),
                None => status
                    .missing
                    .push(format!("{name}: not checked by the quality gate")),
            }
        }
    }
    Ok(status)
}
