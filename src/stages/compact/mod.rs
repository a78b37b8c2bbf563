//! The compact stage: nightly, after the load, small silver files of loaded batches are
//! rewritten into one file per partition ([`crate::compact::Compactor`]); `lake compact` runs
//! the same service on a directory or the bucket. With a catalog, the run also removes the
//! silver partitions whose files expired ([`crate::catalog::PartitionSweep`]).

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

use crate::catalog::GlueCatalog;
use crate::compact::CompactError;
use crate::config::ConfigError;
use crate::contract::Registry;
use crate::metrics::MetricSet;
use crate::stages::{RequestError, Stage};
use crate::storage::S3Store;

impl CompactService {
    /// The Lambda's service: silver in `LAKE_BUCKET`, expired partitions removed from Glue
    /// when `GLUE_DATABASE` is set.
    pub fn from_env(
        sdk: &aws_config::SdkConfig,
        registry: Arc<Registry>,
    ) -> Result<Self, ConfigError> {
        let config = CompactConfig::from_env(|name| std::env::var(name).ok())?;
        let store = Arc::new(S3Store::new(crate::aws::s3_client(sdk), &config.bucket));
        let service = CompactService::new(store, registry, config.min_files, config.settle_hours);
        Ok(match config.glue_database {
            Some(database) => service.with_catalog(Arc::new(GlueCatalog::new(
                crate::aws::glue_client(sdk),
                database,
            ))),
            None => service,
        })
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
        now: DateTime<Utc>,
    ) -> Result<CompactResponse, CompactError> {
        self.handle(request, now).await
    }

    fn metrics(response: &CompactResponse) -> Vec<MetricSet> {
        response
            .datasets
            .iter()
            .map(|d| {
                let set = MetricSet::new("compact", d.dataset.clone())
                    .with("PartitionsCompacted", d.report.partitions as u64)
                    .with("FilesCompacted", d.report.files_in as u64)
                    .with("CompactionsResumed", d.report.resumed as u64);
                match &d.expired_partitions {
                    Some(e) => set
                        .with("ExpiredPartitionsRemoved", e.removed as u64)
                        .with("ExpiredPartitionsWaiting", e.waiting as u64),
                    None => set,
                }
            })
            .collect()
    }
}
