//! The quality Lambda's logic: a manifest landed (S3 event under `manifests/`) → the batch is
//! checked and its report written. The response (`{"reports": [...]}`) goes to the alert
//! function through the on-success destination.

use std::sync::Arc;

use aws_lambda_events::s3::S3Event;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::{error, info};

use super::s3_event::created_objects;
use crate::contract::Registry;
use crate::layout;
use crate::quality::{QualityError, QualityGate, QualityReport};
use crate::storage::{ObjectStore, S3Store};

type StoreFactory = Box<dyn Fn(&str) -> Arc<dyn ObjectStore> + Send + Sync>;

#[derive(Debug, Clone, Serialize)]
pub struct QualityResponse {
    pub reports: Vec<QualityReport>,
}

#[derive(Debug, thiserror::Error)]
#[error("{} manifest(s) could not be checked: {}", .failures.len(), .failures.iter().map(|(k, e)| format!("{k}: {e}")).collect::<Vec<_>>().join(" | "))]
pub struct QualityEventError {
    pub failures: Vec<(String, QualityError)>,
}

impl QualityEventError {
    pub fn is_retryable(&self) -> bool {
        self.failures.iter().any(|(_, e)| e.is_retryable())
    }
}

pub struct QualityHandler {
    store_for_bucket: StoreFactory,
    registry: Arc<Registry>,
}

impl QualityHandler {
    pub fn new(
        store_for_bucket: impl Fn(&str) -> Arc<dyn ObjectStore> + Send + Sync + 'static,
    ) -> Self {
        QualityHandler {
            store_for_bucket: Box::new(store_for_bucket),
            registry: Arc::new(Registry::builtin()),
        }
    }

    pub fn for_s3(client: aws_sdk_s3::Client) -> Self {
        Self::new(move |bucket| Arc::new(S3Store::new(client.clone(), bucket)))
    }

    pub async fn handle(
        &self,
        event: &S3Event,
        now: DateTime<Utc>,
    ) -> Result<QualityResponse, QualityEventError> {
        let mut reports = Vec::new();
        let mut failures = Vec::new();
        for object in created_objects(event) {
            let object = match object {
                Ok(o) => o,
                Err(e) => {
                    error!(error = %e, "unusable event record");
                    continue;
                }
            };
            // Pending records and anything else under manifests/ are not batches.
            if layout::parse_manifest_key(&object.key).is_none() {
                info!(key = %object.key, "not a manifest; skipped");
                continue;
            }
            let gate = QualityGate::new(
                (self.store_for_bucket)(&object.bucket),
                self.registry.clone(),
            );
            match gate.evaluate_manifest_key(&object.key, now).await {
                Ok(report) => reports.push(report),
                Err(e) => {
                    error!(key = %object.key, error = %e, retryable = e.is_retryable(), "quality check failed");
                    failures.push((object.key, e));
                }
            }
        }
        if failures.is_empty() {
            Ok(QualityResponse { reports })
        } else {
            Err(QualityEventError { failures })
        }
    }
}
