//! The load stage: on schedule, every silver batch the quality gate let through and the gold
//! months that changed go into the warehouse (Redshift through the Data API).

pub mod config;
pub mod request;
pub mod service;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use config::LoadConfig;
pub use request::LoadRequest;
pub use service::{
    BatchLoad, LoadError, LoadFailure, LoadReport, Loader, MAX_LOAD_ATTEMPTS, OperatorSkip,
    SkipReason,
};

use crate::config::ConfigError;
use crate::contract::Registry;
use crate::metrics::MetricSet;
use crate::stages::{RequestError, Stage};
use crate::storage::S3Store;
use crate::warehouse::DataApiExecutor;

impl Loader {
    /// The Lambda's service: the lake in `LAKE_BUCKET`, SQL through the Redshift Data API.
    pub fn from_env(
        sdk: &aws_config::SdkConfig,
        registry: Arc<Registry>,
    ) -> Result<Self, ConfigError> {
        let config = LoadConfig::from_env(|name| std::env::var(name).ok())?;
        let store = Arc::new(S3Store::new(crate::aws::s3_client(sdk), &config.bucket));
        let executor = Arc::new(DataApiExecutor::new(
            crate::aws::redshift_data_client(sdk),
            config.data_api,
        ));
        Ok(Loader::new(store, executor, config.warehouse, registry))
    }
}

#[async_trait]
impl Stage for Loader {
    const NAME: &'static str = "Load";
    type Request = LoadRequest;
    type Response = LoadReport;
    type Error = LoadError;

    fn request(event: serde_json::Value) -> Result<LoadRequest, RequestError> {
        LoadRequest::from_event(&event)
    }

    async fn run(&self, request: LoadRequest, now: DateTime<Utc>) -> Result<LoadReport, LoadError> {
        match request {
            LoadRequest::Pending => {
                self.ensure_schema().await?;
                self.load_pending(now).await
            }
            LoadRequest::Retry { batch_id } => {
                self.retry(&batch_id).await?;
                self.ensure_schema().await?;
                self.load_pending(now).await
            }
            LoadRequest::Skip {
                batch_id,
                by,
                reason,
            } => {
                self.skip(&batch_id, &by, &reason, now).await?;
                self.ensure_schema().await?;
                self.load_pending(now).await
            }
        }
    }

    /// Per dataset: batches loaded, skipped and failed and rows loaded. `LoadSucceeded` is 1 when
    /// everything this run took reached the warehouse (no batch or gold month failed), 0
    /// otherwise; it backs the "no successful load in a day" alarm.
    fn metrics(report: &LoadReport) -> Vec<MetricSet> {
        // dataset → (batches loaded, batches skipped, rows loaded, batches failed)
        let mut per_dataset: BTreeMap<&str, (u64, u64, u64, u64)> = BTreeMap::new();
        for load in &report.batches {
            match load {
                BatchLoad::Loaded { dataset, rows, .. } => {
                    let entry = per_dataset.entry(dataset).or_default();
                    entry.0 += 1;
                    entry.2 += rows;
                }
                BatchLoad::Skipped { dataset, .. } => {
                    per_dataset.entry(dataset).or_default().1 += 1
                }
                BatchLoad::Failed { dataset, .. } => per_dataset.entry(dataset).or_default().3 += 1,
            }
        }
        let failed_any = report
            .batches
            .iter()
            .any(|b| matches!(b, BatchLoad::Failed { .. }));
        let mut sets: Vec<MetricSet> = per_dataset
            .into_iter()
            .map(|(dataset, (loaded, skipped, rows, failed))| {
                MetricSet::new("load", dataset)
                    .with("BatchesLoaded", loaded)
                    .with("BatchesSkipped", skipped)
                    .with("RowsLoaded", rows)
                    .with("BatchesFailed", failed)
            })
            .collect();
        sets.push(
            MetricSet::new("load", "all")
                .with("LoadSucceeded", u64::from(!failed_any))
                .with("MonthsLoaded", report.months.len() as u64),
        );
        sets
    }
}
