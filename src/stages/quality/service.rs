//! The quality stage: each landed manifest's batch is checked against its contract's rules and
//! its report written. The response (`{"reports": [...]}`) goes to the alert stage (in AWS
//! through the on-success destination).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::request::QualityRequest;
use crate::contract::Registry;
use crate::layout;
use crate::quality::{QualityError, QualityGate, QualityReport};
use crate::stages::{ObjectsError, StoreFactory, each_object};
use crate::state::{BatchCursor, LakeState};

#[derive(Debug, Clone, Serialize)]
pub struct QualityResponse {
    pub reports: Vec<QualityReport>,
}

pub type QualityEventError = ObjectsError<QualityError>;

pub struct QualityService {
    stores: StoreFactory,
    registry: Arc<Registry>,
}

impl QualityService {
    pub fn new(stores: StoreFactory, registry: Arc<Registry>) -> Self {
        QualityService { stores, registry }
    }

    /// The gate over one bucket's lake.
    pub fn gate(&self, bucket: &str) -> QualityGate {
        QualityGate::new((self.stores)(bucket), self.registry.clone())
    }

    pub async fn handle(
        &self,
        request: QualityRequest,
        now: DateTime<Utc>,
    ) -> Result<QualityResponse, QualityEventError> {
        let reports = each_object(request.manifests, |object| async move {
            self.gate(&object.bucket)
                .evaluate_manifest_key(&object.key, now)
                .await
                .map(Some)
        })
        .await?;
        Ok(QualityResponse { reports })
    }

    /// Checks one batch of `bucket`, found by its id.
    pub async fn check_batch(
        &self,
        bucket: &str,
        batch_id: &str,
        now: DateTime<Utc>,
    ) -> Result<QualityReport, QualityError> {
        let gate = self.gate(bucket);
        let dataset = gate.dataset_of_batch(batch_id).await?;
        gate.evaluate(&dataset, batch_id, now).await
    }

    /// Checks every batch of `bucket` that has no report yet, parents' datasets first, listing
    /// only the manifests since its last run (see [`QualityGate::check_unchecked`]).
    pub async fn check_unchecked(
        &self,
        bucket: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<QualityReport>, QualityError> {
        self.gate(bucket).check_unchecked(now).await
    }

    /// Reports whose verdict the alert stage has not handled (a run killed between writing
    /// the report and alerting): what a re-run must still send. Parents' datasets first.
    ///
    /// Each dataset's manifests are listed from a cursor (`runs/alerted/<dataset>/_cursor.json`,
    /// see [`BatchCursor`]): a verdict left unsent is found while its batch is within the
    /// cursor's lag of the newest batch listed, i.e. unless every run over the next
    /// [`crate::state::WATERMARK_LAG`] of batches died before alerting it too. The cursor is a
    /// watermark only, so what a run leaves does not depend on where an earlier one stopped.
    pub async fn unalerted_reports(
        &self,
        bucket: &str,
    ) -> Result<Vec<QualityReport>, QualityError> {
        let store = (self.stores)(bucket);
        let state = LakeState::new(store.clone());
        let mut out = Vec::new();
        for contract in self.registry.load_order() {
            let dataset = contract.name.as_str();
            let cursor_key = layout::verdict_cursor_key(dataset);
            let mut cursor: BatchCursor = state.get_json_or_default(&cursor_key).await?;
            for batch in cursor
                .list(store.as_ref(), dataset)
                .await?
                .listed
                .into_keys()
            {
                let alerted = layout::verdict_alerted_key(dataset, &batch);
                if state.exists(&alerted).await? {
                    continue;
                }
                let report_key = layout::quality_report_key(dataset, &batch);
                if let Some(report) = state.get_json::<QualityReport>(&report_key).await? {
                    out.push(report);
                }
            }
            state.put_json(&cursor_key, &cursor).await?;
        }
        Ok(out)
    }

    /// Records a person's decision to load a failed batch anyway.
    pub async fn override_batch(
        &self,
        bucket: &str,
        batch_id: &str,
        by: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<QualityReport, QualityError> {
        let gate = self.gate(bucket);
        let dataset = gate.dataset_of_batch(batch_id).await?;
        gate.override_batch(&dataset, batch_id, by, reason, now)
            .await
    }
}
