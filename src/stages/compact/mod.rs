//! The compact stage: nightly, after the load, small silver files of loaded batches are
//! rewritten into one file per partition ([`crate::compact::Compactor`]); `lake compact` runs
//! the same service on a directory or the bucket.

pub mod config;
pub mod request;
pub mod service;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use config::CompactConfig;
pub use request::CompactRequest;
pub use service::{CompactResponse, CompactService, DatasetCompaction};

use crate::compact::CompactError;
use crate::config::ConfigError;
use crate::contract::Registry;
use crate::metrics::MetricSet;
use crate::stages::{RequestError, Stage};
use crate::storage::S3Store;

impl CompactService {
    /// The Lambda's service: silver in `LAKE_BUCKET`.
    pub fn from_env(
        sdk: &aws_config::SdkConfig,
        registry: Arc<Registry>,
    ) -> Result<Self, ConfigError> {
        let config = CompactConfig::from_env(|name| std::env::var(name).ok())?;
        let store = Arc::new(S3Store::new(crate::aws::s3_client(sdk), &config.bucket));
        Ok(CompactService::new(store, registry, config.min_files))
    }
}

#[async_trait]
impl Stage for CompactService {
    const NAME: &'static str = "Compact";
    type Request = CompactRequest;
    type Response = CompactResponse;
    type Error = CompactError;

    fn request(event: serde_json::Value) -> Result<CompactRequest, RequestError> {
        CompactRequest::from_event(&event)
    }

    async fn run(
        &self,
        request: CompactRequest,
        _now: DateTime<Utc>,
    ) -> Result<CompactResponse, CompactError> {
        self.handle(request).await
    }

    fn metrics(response: &CompactResponse) -> Vec<MetricSet> {
        response
            .datasets
            .iter()
            .map(|d| {
                MetricSet::new("compact", d.dataset.clone())
                    .with("PartitionsCompacted", d.report.partitions as u64)
                    .with("FilesCompacted", d.report.files_in as u64)
                    .with("CompactionsResumed", d.report.resumed as u64)
            })
            .collect()
    }
}
